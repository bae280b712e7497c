"""4. Loading a big list: `pingkiller block IF --from-file` vs a C batch loop vs one syscall per rule."""

from __future__ import annotations

import ipaddress
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

from common import BUILD, PINGKILLER, Row, run

from pingkiller.demo.sandbox import Sandbox

RUNS = 3
EXACT = 1_000_000
PREFIXES = 100_000


def write_lists(directory: Path) -> tuple[Path, Path]:
    """1M distinct /32 addresses (100.64.0.0/10) and 100k distinct /24 prefixes (10/8 + 11/8)."""
    exact, prefixes = directory / "exact-1m.txt", directory / "prefixes-100k.txt"
    base = int(ipaddress.IPv4Address("100.64.0.0"))
    exact.write_text("".join(f"{ipaddress.IPv4Address(base + i)}\n" for i in range(EXACT)))
    base = int(ipaddress.IPv4Address("10.0.0.0"))
    prefixes.write_text(
        "".join(f"{ipaddress.IPv4Address(base + (i << 8))}/24\n" for i in range(PREFIXES))
    )
    return exact, prefixes


def reset(ifname: str) -> None:
    """A fresh program with empty rule maps (counters are carried; rules are not)."""
    run([PINGKILLER, "attach", ifname, "--replace", "--default", "pass"])


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def c_loader(mode: str, pin: Path, rule_file: Path) -> tuple[float, int]:
    """The C loader on ``pin``: (seconds, pauses it made for the kernel's transient ENOMEM).
    A prefix map with an LPM trie beside it (the trie finds the prefix, the map holds its
    rule) gets the trie written too, as pingkiller writes both."""
    trie = pin.with_name(pin.name.replace("prefixes_", "prefix_trie_"))
    extra = [str(trie)] if trie != pin and trie.exists() else []
    done = subprocess.run(
        [str(BUILD / "loadrules"), mode, str(pin), str(rule_file), *extra],
        capture_output=True, text=True,
    )
    if done.returncode:
        raise RuntimeError(f"loadrules {mode} {pin.name}: {done.stderr.strip()}")
    out = json.loads(done.stdout)
    return float(out["seconds"]), int(out["enomem_pauses"])


def measure_one(ifname: str, pin_dir: Path, rule_file: Path,
                map_name: str) -> tuple[dict[str, float], dict[str, int]]:
    """Median seconds of each loader, and the C loaders' ENOMEM pauses over all runs."""
    times: dict[str, list[float]] = {"pingkiller": [], "batch": [], "single": []}
    pauses = {"batch": 0, "single": 0}

    def c_run(mode: str) -> None:
        seconds, paused = c_loader(mode, pin_dir / map_name, rule_file)
        times[mode].append(seconds)
        pauses[mode] += paused

    for _ in range(RUNS):
        reset(ifname)
        times["pingkiller"].append(
            timed([PINGKILLER, "block", ifname, "--from-file", str(rule_file)])
        )
        reset(ifname)
        c_run("batch")
    reset(ifname)
    c_run("single")
    return {name: statistics.median(values) for name, values in times.items()}, pauses


def paused_note(pauses: int, runs: int) -> str:
    """What a C loader's row says of its pauses for the kernel's transient ENOMEM."""
    if not pauses:
        return ""
    return f"{pauses} pause{'s' if pauses > 1 else ''} of 5 ms for ENOMEM in {runs} run" + (
        "s" if runs > 1 else "")


def measure(work: Path) -> list[Row]:
    exact, prefixes = write_lists(work)
    pin_root = Path(os.environ["PINGKILLER_PIN_ROOT"])
    rows: list[Row] = []
    with Sandbox(tag=f"lr{os.getpid() % 10000}") as box:
        peer = box.add_peer()
        ifname = peer.host_ifname
        run([PINGKILLER, "attach", ifname, "--default", "pass"])
        try:
            for label, rule_file, map_name, count in (
                ("1M /32", exact, "rules_v4", EXACT),
                ("100k prefixes", prefixes, "prefixes_v4", PREFIXES),
            ):
                t, pauses = measure_one(ifname, pin_root / ifname, rule_file, map_name)
                batch = t["batch"]
                rows.append(Row("4 load", f"C bpf_map_update_batch, {label} (the limit)", batch,
                                "s", "C batch", 1.0, note=paused_note(pauses["batch"], RUNS)))
                rows.append(Row("4 load", f"C one update per rule, {label}", t["single"], "s",
                                "C batch", t["single"] / batch,
                                note=paused_note(pauses["single"], 1)))
                ratio = t["pingkiller"] / batch
                row = Row("4 load", f"pingkiller block --from-file, {label}", t["pingkiller"], "s",
                          "C batch", ratio, note=f"{count / t['pingkiller'] / 1e6:.2f} M rules/s")
                if label == "1M /32":
                    row.target = "<= 1.5x C batch, < 1 s"
                    row.met = ratio <= 1.5 and t["pingkiller"] < 1.0
                rows.append(row)
        finally:
            subprocess.run([PINGKILLER, "detach", ifname], capture_output=True)
    return rows

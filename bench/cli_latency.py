"""5. CLI latency: `pingkiller status IF` and `pingkiller block IF ADDR` vs `python -c pass`.

The floor is the interpreter the entry point runs on (its #! line), started with `-c pass`;
target: each verb at most 2.5x that. Every command runs with a bytecode cache (in a temporary
PYTHONPYCACHEPREFIX, filled by the warm-up runs) as an installed package has one, also
where PYTHONDONTWRITEBYTECODE is set (it is in this sandbox): without it every start
compiles pingkiller's sources again. The note gives the ratio of CPU time (user + system),
which a busy machine disturbs less than wall time. `bpftool map update` is there for scale.
"""

from __future__ import annotations

import os
import resource
import shlex
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import PINGKILLER, Row, run

from pingkiller.demo.sandbox import Sandbox

RUNS = 15
WARMUP = 2
TARGET = 2.5  # times the interpreter floor (issue #22)


def interpreter(script: str) -> str:
    """The interpreter an entry-point script runs on (its #! line)."""
    first = Path(script).read_text().splitlines()[0]
    return first.removeprefix("#!").split()[0]


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Median wall time and mean CPU time (user + system) of ``args``, run RUNS times after
    WARMUP runs (with hyperfine when installed)."""
    if shutil.which("hyperfine"):
        import json

        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            run(["hyperfine", "-N", "--warmup", str(WARMUP), "--runs", str(RUNS), "--export-json",
                 out.name, shlex.join(args)], env=env)
            result = json.loads(Path(out.name).read_text())["results"][0]
            return float(result["median"]), float(result["user"]) + float(result["system"])
    walls, cpus = [], []
    for index in range(WARMUP + RUNS):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True, env=env)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if index >= WARMUP:
            walls.append(wall)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.fmean(cpus)


def measure() -> list[Row]:
    pin_root = Path(os.environ["PINGKILLER_PIN_ROOT"])
    python = interpreter(PINGKILLER)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="pkbench-pyc-") as cache, \
            Sandbox(tag=f"cl{os.getpid() % 10000}") as box:
        env = {name: value for name, value in os.environ.items()
               if name != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = cache
        ifname = box.add_peer().host_ifname
        run([PINGKILLER, "attach", ifname, "--default", "pass"])
        try:
            floor, floor_cpu = timed([python, "-c", "pass"], env)
            rows.append(Row("5 cli", "python -c pass (the entry point's interpreter: floor)",
                            floor * 1e3, "ms", "python -c pass", 1.0,
                            note=f"CPU time {floor_cpu * 1e3:.1f} ms"))
            for label, args in (
                ("pingkiller status IF", [PINGKILLER, "status", ifname]),
                ("pingkiller block IF ADDR", [PINGKILLER, "block", ifname, "198.18.9.10"]),
            ):
                value, cpu = timed(args, env)
                rows.append(Row("5 cli", label, value * 1e3, "ms", "python -c pass", value / floor,
                                target=f"<= {TARGET:g}x python -c pass",
                                met=value <= TARGET * floor,
                                note=f"CPU time {cpu / floor_cpu:.1f}x the floor's"))
            for label, module in (("python -c 'import typing' (for scale)", "typing"),
                                  ("python -c 'import dataclasses' (for scale)", "dataclasses")):
                value, _ = timed([python, "-c", f"import {module}"], env)
                rows.append(Row("5 cli", label, value * 1e3, "ms", "python -c pass",
                                value / floor, note="what the typed library's imports cost "
                                "before it does anything"))
            rules = pin_root / ifname / "rules_v4"
            bpftool, _ = timed([
                "bpftool", "map", "update", "pinned", str(rules),
                "key", "198", "18", "9", "9", "value", "2", "0", "0", "0", "0", "0", "0", "0",
                "0", "0", "0", "0", "0", "0", "0", "0",
            ], env)
            rows.append(Row("5 cli", "bpftool map update (for scale)", bpftool * 1e3, "ms",
                            "python -c pass", bpftool / floor))
        finally:
            subprocess.run([PINGKILLER, "detach", ifname], capture_output=True)
    return rows

"""5. CLI latency: `pingkiller status IF` and `pingkiller block IF ADDR` vs `bpftool map update`."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import PINGKILLER, Row, run

from pingkiller.sandbox import Sandbox

RUNS = 15


def median_wall(args: list[str]) -> float:
    """Median wall time of ``args`` run RUNS times (hyperfine when installed)."""
    if shutil.which("hyperfine"):
        import json
        import tempfile

        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            run(["hyperfine", "-N", "--warmup", "2", "--runs", str(RUNS), "--export-json",
                 out.name, " ".join(args)])
            return float(json.loads(Path(out.name).read_text())["results"][0]["median"])
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure() -> list[Row]:
    pin_root = Path(os.environ["PINGKILLER_PIN_ROOT"])
    rows: list[Row] = []
    with Sandbox(tag=f"cl{os.getpid() % 10000}") as box:
        ifname = box.add_peer().host_ifname
        run([PINGKILLER, "attach", ifname, "--default", "pass"])
        try:
            rules = pin_root / ifname / "rules_v4"
            bpftool = median_wall([
                "bpftool", "map", "update", "pinned", str(rules),
                "key", "198", "18", "9", "9", "value", "2", "0", "0", "0", "0", "0", "0", "0",
                "0", "0", "0", "0", "0", "0", "0", "0",
            ])
            rows.append(Row("5 cli", "bpftool map update (reference)", bpftool * 1e3, "ms",
                            "bpftool", 1.0))
            for label, args in (
                ("pingkiller status IF", [PINGKILLER, "status", ifname]),
                ("pingkiller block IF ADDR", [PINGKILLER, "block", ifname, "198.18.9.10"]),
                ("python3 -c pass (interpreter floor)", [sys.executable, "-c", "pass"]),
            ):
                value = median_wall(args)
                row = Row("5 cli", label, value * 1e3, "ms", "bpftool", value / bpftool)
                if label.startswith("pingkiller"):
                    row.target, row.met = "<= 100 ms", value <= 0.100
                rows.append(row)
        finally:
            subprocess.run([PINGKILLER, "detach", ifname], capture_output=True)
    return rows

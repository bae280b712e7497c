"""6. Large rule tables: a scrape, `status --json` and `export` against 1k, 100k and 1M rules.

One sandbox veth carries the rules (100.64.0.0/10 addresses, loaded with one batch update);
the exporter is the real CLI in a subprocess on a loopback port, scraped with raw HTTP.
Times are medians; memory is the process's peak RSS (VmHWM for the exporter, measured
after the scrapes at each size; ru_maxrss of a CLI run, in a fresh parent).
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common import PINGKILLER, Row

import pingkiller
from pingkiller.demo.sandbox import Sandbox
from pingkiller.model.enums import RuleAction
from pingkiller.model.rules import RuleSet

SIZES = (1_000, 100_000, 1_000_000)
SCRAPES = 5
PARALLEL = 8  # the 8 parallel scrapes (the exporter answers 4 at once by default)
FIRST = 0x64400000  # 100.64.0.0
MEASURED = ("import resource, subprocess, sys\n"
            "with open(sys.argv[1], 'wb') as out:\n"
            "    code = subprocess.run(sys.argv[2:], stdout=out).returncode\n"
            "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")


def get(address: tuple[str, int], path: str) -> tuple[int, int]:
    """One raw HTTP request: (status code, body bytes)."""
    with socket.create_connection(address, timeout=60) as client:
        client.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        answer = b""
        while chunk := client.recv(1 << 16):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), len(body)


def vm(pid: int, field: str) -> int:
    """A /proc/PID/status field in KiB (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field}")


def reset_peak(pid: int) -> None:
    """Start VmHWM afresh (Linux >= 4.0: writing 5 to clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@contextmanager
def exporter() -> Iterator[tuple[tuple[str, int], subprocess.Popen[bytes]]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = ("127.0.0.1", probe.getsockname()[1])
    server = subprocess.Popen([PINGKILLER, "exporter", "--listen", f"{address[0]}:{address[1]}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                get(address, "/livez")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the exporter did not start") from None
                time.sleep(0.05)
        yield address, server
    finally:
        server.terminate()
        server.wait(10)


def measured(*args: str) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one CLI run, stdout to /dev/null."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", MEASURED, os.devnull, PINGKILLER, *args],
                            capture_output=True, text=True, check=True)
    took = time.perf_counter() - start
    code, peak = result.stdout.split()
    if code != "0":
        raise RuntimeError(f"pingkiller {' '.join(args)} failed: {result.stderr}")
    return took, int(peak)


def parallel_scrapes(address: tuple[str, int]) -> tuple[float, list[int]]:
    """PARALLEL scrapes at once: the slowest one's seconds and every status code."""
    codes: list[int] = []
    start = time.perf_counter()
    threads = [threading.Thread(target=lambda: codes.append(get(address, "/metrics")[0]))
               for _ in range(PARALLEL)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, sorted(codes)


def measure() -> list[Row]:
    rows: list[Row] = []
    scrape: dict[int, float] = {}
    status: dict[int, float] = {}
    with Sandbox(tag=f"lt{os.getpid() % 10000}") as box:
        ifname = box.add_peer().host_ifname
        attachment = pingkiller.attach(ifname, block=["198.18.9.9"])
        try:
            with exporter() as (address, server):
                loaded = 1
                for size in SIZES:
                    keys = [(FIRST + i).to_bytes(4, "big") for i in range(loaded - 1, size - 1)]
                    attachment.set_rules(RuleSet(exact_v4=keys, requested=len(keys)),
                                         RuleAction.BLOCK)
                    loaded = size
                    del keys
                    label = f"{size // 1000}k" if size < 1_000_000 else "1M"
                    get(address, "/metrics")  # warm
                    reset_peak(server.pid)
                    times, length = [], 0
                    for _ in range(SCRAPES):
                        start = time.perf_counter()
                        code, length = get(address, "/metrics")
                        times.append(time.perf_counter() - start)
                        assert code == 200
                    scrape[size] = statistics.median(times)
                    peak = vm(server.pid, "VmHWM")
                    row = Row("6 tables", f"scrape, {label} rules", scrape[size] * 1e3, "ms",
                              "1k", scrape[size] / scrape[SIZES[0]],
                              note=f"exporter peak RSS {peak / 1024:.0f} MB, body {length} B")
                    if size == 1_000_000:
                        row.target, row.met = "< 1 s", scrape[size] < 1.0
                    rows.append(row)
                    if size == 1_000_000:
                        reset_peak(server.pid)
                        slowest, codes = parallel_scrapes(address)
                        peak = vm(server.pid, "VmHWM")
                        rows.append(Row(
                            "6 tables", f"{PARALLEL} parallel scrapes, 1M rules", slowest * 1e3,
                            "ms", "1k", slowest / scrape[SIZES[0]], "< 10 s, no 500",
                            slowest < 10 and 500 not in codes,
                            note=f"status codes {codes}; exporter peak RSS {peak / 1024:.0f} MB"))
                    took, peak = measured("status", ifname, "--json")
                    status[size] = took
                    row = Row("6 tables", f"status --json, {label} rules", took, "s", "1k",
                              took / status[SIZES[0]], note=f"peak RSS {peak / 1024:.0f} MB")
                    if size == 1_000_000:
                        row.target, row.met = "< 5 s", took < 5
                    rows.append(row)
                    if size == 1_000_000:
                        took, peak = measured("export")
                        rows.append(Row("6 tables", "export, 1M rules", took, "s",
                                        "status 1k", took / status[SIZES[0]],
                                        note=f"peak RSS {peak / 1024:.0f} MB"))
        finally:
            attachment.detach()
    return rows

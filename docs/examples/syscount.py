"""Count system calls per process for a while, from a hash map (BPF C: bpf/syscount.bpf.c).

    make examples && sudo python3 docs/examples/syscount.py --duration 5
"""

import argparse
import struct
import time
from pathlib import Path

from pingkiller.bpf import Object, attach_raw_tracepoint

OBJECT = Path(__file__).resolve().parents[2] / "build" / "examples" / "syscount.bpf.o"


def command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "(exited)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds to count")
    parser.add_argument("--top", type=int, default=10, help="show the N busiest processes")
    args = parser.parse_args()
    with Object.from_file(OBJECT).load() as obj, \
            attach_raw_tracepoint(obj.programs["count_syscalls"], "sys_enter"):
        print(f"ready: counting system calls for {args.duration:g} s", flush=True)
        time.sleep(args.duration)
        counts = {
            struct.unpack("=I", key)[0]: struct.unpack("=Q", value)[0]
            for key, value in obj.maps["syscalls"].items()
        }
    print(f"{'PID':>8} {'SYSCALLS':>10}  COMMAND")
    for pid, count in sorted(counts.items(), key=lambda item: -item[1])[: args.top]:
        print(f"{pid:>8} {count:>10}  {command_of(pid)}")


if __name__ == "__main__":
    main()

"""Hello world from a raw tracepoint, through a ring buffer (BPF C: bpf/hello.bpf.c).

    make examples && sudo python3 docs/examples/hello.py     # then run any command
"""

import argparse
import contextlib
import struct
from pathlib import Path

from pingkiller.bpf import Object, RingBuffer, attach_raw_tracepoint

OBJECT = Path(__file__).resolve().parents[2] / "build" / "examples" / "hello.bpf.o"
EVENT = struct.Struct("=I16s16s")  # struct hello_event: pid, comm, message


def text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, help="stop after N greetings")
    count = parser.parse_args().count
    with Object.from_file(OBJECT).load() as obj, \
            attach_raw_tracepoint(obj.programs["hello"], "sched_process_exec"), \
            RingBuffer(obj.maps["hello_events"]) as ring:
        print("ready: every program started now says hello (Ctrl-C stops)", flush=True)
        seen = 0
        while count is None or seen < count:
            for pid, comm, message in ring.poll(1.0).unpack(EVENT):
                print(f"{text(message)} from pid {pid} ({text(comm)})", flush=True)
                seen += 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()

"""pingkiller's library as an event consumer: EventStream on a pinned ring buffer.

usage: py_consumer.py PIN EXPECTED IDLE_MS   (prints "ready", then one JSON line)
"""

from __future__ import annotations

import json
import sys
import time

from pingkiller.bpf import Map
from pingkiller.datapath.events import EventStream


def main() -> None:
    pin, expected, idle_ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    stream = EventStream(Map.from_pin(pin))
    print("ready", flush=True)
    received, first, last = 0, 0.0, 0.0
    idle_since = time.monotonic()
    while received < expected:
        events = stream.poll(0.1)
        now = time.monotonic()
        if events:
            if not received:
                first = now
            received += len(events)
            last = idle_since = now
        elif (now - idle_since) * 1000 > idle_ms:
            break
    print(json.dumps({"received": received, "seconds": last - first}))


if __name__ == "__main__":
    main()

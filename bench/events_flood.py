"""3. Events to user space under flood: pingkiller's library vs C ring_buffer__poll vs bcc."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from common import BUILD, Row, bpffs_dir, cpu, ping_frame

from pingkiller import abi
from pingkiller.abi import CounterSlot
from pingkiller.bpf import Program
from pingkiller.datapath import program as datapath
from pingkiller.model import enums
from pingkiller.model.enums import DefaultAction, EventsMode

EVENTS = 2_000_000
CHUNK = 100_000
IDLE_MS = 1500
BCC_PYTHON = "/usr/bin/python3"
HERE = Path(__file__).resolve().parent


def produce(program: Program, frame: bytes) -> None:
    """EVENTS runs of the program on CPU 0 (the consumer runs on CPU 1)."""
    with cpu(0):
        for _ in range(EVENTS // CHUNK):
            program.test_run(frame, repeat=CHUNK)


def consume(args: list[str], program: Program, frame: bytes) -> dict[str, float]:
    consumer = subprocess.Popen(["taskset", "-c", "1", *args], stdout=subprocess.PIPE, text=True)
    assert consumer.stdout is not None
    consumer.stdout.readline()  # ready
    produce(program, frame)
    out, _ = consumer.communicate(timeout=120)
    return dict(json.loads(out.strip().splitlines()[-1]))


def counter(obj: object, slot: int) -> int:
    return int(obj.maps[abi.COUNTERS_MAP].sum(abi.u32_key(slot), "QQ")[0])  # type: ignore[attr-defined]


def measure(have_bcc: bool) -> list[Row]:
    frame = ping_frame()
    rows: list[Row] = []
    rates: dict[str, float] = {}
    with bpffs_dir("ev") as pins, datapath.open_object() as obj:
        obj.load()
        config = abi.Config(DefaultAction.DROP, enums.IcmpSet.ECHO, EventsMode.ALL, 0)
        obj.maps[abi.SETTINGS_MAP][abi.u32_key(0)] = config.encode()
        ring = pins / "events"
        obj.maps[abi.EVENTS_MAP].pin(ring)
        program = obj.programs[abi.PROGRAM_NAME]
        for name, args in (
            ("C ring_buffer__poll", [str(BUILD / "rbconsume"), str(ring), str(EVENTS), str(IDLE_MS)]),
            ("pingkiller EventStream (Python)",
             [sys.executable, str(HERE / "py_consumer.py"), str(ring), str(EVENTS), str(IDLE_MS)]),
        ):
            before = {s: counter(obj, s) for s in CounterSlot}
            result = consume(args, program, frame)
            sent = counter(obj, CounterSlot.EVENTS_SENT) - before[CounterSlot.EVENTS_SENT]
            lost = counter(obj, CounterSlot.EVENTS_LOST) - before[CounterSlot.EVENTS_LOST]
            suppressed = (counter(obj, CounterSlot.EVENTS_SUPPRESSED)
                          - before[CounterSlot.EVENTS_SUPPRESSED])
            received = int(result["received"])
            rate = received / result["seconds"] if result["seconds"] else 0.0
            rates[name] = rate
            adds_up = sent + lost + suppressed == EVENTS and received == sent
            rows.append(Row(
                "3 events", name, rate / 1e6, "M events/s",
                note=(f"packets {EVENTS}, sent {sent}, received {received}, lost {lost}, "
                      f"suppressed {suppressed}: {'adds up' if adds_up else 'DOES NOT ADD UP'}"),
            ))
    if have_bcc:
        consumer = subprocess.Popen(
            ["taskset", "-c", "1", BCC_PYTHON, str(HERE / "bcc_consumer.py"), str(EVENTS),
             str(IDLE_MS)], stdout=subprocess.PIPE, text=True,
        )
        assert consumer.stdout is not None
        first = consumer.stdout.readline()
        if not first.startswith("{"):
            consumer.wait()
            rows.append(Row("3 events", "bcc open_ring_buffer (Python callback)", 0.0,
                            "M events/s", note="not measured: bcc could not compile its "
                            "program (it needs this kernel's headers in /lib/modules/*/build)"))
            return finish(rows, rates)
        prog_id = json.loads(first)["prog_id"]
        bcc_program = Program.from_id(prog_id)
        produce(bcc_program, frame)
        bcc_program.close()
        out, _ = consumer.communicate(timeout=120)
        result = json.loads(out.strip().splitlines()[-1])
        rate = result["received"] / result["seconds"] if result["seconds"] else 0.0
        rates["bcc"] = rate
        adds_up = result["sent"] + result["lost"] == EVENTS and result["received"] == result["sent"]
        rows.append(Row(
            "3 events", "bcc open_ring_buffer (Python callback)", rate / 1e6, "M events/s",
            note=(f"packets {EVENTS}, sent {result['sent']}, received {result['received']}, "
                  f"lost {result['lost']}: {'adds up' if adds_up else 'DOES NOT ADD UP'}"),
        ))
    return finish(rows, rates)


def finish(rows: list[Row], rates: dict[str, float]) -> list[Row]:
    """Ratios to the C consumer and the verdict on the target."""
    c_rate = rates["C ring_buffer__poll"]
    for row in rows:
        row.reference, row.ratio = "C", row.value * 1e6 / c_rate if c_rate and row.value else None
    py = next(r for r in rows if r.what.startswith("pingkiller"))
    py.target = ">= 0.5x C, >= 3x bcc"
    py_rate = rates["pingkiller EventStream (Python)"]
    ok = py_rate >= 0.5 * c_rate
    if rates.get("bcc"):
        ok = ok and py_rate >= 3 * rates["bcc"]
        py.note += f"; {py_rate / rates['bcc']:.1f}x bcc"
    py.met = ok
    return rows

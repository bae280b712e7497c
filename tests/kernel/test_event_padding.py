"""The ABI as the program writes it: no byte of an event record is left unwritten.

The ring buffer is never cleared: a reserved record holds whatever an earlier record
left at that place, and a byte the program does not write reaches user space stale.
Records are 8 + 64 bytes and the ring 1 MiB, so each lap around it lands every record
40 bytes off where the last lap wrote one: after a few laps of events whose addresses
are all non-zero bytes, a padding byte the program skips shows up as non-zero.
"""

from __future__ import annotations

import math

import fuzz
import pytest
from frames import echo6

from pingkiller import abi
from pingkiller._datapath import ffi, lib

RING_BYTES = lib.PK_RINGBUF_BYTES
RECORD_BYTES = 8 + ((abi.EVENT.size + 7) & ~7)  # the ring's own header, then the event
LAPS = 4
# Busy bytes: every address byte, the ICMP id and sequence non-zero.
POLLUTING = echo6(
    src="fd11:2233:4455:6677:8899:aabb:ccdd:eeff",
    dst="fdff:eedd:ccbb:aa99:8877:6655:4433:2211",
    id=0xA5A5,
    seq=0x5A5A,
)


def padding_bytes(ctype: str) -> list[int]:
    """Offsets in ``ctype`` (as the C compiler laid it out) that carry no value: its
    ``pad`` fields and any byte no field covers (padding of the compiler's own)."""
    fields = ffi.typeof(ctype).fields
    valued = {
        at
        for name, f in fields
        if not name.startswith("pad")
        for at in range(f.offset, f.offset + ffi.sizeof(f.type))
    }
    return [at for at in range(ffi.sizeof(ctype)) if at not in valued]


def test_event_padding_is_named():
    # The bytes past hook and direction: a pad field, not the compiler's tail padding.
    assert padding_bytes("struct pk_event") == list(range(60, 64))
    assert ffi.offsetof("struct pk_event", "pad") == 60


@pytest.mark.parametrize("entry", fuzz.ENTRIES, indirect=True, ids=str)
def test_event_padding_bytes_are_zero(dp):
    padding = padding_bytes("struct pk_event")
    per_run = RING_BYTES // 2 // RECORD_BYTES  # half the ring: never full, nothing lost
    runs = math.ceil(LAPS * RING_BYTES / (per_run * RECORD_BYTES))
    checked = 0
    for _ in range(runs):
        dp.program.test_run(POLLUTING.data, repeat=per_run)
        batch = dp.ring.consume()
        assert len(batch) == per_run
        for index, record in enumerate(batch):
            assert len(record) == abi.EVENT.size
            stale = {at: record[at] for at in padding if record[at]}
            assert not stale, f"record {checked + index}: padding bytes not zero: {stale}"
        checked += len(batch)
    assert checked * RECORD_BYTES >= LAPS * RING_BYTES
    assert dp.counter(abi.CounterSlot.EVENTS_LOST) == (0, 0)

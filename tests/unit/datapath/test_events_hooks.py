"""An event says which program judged its packet and which way it went (ABI 4)."""

from __future__ import annotations

import socket

from pingkiller import abi
from pingkiller.bpf import XDP_DROP
from pingkiller.cli import schemas
from pingkiller.model import enums
from pingkiller.model.events import Event, WallClock


def _event(hook: enums.Hook, direction: enums.Direction) -> Event:
    src = socket.inet_pton(socket.AF_INET, "198.18.1.2") + bytes(12)
    dst = socket.inet_pton(socket.AF_INET, "198.18.1.1") + bytes(12)
    return Event(10**9, 3, 98, src, dst, XDP_DROP, enums.Reason.DROP_BLOCK, 4, 1, 8, 0, 7, 1,
                 hook, direction)


def test_xdp_lines_are_as_they_were():
    event = _event(enums.Hook.XDP, enums.Direction.IN)
    assert event.where == ""
    assert event.describe() == "198.18.1.2 > 198.18.1.1 echo-request id 7 seq 1: drop (drop_block)"


def test_tc_lines_say_the_direction():
    assert _event(enums.Hook.TC, enums.Direction.IN).describe().startswith("tc in 198.18.1.2 > ")
    out = _event(enums.Hook.TC, enums.Direction.OUT)
    assert out.describe() == (
        "tc out 198.18.1.2 > 198.18.1.1 echo-request id 7 seq 1: drop (drop_block)"
    )
    assert " tc out 198.18.1.2 > " in out.line(WallClock())


def test_json_names_hook_and_direction():
    clock = WallClock()
    assert {k: schemas.event(_event(enums.Hook.XDP, enums.Direction.IN), clock)[k]
            for k in ("hook", "direction")} == {"hook": "xdp", "direction": "in"}
    data = schemas.event(_event(enums.Hook.TC, enums.Direction.OUT), clock)
    assert (data["hook"], data["direction"], data["verdict"]) == ("tc", "out", "drop")


def test_a_record_decodes_hook_and_direction_from_the_old_padding():
    raw = bytearray(abi.EVENT.size)
    raw[58], raw[59] = enums.Hook.TC, enums.Direction.OUT
    event = Event._make(abi.EVENT.unpack(bytes(raw)))
    assert (event.hook, event.direction) == (enums.Hook.TC, enums.Direction.OUT)
    # An ABI 3 record: zeros there, read as what it was.
    old = Event._make(abi.EVENT.unpack(bytes(abi.EVENT.size)))
    assert (old.hook, old.direction, old.where) == (enums.Hook.XDP, enums.Direction.IN, "")

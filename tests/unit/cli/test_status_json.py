"""status --json is streamed an attachment and a batch of rules at a time: the text must be
what ``json.dumps(list, indent=2)`` gives of the whole list."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pingkiller.cli import schemas
from pingkiller.cli.status import _write_json
from pingkiller.model.enums import LinkState, Mode, RuleAction
from pingkiller.model.point import Point
from pingkiller.model.results import AttachmentInfo
from pingkiller.model.rules import Rule


def info(name: str) -> AttachmentInfo:
    return AttachmentInfo(point=Point(name), ifindex=3, program_id=7, link_id=9, mode=Mode.NATIVE,
                          policy=None, rule_count=3, rules=(), stats=None, problem="",
                          pin_dir="/x", state=LinkState.FILTERING, abi_version=4)


@pytest.mark.parametrize("batches", [[], [[]], [["198.18.0.1"]], [["198.18.0.1", "10.0.0.0/8"], [],
                                                                  ["fd00::1"]]])
def test_streamed_status_json_is_what_json_dumps_gives(
        batches: list[list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    rules = [[Rule(address, RuleAction.BLOCK, n) for n, address in enumerate(batch)]
             for batch in batches]
    views: list[Any] = [(info("a"), rules), (info("b"), [])]
    for shown in (views, views[:1], []):
        _write_json(iter(shown))
        expected = [dict(schemas.attachment(each), rules=[schemas.rule(r) for b in found for r in b])
                    for each, found in shown]
        assert capsys.readouterr().out == json.dumps(expected, indent=2) + "\n"

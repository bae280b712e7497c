"""Where attachments live (model Point, store layout): one pin directory per interface and
hook, names that read back as the attachment they stand for, and the CLI's hook options
refused before anything is loaded. No kernel: the pin root is a temporary directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_in_process import run

from pingkiller.cli.errors import options
from pingkiller.model.enums import Direction, Hook
from pingkiller.model.errors import InvalidInput, InvalidInterfaceName
from pingkiller.model.point import Point
from pingkiller.store import Store
from pingkiller.store.layout import Work, entry, point_of

ALL_HOOKS = [Point("eth0"), Point("eth0", Hook.TC, Direction.IN),
             Point("eth0", Hook.TC, Direction.OUT)]

pytestmark = pytest.mark.usefixtures("private_pin_root")



@pytest.mark.parametrize("name", ["eth0", "eth0.100", "a@b", "x+y", "a" * 15])
def test_every_point_has_a_directory_of_its_own_that_reads_back(name: str) -> None:
    points = [Point(name), *(Point(name, Hook.TC, d) for d in Direction)]
    entries = [entry(point) for point in points]
    assert len(set(entries)) == 3
    assert entries[0] == name.replace(".", "~")  # the XDP layout of before tc existed
    assert [point_of(name) for name in entries] == points
    assert all("." not in entry and "/" not in entry for entry in entries)


@pytest.mark.parametrize("name", ["eth0,tc", "eth0,tc-up", "eth0,", ",tc-in", "a/b,tc-in",
                                   "eth0,tc-in,tc-out", "=tmp-1-eth0", "a" * 16 + ",tc-in"])
def test_names_that_are_no_attachment_are_not_read_as_one(name: str) -> None:
    assert point_of(name) is None


def test_xdp_sees_only_what_arrives() -> None:
    with pytest.raises(InvalidInput, match="needs the tc hook"):
        Point("eth0", Hook.XDP, Direction.OUT)
    with pytest.raises(InvalidInterfaceName):
        Point("eth0,tc-in", Hook.TC, Direction.IN)  # ',' is in no interface name


def test_listing_sorts_by_interface_then_xdp_then_tc_in_and_out(private_pin_root: Path) -> None:
    private_pin_root.mkdir()
    for point in reversed([*ALL_HOOKS, Point("dummy0", Hook.TC, Direction.OUT)]):
        Store().directory(point).mkdir()
    (private_pin_root / "=tmp-77-eth0,tc-out").mkdir()
    (private_pin_root / "not,an-attachment").mkdir()
    assert Store().points() == [Point("dummy0", Hook.TC, Direction.OUT), *ALL_HOOKS]
    assert [(left.work, left.point, left.pid) for left in Store().leftovers()] == [
        (Work.ATTACH, Point("eth0", Hook.TC, Direction.OUT), 77)]


def test_labels_and_options_name_the_attachment() -> None:
    xdp, tc_in, tc_out = ALL_HOOKS
    assert (xdp.label, options(xdp)) == ("eth0", "eth0")
    assert tc_in.label == "eth0 (tc in)"
    assert options(tc_out) == "eth0 --hook tc --direction out"


HOOK_ERRORS = [
    (["attach", "eth0", "--direction", "out"], "--hook tc"),
    (["attach", "eth0", "--direction", "both"], "--hook tc"),
    (["attach", "eth0", "--hook", "tc", "--mode", "native"], "is a mode of the XDP hook"),
    (["attach", "eth0", "--mode", "clsact"], "is a mode of the tc hook"),
    (["attach", "eth0", "--hook", "udp"], "'udp' is not one of"),
    (["detach", "--all", "--hook", "tc"], "go with IFACE"),
    (["upgrade", "--all", "--direction", "in"], "go with IFACE"),
    (["status", "--direction", "sideways"], "'sideways' is not one of"),
]


@pytest.mark.parametrize(("argv", "words"), HOOK_ERRORS, ids=[" ".join(a) for a, _ in HOOK_ERRORS])
def test_hook_options_that_cannot_be_are_one_line_exit_2(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(argv, capsys)
    assert code == 2
    assert len(err.splitlines()) == 1 and words in err, err

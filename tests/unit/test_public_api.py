"""The public API as a client meets it: every name declared for type checkers, one error
tree, values that normalise their inputs one way."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

import pingkiller
from pingkiller.bpf import BpfError
from pingkiller.model.rules import RuleSet

REPO = Path(__file__).resolve().parents[2]

CLIENT = """\
import ipaddress

import pingkiller


def watch(ifname: str) -> int:
    with pingkiller.open(ifname, read_only=True) as view:
        try:
            for stats, _rates in view.watch_stats(1.0):
                return stats.dropped
        except pingkiller.AttachmentEnded as ended:
            print(ended.point, ended.remedy)
    return 0


def sync(ifname: str) -> bool:
    wanted = [ipaddress.ip_address("::ffff:198.19.77.9"), "10.0.0.0/8"]
    (diff,) = pingkiller.sync_rules(ifname, block=wanted)
    return diff.changed


def mode(ifname: str) -> pingkiller.Mode:
    with pingkiller.open(ifname) as attachment:
        return attachment.mode


try:
    pingkiller.attach("eth0", mode=pingkiller.Mode.GENERIC, persist=False).close()
except pingkiller.PingkillerError as err:
    print(err.message, err.point, err.remedy)
"""


def mypy(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    client = tmp_path / "client.py"
    client.write_text(text)
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                           str(client)], capture_output=True, text=True, timeout=300, cwd=REPO)


def test_a_client_type_checks_and_a_misspelt_name_does_not(tmp_path: Path) -> None:
    good = mypy(tmp_path, CLIENT)
    assert good.returncode == 0, good.stdout
    for wrong in ("pingkiller.Typo", "pingkiller.AttachmentEnded.nope",
                  "pingkiller.PolicyFileErorr"):
        bad = mypy(tmp_path, f"import pingkiller\n\nprint({wrong})\n")
        assert bad.returncode == 1 and "has no attribute" in bad.stdout, (wrong, bad.stdout)


def test_every_public_name_is_there_at_run_time() -> None:
    for name in pingkiller.__all__:
        assert getattr(pingkiller, name) is not None, name
    with pytest.raises(AttributeError):
        pingkiller.Typo  # type: ignore[attr-defined]  # noqa: B018


def test_one_error_tree() -> None:
    assert issubclass(BpfError, pingkiller.PingkillerError) and issubclass(BpfError, OSError)
    for name in pingkiller.__all__:
        value = getattr(pingkiller, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, pingkiller.PingkillerError), name


@pytest.mark.parametrize("given", [
    "::ffff:198.19.77.9", ipaddress.IPv6Address("::ffff:198.19.77.9"),
    ipaddress.ip_network("::ffff:198.19.77.9/128"), ipaddress.IPv4Address("198.19.77.9"),
    ipaddress.ip_interface("198.19.77.9/32"),
])
def test_an_ipv4_mapped_address_is_the_ipv4_rule_whatever_it_comes_as(given: object) -> None:
    assert list(RuleSet.of([given]).networks()) == [ipaddress.IPv4Network("198.19.77.9/32")]  # type: ignore[list-item]
    assert pingkiller.parse_network(given) == ipaddress.IPv4Network("198.19.77.9/32")  # type: ignore[arg-type]


def test_library_errors_word_their_remedy_as_python() -> None:
    point = pingkiller.Point("eth0", "tc", "out")
    err = pingkiller.AlreadyAttached("pingkiller already holds eth0 (tc out)", point=point,
                                     remedy=pingkiller.Remedy.REPLACE)
    assert "replace=True" in str(err) and "--" not in str(err) and "`" not in str(err)
    assert err.message == "pingkiller already holds eth0 (tc out)" and err.point == point

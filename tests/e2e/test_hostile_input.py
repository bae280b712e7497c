"""Hostile or mistaken input: one line naming the problem, the documented exit code,
no traceback, and no change to any attachment. Nothing typed escapes the pin root.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

import pingkiller
from pingkiller.cli import schemas
from pingkiller.demo.sandbox import Sandbox
from pingkiller.model.enums import Direction, Hook
from pingkiller.model.errors import InvalidInterfaceName
from pingkiller.model.point import Point
from pingkiller.store import Store
from pingkiller.store.layout import point_of

pytestmark = pytest.mark.root

BAD_INPUT, RUNTIME = 2, 1
IF = "{if}"  # replaced by the attached sandbox interface
FILE = "{dir}"  # replaced by the test's directory of rule files

RULE_FILES = {
    "empty.txt": "",
    "comments.txt": "# only a comment\n\n   ; another\n",
    "junk.txt": "198.19.1.1\n10.0.0.0/8\nnot-an-address\n",
    "hostbits.txt": "# header\n198.19.0.1/24\n",
    "binary.txt": "\udcff",  # not UTF-8 (written with surrogateescape)
}


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    code: int
    says: str  # must appear in the one stderr line (case-insensitive)
    user: str = "root"  # "root", or "nobody" (uid 65534, no capabilities)


def case(*args: str, code: int = BAD_INPUT, says: str, user: str = "root") -> Case:
    return Case(args, code, says, user)


CASES = [
    # malformed addresses
    case("block", IF, "198.19.1.256", says="not an IPv4/IPv6 address"),
    case("block", IF, "198.19.1", says="not an IPv4/IPv6 address"),
    case("block", IF, "fd00::1::2", says="not an IPv4/IPv6 address"),
    case("block", IF, "banana", says="'banana'"),
    case("block", IF, "198.19.1.1/33", says="not an IPv4/IPv6 address"),
    case("block", IF, "fd00::/129", says="not an IPv4/IPv6 address"),
    case("block", IF, "198.19.1.1/-1", says="not an IPv4/IPv6 address"),
    case("block", IF, "", says="empty address"),
    case("block", IF, "   ", says="empty address"),
    case("allow", IF, "198.19.1.1; rm -rf /", says="not an IPv4/IPv6 address"),
    case("unblock", IF, "$(reboot)", says="not an IPv4/IPv6 address"),
    case("block", IF, "198.19.1.1\n198.19.1.2", says="not an IPv4/IPv6 address"),
    case("block", IF, "0x7f.1", says="not an IPv4/IPv6 address"),
    # prefixes with host bits
    case("block", IF, "198.19.1.1/24", says="host bits set"),
    case("allow", IF, "fd00::1/64", says="host bits set"),
    case("attach", IF, "--replace", "--block", "10.1.2.3/8", says="host bits set"),
    # v4/v6 mix-ups
    case("block", IF, "198.19.1.1/64", says="not an IPv4/IPv6 address"),
    case("block", IF, "fd00::198.19.1.1.1", says="not an IPv4/IPv6 address"),
    case("block", IF, "198.19.1.1:80", says="not an IPv4/IPv6 address"),
    case("attach", IF, "--replace", "--block", "198.19.1.1", "--allow", "::ffff:198.19.1.1",
         says="given two rules (block and allow)"),
    # rule files
    case("block", IF, "--from-file", f"{FILE}/empty.txt", says="holds no address"),
    case("block", IF, "--from-file", f"{FILE}/comments.txt", says="holds no address"),
    case("block", IF, "--from-file", f"{FILE}/junk.txt", says="junk.txt:3:"),
    case("allow", IF, "--from-file", f"{FILE}/hostbits.txt", says="hostbits.txt:2:"),
    case("block", IF, "--from-file", f"{FILE}/binary.txt", says="not UTF-8"),
    case("block", IF, "--from-file", f"{FILE}/missing.txt", says="missing.txt"),
    case("block", IF, "--from-file", FILE, says="directory"),
    case("block", IF, says="give addresses"),
    # interface names
    case("attach", "a" * 16, says="longer than 15 bytes"),
    case("attach", "é" * 8, says="longer than 15 bytes"),
    case("attach", "../etc", says="not a valid interface name"),
    case("attach", "..", says="not a valid interface name"),
    case("detach", ".", says="not a valid interface name"),
    case("block", "eth0/../x", "198.19.1.1", says="not a valid interface name"),
    case("status", "/sys/fs/bpf", says="not a valid interface name"),
    case("attach", "eth0;reboot", says="not a valid interface name"),
    case("detach", "$(id)", says="not a valid interface name"),
    case("stats", "a b", says="not a valid interface name"),
    case("events", "x`id`", says="not a valid interface name"),
    case("attach", "", says="empty interface name"),
    case("attach", "pkno0such0if", says="not found"),
    case("block", "pkno0such0if", "198.19.1.1", says="no pingkiller attachment"),
    case("detach", "pkno0such0if", says="nothing to detach"),
    # options and values
    case("attach", IF, "--frobnicate", says="no such option"),
    case("attach", IF, "--replace", "--event-rate", "-5", says="event-rate"),
    case("attach", IF, "--replace", "--event-rate", "lots", says="event-rate"),
    case("attach", IF, "--replace", "--event-rate", str(1 << 32), says="too large"),
    case("attach", IF, "--replace", "--mode", "turbo", says="mode"),
    case("attach", IF, "--replace", "--icmp", "some", says="icmp"),
    case("attach", IF, says="already holds", code=RUNTIME),
    case("stats", IF, "--interval", "0", says="interval"),
    case("events", IF, "--count", "-1", says="count"),
    # numbers in other digits than ASCII (int() and float() take them)
    case("attach", IF, "--replace", "--event-rate", "\uff11\uff10",
         says="'\\uff11\\uff10' is not a whole number"),
    case("stats", IF, "--interval", "\uff11", says="is not a number"),
    case("events", IF, "--count", "\u0663", says="is not a whole number"),
    case("events", IF, "--timeout", "\uff15", says="is not a number"),
    case("stats", IF, "--interval", "nan", says="is not a number"),
    case("exporter", "--listen", "127.0.0.1:\uff11\uff19\uff14\uff18\uff11", says="is not HOST:PORT"),
    case("exporter", "--max-rule-series", "\uff11", says="is not a whole number"),
    case("--lock-timeout", "\uff15", "detach", IF, says="is not a number of seconds"),
    case("detach", IF, "--all", says="not both"),
    case("detach", says="name one interface"),
    case("frobnicate", says="no such command"),
    # missing privileges: a non-root user with no capabilities
    case("status", user="nobody", code=RUNTIME, says="needs root (CAP_BPF)"),  # a reader
    case("status", IF, user="nobody", code=RUNTIME, says="needs root (CAP_BPF)"),
    case("block", IF, "198.19.1.1", user="nobody", code=RUNTIME,
         says="needs root (CAP_BPF + CAP_NET_ADMIN)"),
    case("detach", "--all", user="nobody", code=RUNTIME, says="needs root (CAP_BPF + CAP_NET_ADMIN)"),
    case("attach", IF, "--replace", user="nobody", code=RUNTIME,
         says="needs root (CAP_BPF + CAP_NET_ADMIN)"),
]


SOURCE = Path(pingkiller.__file__).resolve().parents[1]  # the tree `pingkiller` imports from


@contextmanager
def nobody_view() -> Iterator[Path]:
    """A world-readable directory under which :func:`as_nobody` shows the interpreter and
    the source tree to uid 65534 (both may live under /root, mode 0700)."""
    view = Path(tempfile.mkdtemp(prefix="pk-python-"))
    try:
        for part in ("prefix", "source"):
            (view / part).mkdir()
        for path in (view, view / "prefix", view / "source"):
            path.chmod(0o755)
        yield view
    finally:
        shutil.rmtree(view, ignore_errors=True)


def as_nobody(args: list[str], view: Path, caps: str = "") -> list[str]:
    """``python3 -m pingkiller ...`` run as uid/gid 65534 with only ``caps`` (e.g.
    ",+bpf,+net_admin"; none by default).

    The interpreter's prefix and the source tree may be unreadable to that user (pyenv or
    a clone under /root), so, in a private mount namespace, they are bind-mounted under
    ``view`` (from :func:`nobody_view`) first: only pingkiller may refuse the user.
    """
    prefix = Path(sys.prefix)
    roots = [(SOURCE, view / "source"), (prefix, view / "prefix")]

    def seen(path: Path) -> Path:
        for real, shown in roots:
            if path.is_relative_to(real):
                return shown / path.relative_to(real)
        return path

    paths = [view / "source", *(seen(Path(p)) for p in sys.path if p and Path(p).is_dir())]
    pythonpath = ":".join(str(p) for p in paths)
    mounts = " && ".join(f'mount --bind "{real}" "{shown}"' for real, shown in roots)
    script = f'{mounts} && PYTHONPATH="{pythonpath}" exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
            "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
            f"--inh-caps=-all{caps}", f"--ambient-caps=-all{caps}",
            str(seen(Path(sys.executable))), *args[1:]]


def state() -> list[dict[str, object]]:
    """What `status --json` shows, minus the live packet counters (traffic may move them)."""
    return [{k: v for k, v in schemas.attachment(info).items() if k != "stats"}
            for info in pingkiller.attachments()]


def test_bad_input_is_refused_cleanly(pin_root: Path, sandbox: Sandbox, tmp_path: Path) -> None:
    assert len(CASES) >= 68
    ifname = sandbox.add_peer().host_ifname
    pingkiller.attach(ifname, block=["198.19.9.9", "fd00:9::/32"], allow=["198.19.9.10"]).close()
    for name, text in RULE_FILES.items():
        (tmp_path / name).write_bytes(text.encode("utf-8", "surrogateescape"))
    before = state()
    failures = []
    with nobody_view() as view:
        for bad in CASES:
            args = [a.replace(IF, ifname).replace(FILE, str(tmp_path)) for a in bad.args]
            command = [sys.executable, "-m", "pingkiller", *args]
            if bad.user == "nobody":
                command = as_nobody(command, view)
            result = subprocess.run(command, capture_output=True, text=True, timeout=60)
            lines = result.stderr.splitlines()
            problems = []
            if result.returncode != bad.code:
                problems.append(f"exit {result.returncode}, expected {bad.code}")
            if len(lines) != 1 or not lines[0].startswith("pingkiller: "):
                problems.append(f"stderr is not one 'pingkiller: ...' line: {result.stderr!r}")
            elif bad.says.lower() not in lines[0].lower():
                problems.append(f"stderr does not say {bad.says!r}: {lines[0]!r}")
            if "Traceback" in result.stderr:
                problems.append("traceback")
            if state() != before:
                problems.append("the attachment changed")
                before = state()
            if problems:
                failures.append(f"{bad.user} pingkiller {' '.join(args)!r}: {'; '.join(problems)}")
    assert not failures, "\n".join(failures)
    assert sorted(p.name for p in pin_root.iterdir()) == [ifname]


@pytest.mark.parametrize(
    "name", ["..", ".", "../x", "a/b", "/abs", "x\x00y", "~x", "=tmp-1-x", "a" * 16, "", " ", "é"]
)
def test_pin_paths_stay_under_the_root(name: str, pin_root: Path) -> None:
    """Every name that could leave the pin root, or collide with its work directories, is refused."""
    with pytest.raises(InvalidInterfaceName):
        Store().directory(Point(name))
    with pytest.raises(InvalidInterfaceName):
        Store().directory(Point(name, Hook.TC, Direction.OUT))


@pytest.mark.parametrize("name", ["eth0", "veth.100", "br-lan", "wlp3s0:1", "a@b", "x+y", "a" * 15])
def test_valid_names_map_to_one_directory_in_the_root(name: str, pin_root: Path) -> None:
    """Each attachment of a valid name (XDP, tc in, tc out) has a directory of its own,
    directly in the root, which reads back as the same attachment."""
    points = [Point(name), *(Point(name, Hook.TC, d) for d in Direction)]
    paths = [Store().directory(point) for point in points]
    assert len(set(paths)) == 3
    for point, path in zip(points, paths, strict=True):
        assert path.parent == pin_root
        assert path.resolve().parent == pin_root.resolve()
        assert "/" not in path.name and not path.name.startswith("=")
        assert point_of(path.name) == point

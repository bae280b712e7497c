"""The pin lock under a holder that does not let go (issue #12): readers never wait for it,
writers wait a while, say for whom, then give up with one line naming the holder and the
fix, having changed nothing.

Holders are another process's flock on the private pin root (``flock PINROOT sleep 60``)
and a pingkiller process holding ``pingkiller.lock.locked()`` that is then SIGSTOPped.
Every holder is ended in a ``finally``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import CLI, pk_ok, status, xdp_prog_id

from pingkiller.demo.sandbox import Peer, Sandbox

pytestmark = pytest.mark.root

# Everyone's lock timeout in these tests unless a test gives its own: a reader that took the
# lock would wait this long, so "finished well before it" says it did not wait.
PATIENT = "60"
READER_BOUND = 5.0  # seconds: generous for a Python start on a busy machine, far below PATIENT
SLACK = 8.0  # seconds a writer may take beyond its timeout (start-up, the final message)
BLOCKED = "198.18.250.1"


def pk_env(*args: str, env: dict[str, str] | None = None,
           ) -> tuple[subprocess.CompletedProcess[str], float]:
    """``pingkiller ARGS`` in a new process: (result, wall-clock seconds)."""
    start = time.monotonic()
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PINGKILLER_LOCK_TIMEOUT": PATIENT, **(env or {})})
    return result, time.monotonic() - start


def is_held(pin_root: Path) -> bool:
    fd = os.open(pin_root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def wait_until(condition: object, what: str, timeout: float = 15) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def rules_of(ifname: str) -> list[tuple[str, str]]:
    return [(rule["address"], rule["action"]) for rule in status(ifname)["rules"]]


def end(holder: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """Kill a holder started in a session of its own, and whatever it started there
    (`flock`'s command inherits the lock)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)


@pytest.fixture
def attached(pin_root: Path, sandbox: Sandbox) -> Peer:
    """A veth peer whose host end has a pinned attachment blocking one address."""
    peer = sandbox.add_peer()
    pk_ok("attach", peer.host_ifname, "--block", BLOCKED)
    return peer


@pytest.fixture
def flock_holder(attached: Peer, pin_root: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Another program holding an exclusive flock on the pin root."""
    holder = subprocess.Popen(["flock", str(pin_root), "sleep", "60"], start_new_session=True)
    try:
        wait_until(lambda: is_held(pin_root), "flock to take the lock")
        yield holder
    finally:
        end(holder)


# A pingkiller program holding the lock as any writer does; run as a launcher script named
# pingkiller, so it is described as one (`pingkiller hold-lock`).
HOLDER_SCRIPT = """\
import sys, time
from pingkiller.store import lock, layout

with lock.locked(layout.default_root(), timeout=10):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def stopped_holder(attached: Peer, pin_root: Path,
                   tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A pingkiller process that took the pin lock and was then stopped (SIGSTOP)."""
    script = tmp_path / "pingkiller"
    script.write_text(HOLDER_SCRIPT)
    holder = subprocess.Popen([sys.executable, str(script), "hold-lock"], stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        os.kill(holder.pid, signal.SIGSTOP)
        stat = Path(f"/proc/{holder.pid}/stat")
        wait_until(lambda: stat.read_text().rpartition(")")[2].split()[0] == "T", "the stop")
        yield holder
    finally:
        end(holder)


def assert_readers_do_not_wait(ifname: str) -> None:
    """status, stats, export and events finish at once while a writer holds the lock."""
    for args in (["status"], ["status", ifname, "--json"], ["stats", ifname, "--json"],
                 ["export"], ["events", ifname, "--timeout", "0.2"]):
        result, took = pk_env(*args)
        assert result.returncode == 0, (args, result.stderr)
        assert "waiting" not in result.stderr and "Traceback" not in result.stderr, args
        assert took < READER_BOUND, f"pingkiller {' '.join(args)} took {took:.1f} s"


def assert_gave_up(result: subprocess.CompletedProcess[str], took: float, pid: int,
                   shown: str, timeout: float) -> str:
    """Exit 1 after about ``timeout`` s: a 'waiting for' line, then the one-line error."""
    assert "Traceback" not in result.stderr
    assert result.returncode == 1, result.stderr
    assert timeout <= took < timeout + SLACK
    waiting, error = result.stderr.splitlines()
    assert waiting.startswith(f"pingkiller: waiting for pid {pid} ({shown}) to release the "
                              "pin lock on "), waiting
    assert waiting.endswith(f" (gives up after {timeout:g} s)"), waiting
    assert error.startswith(f"pingkiller: pid {pid} ({shown}) has held the pin lock on "), error
    assert f"for over {timeout:g} s: " in error
    assert error.endswith("; --lock-timeout S (or PINGKILLER_LOCK_TIMEOUT) changes how long to wait")
    return error


def test_another_programs_flock(attached: Peer, pin_root: Path,
                                flock_holder: subprocess.Popen[bytes]) -> None:
    ifname = attached.host_ifname
    before, prog_id = rules_of(ifname), xdp_prog_id(ifname)
    assert_readers_do_not_wait(ifname)

    result, took = pk_env("--lock-timeout", "2", "block", ifname, "198.18.250.2")
    shown = f"flock {pin_root} sleep 60"
    error = assert_gave_up(result, took, flock_holder.pid, shown, 2)
    assert f"stop it if it is stuck (kill {flock_holder.pid})" in error

    # PINGKILLER_LOCK_TIMEOUT does the same; 0 does not wait (and so says nothing first).
    result, took = pk_env("unblock", ifname, BLOCKED, env={"PINGKILLER_LOCK_TIMEOUT": "1.5"})
    assert_gave_up(result, took, flock_holder.pid, shown, 1.5)
    result, took = pk_env("--lock-timeout", "0", "detach", ifname)
    assert result.returncode == 1 and took < READER_BOUND
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"pingkiller: pid {flock_holder.pid} ({shown}) holds the pin lock")

    assert flock_holder.poll() is None  # it held the lock all along
    assert (rules_of(ifname), xdp_prog_id(ifname)) == (before, prog_id)  # nothing changed

    # flock's command shares its open file: with flock gone, the lock is the command's,
    # though /proc/locks still names flock's pid.
    (child,) = (int(pid) for pid in Path(f"/proc/{flock_holder.pid}/task/{flock_holder.pid}/"
                                         "children").read_text().split())
    flock_holder.kill()
    flock_holder.wait(timeout=30)
    assert is_held(pin_root)
    result, _ = pk_env("--lock-timeout", "0", "block", ifname, "198.18.250.2")
    assert result.returncode == 1
    assert result.stderr.startswith(f"pingkiller: pid {child} (sleep 60) holds the pin lock"), \
        result.stderr
    assert rules_of(ifname) == before


def test_a_stopped_pingkiller_holder(attached: Peer, pin_root: Path,
                                     stopped_holder: subprocess.Popen[str]) -> None:
    ifname = attached.host_ifname
    before = rules_of(ifname)
    assert_readers_do_not_wait(ifname)

    result, took = pk_env("--lock-timeout", "1.5", "allow", ifname, "198.18.250.3")
    error = assert_gave_up(result, took, stopped_holder.pid, "pingkiller hold-lock, stopped", 1.5)
    pid = stopped_holder.pid
    assert f": resume it (kill -CONT {pid}) or end it (kill {pid});" in error
    assert rules_of(ifname) == before

    # Once the holder is gone (killed: the kernel drops its lock), writers go ahead.
    end(stopped_holder)
    result, _ = pk_env("--lock-timeout", "5", "block", ifname, "198.18.250.3")
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert ("198.18.250.3", "block") in rules_of(ifname)


@pytest.mark.parametrize("option", ["abc", "-1", "1e3", "inf", ""])
def test_a_bad_lock_timeout_option(attached: Peer, option: str) -> None:
    before = rules_of(attached.host_ifname)
    result, _ = pk_env("--lock-timeout", option, "block", attached.host_ifname, "198.18.250.4")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("pingkiller: Invalid value for '--lock-timeout': ")
    assert rules_of(attached.host_ifname) == before


@pytest.mark.parametrize("variable", ["abc", "-1", "1e3", "30s", ""])
def test_a_bad_lock_timeout_variable(attached: Peer, variable: str) -> None:
    before = rules_of(attached.host_ifname)
    result, _ = pk_env("block", attached.host_ifname, "198.18.250.4",
                       env={"PINGKILLER_LOCK_TIMEOUT": variable})
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"pingkiller: PINGKILLER_LOCK_TIMEOUT={variable!r} is not a number of "
                           "seconds")
    assert line.endswith(": fix or unset the variable")
    assert rules_of(attached.host_ifname) == before


def test_a_held_lock_delays_status_by_less_than_a_second(attached: Peer, pin_root: Path) -> None:
    """status costs the same with the lock held by a stuck process as without it."""
    def fastest() -> float:
        timings = []
        for _ in range(2):
            result, took = pk_env("status", "--json")
            assert result.returncode == 0, result.stderr
            timings.append(took)
        return min(timings)

    unheld = fastest()
    holder = subprocess.Popen(["flock", str(pin_root), "sleep", "60"], start_new_session=True)
    try:
        wait_until(lambda: is_held(pin_root), "flock to take the lock")
        held = fastest()
    finally:
        end(holder)
    assert held < unheld + 1.0, f"status took {held:.2f} s with the lock held, {unheld:.2f} s without"

"""The pin lock without root: /proc/locks parsing, command-line descriptions, the messages,
the timeout settings, and the wait itself on a plain directory (flock works anywhere).
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pingkiller.cli import main
from pingkiller.model.errors import InvalidInput, LockTimeout
from pingkiller.model.untrusted import parse_seconds
from pingkiller.store import lock
from pingkiller.system import flock


@pytest.fixture(autouse=True)
def fresh_timeout(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts and ends with no process-wide choice (the CLI sets one)."""
    monkeypatch.delenv(lock.ENV, raising=False)
    monkeypatch.setattr(lock, "_chosen", None)
    yield


# -- /proc/locks

DEV = os.makedev(0, 0x27)  # printed as 00:27
LOCKS = """\
1: POSIX  ADVISORY  WRITE 700 00:27:452035 0 EOF
2: FLOCK  ADVISORY  WRITE 6800 00:28:452035 0 EOF
3: FLOCK  ADVISORY  WRITE 6801 00:27:452036 0 EOF
4: FLOCK  ADVISORY  WRITE 6802 00:27:452035 0 EOF
4: -> FLOCK  ADVISORY  WRITE 6803 00:27:452035 0 EOF
5: OFDLCK ADVISORY  READ  -1 00:27:452035 0 EOF
"""


def test_the_holder_is_the_flock_line_of_that_device_and_inode() -> None:
    # Not the POSIX lock of the same file, not another device or inode, not the waiter.
    assert flock.parse_locks(LOCKS, DEV, 452035) == 6802


def test_the_device_is_hex_major_minor() -> None:
    text = "1: FLOCK  ADVISORY  WRITE 42 103:1a:7 0 EOF\n"
    assert flock.parse_locks(text, os.makedev(0x103, 0x1A), 7) == 42
    assert flock.parse_locks(text, os.makedev(103, 1), 7) is None  # decimal reading: no match


@pytest.mark.parametrize("pid", ["0", "-1", "-"])
def test_a_pid_this_namespace_cannot_see_is_no_pid(pid: str) -> None:
    assert flock.parse_locks(f"1: FLOCK  ADVISORY  WRITE {pid} 00:27:9 0 EOF\n", DEV, 9) is None


@pytest.mark.parametrize("text", ["", "1: -> FLOCK  ADVISORY  WRITE 5 00:27:9 0 EOF\n",
                                  "garbage\n1: FLOCK x y z zz:27:9\n1: FLOCK a b 5 00:27\n"])
def test_no_holder_line_is_no_pid(text: str) -> None:
    assert flock.parse_locks(text, DEV, 9) is None


# -- command lines

@pytest.mark.parametrize(("argv", "shown"), [
    (["/usr/bin/python3", "-m", "pingkiller", "block", "eth0", "10.0.0.1"],
     "pingkiller block eth0 10.0.0.1"),
    (["/opt/pk/.venv/bin/python3.12", "/opt/pk/.venv/bin/pingkiller", "detach", "eth0"],
     "pingkiller detach eth0"),
    (["python3", "-u", "-W", "ignore", "-mpingkiller", "attach", "eth0"], "pingkiller attach eth0"),
    (["python", "-m", "pingkiller.cli", "apply", "policy.toml"], "pingkiller apply policy.toml"),
    (["/usr/local/bin/pingkiller", "allow", "eth0", "::1"], "pingkiller allow eth0 ::1"),
    (["python3", "-m", "http.server"], "python3 -m http.server"),
    (["python3", "other.py", "pingkiller"], "python3 other.py pingkiller"),
    (["python3", "-c", "import pingkiller\nprint(1)"], "python3 -c import pingkiller print(1)"),
    (["/usr/bin/flock", "/sys/fs/bpf/pingkiller", "sleep", "60"],
     "flock /sys/fs/bpf/pingkiller sleep 60"),
    (["sh", "-c", "echo \x1b[31mred\x07"], "sh -c echo ?[31mred?"),
])
def test_command_lines_are_described_briefly(argv: list[str], shown: str) -> None:
    assert flock.describe_command(b"\0".join(a.encode() for a in argv) + b"\0") == shown


def test_a_long_command_line_is_cut() -> None:
    argv = ["/usr/bin/python3", "-m", "pingkiller", "block", "eth0", *(f"10.0.0.{i}" for i in range(30))]
    shown = flock.describe_command(b"\0".join(a.encode() for a in argv))
    assert shown is not None and len(shown) == 60
    assert shown.startswith("pingkiller block eth0 10.0.0.0 10.0.0.1") and shown.endswith("...")


def test_bad_utf8_and_empty_command_lines() -> None:
    assert flock.describe_command(b"caf\xe9\0x\0") == "caf\ufffd x"
    assert flock.describe_command(b"") is None  # a kernel thread, or a zombie


# -- who holds it, and the messages

def test_holder_reads_proc(tmp_path: Path) -> None:
    target = tmp_path / "root"
    target.mkdir()
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        info = os.fstat(fd)
        where = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
        locks = tmp_path / "locks"
        locks.write_text(f"1: FLOCK  ADVISORY  WRITE 1234 {where} 0 EOF\n")
        proc = tmp_path / "proc"
        (proc / "1234").mkdir(parents=True)
        (proc / "1234" / "cmdline").write_bytes(b"python3\0-m\0pingkiller\0block\0eth0\0")
        (proc / "1234" / "stat").write_text("1234 (a) b) T 1 1234 ...\n")
        assert flock.holder(fd, locks, proc) == flock.Holder(1234, "pingkiller block eth0", True)
        (proc / "1234" / "stat").write_text("1234 (python3) S 1 1234 ...\n")
        assert not flock.holder(fd, locks, proc).stopped
        (proc / "1234" / "cmdline").unlink()  # it went away meanwhile
        assert flock.holder(fd, locks, proc) == flock.Holder(1234, None, False)
        locks.write_text("")
        assert flock.holder(fd, locks, proc) == flock.Holder(None)
        assert flock.holder(fd, tmp_path / "no-such-file", proc) == flock.Holder(None)
    finally:
        os.close(fd)


def test_a_holder_that_exited_is_found_by_who_inherited_its_file(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        info = os.fstat(fd)
        where = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
        line = f"1: FLOCK  ADVISORY  WRITE 1234 {where} 0 EOF"
        locks = tmp_path / "locks"
        locks.write_text(line + "\n")
        proc = tmp_path / "proc"
        for pid, fdinfo in (("77", "pos:\t0\nflags:\t0100000\n"),  # the file, no lock
                            ("88", f"pos:\t0\nflags:\t0100000\nlock:\t{line}\n")):
            (proc / pid / "fdinfo").mkdir(parents=True)
            (proc / pid / "fdinfo" / "3").write_text(fdinfo)
            (proc / pid / "cmdline").write_bytes(b"sleep\x0060\x00")
        (proc / "self").mkdir()  # not a pid
        assert flock.holder(fd, locks, proc) == flock.Holder(88, "sleep 60")  # 1234 is gone
        (proc / "88" / "fdinfo" / "3").write_text("pos:\t0\n")
        assert flock.holder(fd, locks, proc) == flock.Holder(None)
    finally:
        os.close(fd)


def test_descriptions() -> None:
    assert flock.Holder(12, "pingkiller block eth0").describe() == "pid 12 (pingkiller block eth0)"
    assert flock.Holder(12, "sleep 9", stopped=True).describe() == "pid 12 (sleep 9, stopped)"
    assert flock.Holder(12).describe() == "pid 12"
    assert flock.Holder(None).describe() == "another process"


WHAT = "the pin lock on /sys/fs/bpf/pingkiller"


def test_the_timeout_message_names_the_holder_and_the_fix() -> None:
    line = flock.timeout_message(WHAT, flock.Holder(1234, "pingkiller block eth0"), 30.0)
    assert line == ("pid 1234 (pingkiller block eth0) has held the pin lock on "
                    "/sys/fs/bpf/pingkiller for over 30 s: wait for it to finish, or stop it if "
                    "it is stuck (kill 1234)")
    stopped = flock.timeout_message(WHAT, flock.Holder(9, "x", stopped=True), 2.5)
    assert "pid 9 (x, stopped) has held" in stopped and "over 2.5 s" in stopped
    assert "resume it (kill -CONT 9) or end it (kill 9)" in stopped
    unknown = flock.timeout_message(WHAT, flock.Holder(None), 0)
    assert unknown.startswith("another process holds the pin lock on /sys/fs/bpf/pingkiller: ")
    assert "\n" not in stopped + unknown


# -- how long to wait

@pytest.mark.parametrize(("text", "seconds"), [("30", 30.0), ("0", 0.0), ("2.5", 2.5),
                                               (".5", 0.5), ("7.", 7.0), ("007", 7.0)])
def test_seconds(text: str, seconds: float) -> None:
    assert parse_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", " 1", "1 ", "-1", "+1", "1e3", "inf", "nan", "1.2.3",
                                  "٣", "1_000", "0x10", "1s"])
def test_not_seconds(text: str) -> None:
    with pytest.raises(ValueError, match="is not a number of seconds"):
        parse_seconds(text)


def test_where_the_timeout_comes_from(monkeypatch: pytest.MonkeyPatch) -> None:
    assert lock.current_timeout() == lock.DEFAULT_TIMEOUT == 30.0
    monkeypatch.setenv(lock.ENV, "4.5")
    assert lock.current_timeout() == 4.5
    lock.set_timeout(0)
    assert lock.current_timeout() == 0.0  # the process's choice beats the variable
    lock.set_timeout(None)
    assert lock.current_timeout() == 4.5
    with pytest.raises(InvalidInput, match="0 or more seconds"):
        lock.set_timeout(-1.0)
    with pytest.raises(InvalidInput, match="0 or more seconds"):
        lock.set_timeout(float("nan"))


def test_a_bad_variable_is_bad_input_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(lock.ENV, "30s")
    with pytest.raises(InvalidInput, match=r"^PINGKILLER_LOCK_TIMEOUT='30s' is not a number"):
        lock.current_timeout()
    with pytest.raises(InvalidInput):
        lock.set_timeout(None)  # checked when the CLI starts
    lock.set_timeout(3)  # --lock-timeout wins: the variable is not read
    assert lock.current_timeout() == 3


# -- the wait, on a directory of tmp_path

@pytest.fixture
def pin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PINGKILLER_PIN_ROOT", str(tmp_path))
    return tmp_path


@pytest.fixture
def held(pin_dir: Path) -> Iterator[None]:
    """The lock held by this process through another open file (flocks belong to those)."""
    fd = os.open(pin_dir, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        os.close(fd)


def _is_free(path: Path) -> bool:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_a_free_lock_is_taken_and_released(pin_dir: Path) -> None:
    with lock.locked(pin_dir, timeout=0):
        assert not _is_free(pin_dir)
    assert _is_free(pin_dir)


@pytest.mark.usefixtures("held")
def test_zero_tries_once(pin_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(LockTimeout) as caught, lock.locked(pin_dir, timeout=0):
        pytest.fail("got a held lock")
    assert str(caught.value).startswith(f"pid {os.getpid()} (")
    assert f"holds the pin lock on {pin_dir}:" in str(caught.value)
    assert caught.value.exit_code == 1
    assert caplog.records == []


@pytest.mark.usefixtures("held")
def test_a_held_lock_warns_once_then_gives_up(pin_dir: Path, caplog: pytest.LogCaptureFixture,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flock, "WARN_AFTER", 0.05)
    caplog.set_level(logging.WARNING, logger="pingkiller.lock")
    start = time.monotonic()
    with pytest.raises(LockTimeout, match=r"for over 0\.3 s"), lock.locked(pin_dir, timeout=0.3):
        pytest.fail("got a held lock")
    assert time.monotonic() - start >= 0.3
    (record,) = caplog.records
    assert (record.name, record.levelno) == ("pingkiller.lock", logging.WARNING)
    assert record.getMessage().startswith(f"waiting for pid {os.getpid()} (")
    assert record.getMessage().endswith(
        f") to release the pin lock on {pin_dir} (gives up after 0.3 s)")
    assert _is_free(pin_dir) is False  # the holder still has it; ours was closed


def test_the_lock_taken_after_the_holder_lets_go(pin_dir: Path) -> None:
    fd = os.open(pin_dir, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    pid = os.fork()
    if pid == 0:  # the child lets go of the inherited lock after a while
        time.sleep(0.2)
        os._exit(0)
    os.close(fd)  # the child's copy of the open file still holds it
    try:
        with lock.locked(pin_dir, timeout=10):
            pass
    finally:
        os.waitpid(pid, 0)


# -- the CLI's setting

def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    code = caught.value.code
    assert isinstance(code, int)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("value", ["abc", "-1", "1e3", "nan", "inf", ""])
def test_a_bad_lock_timeout_option_is_one_line_exit_2(value: str, pin_dir: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _cli(["--lock-timeout", value, "detach", "pkunit0"], capsys)
    assert code == 2
    (line,) = err.splitlines()
    assert line.startswith("pingkiller: Invalid value for '--lock-timeout': ")
    assert "not a number of seconds" in line


def test_a_bad_variable_is_one_line_exit_2(pin_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(lock.ENV, "soon")
    code, err = _cli(["detach", "pkunit0"], capsys)
    assert code == 2
    assert err.splitlines() == ["pingkiller: PINGKILLER_LOCK_TIMEOUT='soon' is not a number of "
                                "seconds (digits and an optional decimal point, e.g. 30 or 2.5; "
                                "0 does not wait): fix or unset the variable"]


def test_the_option_sets_the_process_timeout(pin_dir: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    _cli(["--lock-timeout", "2.5", "status", "--json"], capsys)
    assert lock.current_timeout() == 2.5
    _cli(["status", "--json"], capsys)  # each call starts over
    assert lock.current_timeout() == 30.0

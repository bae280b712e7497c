"""Hostile files named to the real CLI: devices, FIFOs, secrets, /proc, deep nesting,
huge values, files past the size limit. Each gives one line, exit 2, within seconds (a
memory cap around the process proves nothing is read that should not be), shows no
content of the file, and changes no attachment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import pingkiller
from pingkiller.cli import schemas
from pingkiller.demo.sandbox import Sandbox

pytestmark = pytest.mark.root

CLI = [sys.executable, "-m", "pingkiller"]
MEMORY_CAP = ["prlimit", f"--as={1 << 30}", "--"]  # 1 GiB of address space
SECRET = "SECRETSALT"
SHADOW = (f"root:$6${SECRET}$Jb3xv4Fq0uT9mZ1c2d3e4f5g6h7i8j9k0l/:20228:0:99999:7:::\n"
          "daemon:*:20228:0:99999:7:::\nbin:*:20228:0:99999:7:::\n")


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str
    seconds: float


def pk(*args: str, env: dict[str, str] | None = None, timeout: float = 10) -> Result:
    """``pingkiller ARGS`` under a 1 GiB memory cap (it inherits PINGKILLER_PIN_ROOT)."""
    start = time.monotonic()
    done = subprocess.run([*MEMORY_CAP, *CLI, *args], capture_output=True, text=True,
                          timeout=timeout, env={**(env or {}), **without(os.environ, env)})
    return Result(done.returncode, done.stdout, done.stderr, time.monotonic() - start)


def without(environ: os._Environ[str], names: dict[str, str] | None) -> dict[str, str]:
    return {name: value for name, value in environ.items() if name not in (names or {})}


def refused(result: Result, says: str, within: float = 5) -> str:
    """The one stderr line of a bad-input refusal that says ``says``."""
    lines = result.err.splitlines()
    assert result.code == 2, result
    assert result.out == ""
    assert len(lines) == 1 and lines[0].startswith("pingkiller: "), result.err
    assert "Traceback" not in result.err and "MemoryError" not in result.err
    assert says in lines[0], lines[0]
    assert result.seconds < within, result
    return lines[0]


def state() -> list[dict[str, object]]:
    return [{k: v for k, v in schemas.attachment(info).items() if k != "stats"}
            for info in pingkiller.attachments()]


@pytest.fixture
def ifname(pin_root: Path, sandbox: Sandbox) -> Iterator[str]:
    """An attached sandbox interface with a few rules; unchanged when the test ends."""
    name = sandbox.add_peer().host_ifname
    pingkiller.attach(name, block=["198.19.9.9", "fd00:9::/32"], allow=["198.19.9.10"]).close()
    before = state()
    yield name
    assert state() == before, "a refused command changed the attachment"


def policy(tmp_path: Path, ifname: str, rule_file: str | Path, name: str = "policy.toml") -> Path:
    path = tmp_path / name
    path.write_text(f'[interfaces.{ifname}]\nblock = ["198.19.9.9", "fd00:9::/32"]\n'
                    f'allow = ["198.19.9.10"]\nrule_files = ["{rule_file}"]\n')
    return path


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_devices_are_refused_without_being_read(device: str, ifname: str, tmp_path: Path) -> None:
    says = f"'{device}' is a character device, not a regular file"
    refused(pk("block", ifname, "-f", device), says)
    refused(pk("allow", ifname, "--from-file", device), says)
    refused(pk("apply", "-f", device), says)
    refused(pk("apply", "-f", device, "--dry-run"), says)
    with_rules = policy(tmp_path, ifname, device)
    line = refused(pk("apply", "-f", str(with_rules)), says)
    assert line.startswith(f"pingkiller: {with_rules}:4: [interfaces.{ifname}] rule_files: ")
    refused(pk("apply", "-f", str(with_rules), "--dry-run", "--json"), says)


def test_a_fifo_is_refused_at_once(ifname: str, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    says = "is a FIFO (named pipe), not a regular file"
    refused(pk("block", ifname, "-f", str(fifo), timeout=5), says)
    refused(pk("apply", "-f", str(fifo), timeout=5), says)
    refused(pk("apply", "-f", str(policy(tmp_path, ifname, fifo)), "--dry-run", timeout=5), says)


@pytest.fixture
def shadow(tmp_path: Path) -> Path:
    path = tmp_path / "shadow"
    path.write_text(SHADOW)
    path.chmod(0o600)
    return path


def _shows_nothing_of(text: str, secret: str = SECRET) -> None:
    assert secret not in text
    assert "daemon" not in text and "20228" not in text and "bin:" not in text


def test_a_secret_file_never_appears_in_any_output(ifname: str, tmp_path: Path,
                                                   shadow: Path) -> None:
    not_shown = "not an IPv4/IPv6 address or prefix (the text is not shown"
    for verb in ("block", "allow", "unblock"):
        line = refused(pk(verb, ifname, "-f", str(shadow)), not_shown)
        assert line.startswith(f"pingkiller: {shadow}:1:1: ")
        _shows_nothing_of(line)
    with_rules = policy(tmp_path, ifname, shadow)
    for args in (["apply", "-f", str(with_rules)], ["apply", "-f", str(with_rules), "--dry-run"],
                 ["apply", "-f", str(with_rules), "--json"]):
        _shows_nothing_of(refused(pk(*args), not_shown))
    for args in (["apply", "-f", str(shadow)], ["apply", "-f", str(shadow), "--dry-run"]):
        _shows_nothing_of(refused(pk(*args), "not valid TOML"))


def test_apply_watch_logs_nothing_of_a_secret_file(ifname: str, tmp_path: Path,
                                                   shadow: Path) -> None:
    watched = {"rule_files": policy(tmp_path, ifname, shadow), "policy": shadow}
    watchers = {what: subprocess.Popen([*CLI, "apply", "--watch", "-f", str(path), "--interval",
                                        "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)
                for what, path in watched.items()}
    try:
        time.sleep(2.5)
    finally:
        for process in watchers.values():
            process.send_signal(signal.SIGTERM)
        outputs = {what: process.communicate(timeout=10) for what, process in watchers.items()}
    for what, (out, err) in outputs.items():
        assert watchers[what].returncode == 0, err
        _shows_nothing_of(out + err)
        errors = [line for line in err.splitlines() if " pingkiller: error: " in line]
        assert len(errors) == 1, err  # logged once, not once per check
        assert "not shown" in errors[0] or "not valid TOML" in errors[0]
        assert err.splitlines()[-1].endswith("stopped; attachments stay as they are")


def test_the_environment_never_appears(ifname: str, tmp_path: Path) -> None:
    marker = {"PK_TEST_MARKER": "MARKER-0123-do-not-show"}  # first in the environment
    environ = "/proc/self/environ"
    for args in (["block", ifname, "-f", environ], ["apply", "-f", environ],
                 ["apply", "-f", str(policy(tmp_path, ifname, environ)), "--dry-run"]):
        result = pk(*args, env=marker)
        assert result.code == 2 and "MARKER" not in result.out + result.err, result
        assert "PK_TEST" not in result.out + result.err


def _big(path: Path, head: str, body: str, count: int, tail: str = "") -> Path:
    with path.open("w") as out:
        out.write(head)
        out.write(body * count)
        out.write(tail)
    return path


def test_deep_nesting_and_huge_values_are_refused_fast(ifname: str, tmp_path: Path) -> None:
    table = f"[interfaces.{ifname}]\n"
    cases = {
        "arrays.toml": (table + "block = ", "[", 100_000, "", "nested more than 32 deep"),
        "tables.toml": (table + "x = ", "{a = ", 100_000, "", "nested more than 32 deep"),
        "string.toml": (table + 'block = ["', "1", 50_000_000, '"]\n', "a string longer than 4096"),
        "bare.toml": (table + "event_rate = ", "9", 50_000_000, "\n", "a value or key longer than"),
    }
    for name, (head, body, count, tail, says) in cases.items():
        path = _big(tmp_path / name, head, body, count, tail)
        for extra in ([], ["--dry-run"]):
            line = refused(pk("apply", "-f", str(path), *extra), says)
            assert line.startswith(f"pingkiller: {path}:2:") and "1111" not in line
    rules = _big(tmp_path / "long-line.txt", "198.19.1.1\n", "1", 50_000_000, "\n")
    refused(pk("block", ifname, "-f", str(rules)), f"{rules}:2: a line of more than 64 KiB")


def test_files_past_the_size_limit_are_refused_and_the_limit_can_be_raised(
    ifname: str, tmp_path: Path
) -> None:
    sparse = tmp_path / "sparse.txt"
    with sparse.open("wb") as out:
        out.truncate(300 << 20)  # 300 MiB of nothing: refused before a byte is read
    refused(pk("block", ifname, "-f", str(sparse)),
            "holds more than 256 MiB, the limit for a rule file: split it, or raise the limit "
            "with PINGKILLER_RULE_FILE_LIMIT (e.g. PINGKILLER_RULE_FILE_LIMIT=1G)", within=2)
    with (tmp_path / "sparse.toml").open("wb") as out:
        out.truncate(65 << 20)
    refused(pk("apply", "-f", str(tmp_path / "sparse.toml")),
            "holds more than 64 MiB, the limit for a policy file", within=2)
    refused(pk("block", ifname, "-f", "/proc/self/environ",
               env={"PINGKILLER_RULE_FILE_LIMIT": "1K", "PK_PADDING": "x" * 2000}),
            "holds more than 1 KiB")  # /proc reports no size: read with the limit
    listed = tmp_path / "list.txt"
    listed.write_text("".join(f"198.19.8.{i}\n" for i in range(200)))  # 2490 bytes
    refused(pk("block", ifname, "-f", str(listed), env={"PINGKILLER_RULE_FILE_LIMIT": "2K"}),
            "holds more than 2 KiB")
    refused(pk("block", ifname, "-f", str(listed), env={"PINGKILLER_RULE_FILE_LIMIT": "2 K"}),
            "PINGKILLER_RULE_FILE_LIMIT='2 K' is not a size")
    with_rules = policy(tmp_path, ifname, listed)
    refused(pk("apply", "-f", str(with_rules), "--dry-run",
               env={"PINGKILLER_RULE_FILE_LIMIT": "2K"}), "holds more than 2 KiB")
    done = pk("apply", "-f", str(with_rules), "--dry-run", env={"PINGKILLER_RULE_FILE_LIMIT": "4K"})
    assert done.code == 0, done
    assert done.out.startswith(f"would update {ifname}: add block 198.19.8.0, ")
    assert done.out.endswith("and 190 more\nDry run: 1 change(s) planned, nothing changed.\n")

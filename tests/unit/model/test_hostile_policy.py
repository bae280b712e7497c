"""Hostile policy and rule files without a kernel: one line, fast, and no file content
in any message beyond a short, sanitized excerpt of what looks like the expected token.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from pingkiller import declarative as policy_files
from pingkiller.model.errors import PolicyFileError, RuleFileError
from pingkiller.model.rules import read_rule_file

SECRET = "SECRETSALT"
SHADOW = f"root:$6${SECRET}$Jb3xv4Fq0uT9mZ1c2d3e4f5g6h7i8j9k0l:20228:0:99999:7:::\n" \
         "daemon:*:20228:0:99999:7:::\n"

pytestmark = pytest.mark.usefixtures("private_pin_root")



def refused(text: str, base: Path | None = None) -> str:
    start = time.perf_counter()
    with pytest.raises(PolicyFileError) as caught:
        policy_files.parse_policy_file(text, source="policy.toml", base=base)
    assert time.perf_counter() - start < 2
    message = str(caught.value)
    assert "\n" not in message and message.endswith("(nothing was changed)")
    assert len(message) < 1200
    assert all(" " <= char <= "~" for char in message), message
    return message


# -- rule files


@pytest.fixture
def shadow(tmp_path: Path) -> Path:
    path = tmp_path / "shadow"
    path.write_text(SHADOW)
    path.chmod(0o600)
    return path


def test_a_secret_file_as_a_rule_file_shows_nothing_of_it(shadow: Path) -> None:
    with pytest.raises(RuleFileError) as caught:
        read_rule_file(shadow)
    message = str(caught.value)
    assert message == (f"{shadow}:1:1: not an IPv4/IPv6 address or prefix (the text is not "
                       "shown: it does not look like one)")


def test_the_environment_as_a_rule_file_shows_nothing_of_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PK_MARKER", "MARKER-do-not-show")
    with pytest.raises(RuleFileError) as caught:
        read_rule_file("/proc/self/environ")
    assert "MARKER" not in str(caught.value)
    assert "not shown" in str(caught.value)


@pytest.mark.parametrize("line", [
    "198.18.0.9:5432:db:app:9f86d081884c7d65b",  # pgpass: host:port:database:user:password
    "198.18.0.9:5432:*:*:s3cretpass",
    "fd00::9:5432:appdb:app:0123abcd",
])
def test_a_line_that_only_starts_like_an_address_is_not_quoted(tmp_path: Path, line: str) -> None:
    path = tmp_path / "pgpass"
    path.write_text(f"198.18.0.1\n{line}\n")
    with pytest.raises(RuleFileError) as caught:
        read_rule_file(path)
    message = str(caught.value)
    assert message == (f"{path}:2:1: not an IPv4/IPv6 address or prefix (the text is not "
                       "shown: it does not look like one)")


def test_an_address_attempt_is_quoted_short_and_sanitized(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text("192.0.2.1\n  192.0.2.x  # typo\n")
    with pytest.raises(RuleFileError) as caught:
        read_rule_file(path)
    assert str(caught.value).startswith(f"{path}:2:3: '192.0.2.x' is not an IPv4/IPv6 address")
    path.write_text("192.0.2.1\n1." + "1" * 100 + "\n")
    with pytest.raises(RuleFileError) as caught:
        read_rule_file(path)
    assert "111111" not in str(caught.value) and "not shown" in str(caught.value)


def test_a_rule_file_with_comments_reads_as_the_plain_one(tmp_path: Path) -> None:
    """Blocks with comments take the line-by-line path (bare IPv4 addresses still packed
    with inet_pton): the rules are those of the same file without comments."""
    lines = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(100_000)]
    lines += ["10.0.0.0/8", "fd00::1", "fd00::/8", "::ffff:198.18.0.1"]
    plain, commented = tmp_path / "plain.txt", tmp_path / "commented.txt"
    plain.write_text("\n".join(lines) + "\n")
    commented.write_text("# a header makes every block take the line-by-line path\n" + "".join(
        f"{line}{' ; c' if i % 7 == 0 else ''}\n" for i, line in enumerate(lines)))
    rules = read_rule_file(commented)
    assert rules.requested == len(rules) == 100_004
    assert socket.inet_aton("198.18.0.1") in rules.exact_v4  # ::ffff:198.18.0.1
    assert rules == read_rule_file(plain)


# -- policy files


def test_deep_nesting_is_one_line_and_fast() -> None:
    assert "nested more than 32 deep" in refused("[interfaces.eth0]\nblock = " + "[" * 100_000)
    assert "nested more than 32 deep" in refused("x = " + "{a = " * 100_000)


def test_a_huge_value_is_one_short_line_and_fast() -> None:
    message = refused('[interfaces.eth0]\nblock = ["' + "1" * 50_000_000 + '"]\n')
    assert message == ("policy.toml:2:10: a string longer than 4096 characters (no value "
                       "pingkiller reads is that long; not shown) (nothing was changed)")
    assert "11111" not in refused("[interfaces.eth0]\nevent_rate = " + "1" * 50_000_000 + "\n")


@pytest.mark.parametrize(
    ("text", "shown", "hidden"),
    [
        ('[interfaces.eth0]\ndefault = "' + "d" * 3000 + '"\n', "'" + "d" * 40 + "'...", "d" * 41),
        ('[interfaces.eth0]\nicmp = "\\u001b[2J\\u202e"\n', "'\\x1b[2J\\u202e' is not an ICMP type", "\x1b"),
        ("[interfaces.eth0]\nicmp = [" + "1, " * 1000 + "]\n",
         "icmp: an array is not a list of ICMP types", "1, 1"),
        ('[interfaces.eth0]\ntiming = "' + "y" * 500 + '"\n', "'" + "y" * 40 + "'... is not true", "y" * 41),
        ('[interfaces.eth0]\nevent_rate = "' + "9" * 500 + '"\n', "is not a whole number", "9" * 41),
        ('[interfaces.eth0]\nblock = ["' + "1" * 4000 + '"]\n', "'" + "1" * 40 + "'... is not an", "1" * 41),
        ('[interfaces.eth0]\n"' + "k" * 3000 + '" = 1\n', "'" + "k" * 40 + "'...: unknown key", "k" * 41),
        ('[interfaces."' + "é" * 30 + '"]\n', "[interfaces.'\\xe9", "é"),
        ('[interfaces."' + "e" * 3000 + '"]\n', "longer than 15 bytes", "e" * 41),
        ("x" * 3000 + " = 1\n[interfaces]\n", "'" + "x" * 40 + "'...: unknown top-level key", "x" * 41),
        ('[interfaces."' + "k" * 3000 + '"]\n[interfaces."' + "k" * 3000 + '"]\n',
         "Cannot declare ('interfaces', 'kkk", "k" * 100),
    ],
)
def test_values_keys_and_names_are_quoted_short(text: str, shown: str, hidden: str) -> None:
    message = refused(text)
    assert shown in message
    assert hidden not in message


def test_many_problems_are_counted_not_searched_for_each() -> None:
    text = "[interfaces.eth0]\n" + "".join(f"key{i} = 1\n" for i in range(50_000))
    message = refused(text)
    assert message.count("unknown key") == 5 and "and 49995 more" in message


def test_rule_files_show_nothing_of_a_secret_file(shadow: Path, tmp_path: Path) -> None:
    message = refused(f'[interfaces.eth0]\nrule_files = ["{shadow}"]\n', base=tmp_path)
    assert SECRET not in message and "daemon" not in message and "root:" not in message
    assert f"rule_files: {shadow}:1:1: not an IPv4/IPv6 address or prefix" in message
    message = refused('[interfaces.eth0]\nrule_files = ["/proc/self/environ", "/dev/zero", '
                      '"a\\u0000b"]\n')
    assert "is a character device" in message and "NUL" in message


def test_a_secret_file_as_the_policy_shows_nothing_of_it(shadow: Path, tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError) as caught:
        policy_files.load(shadow)
    assert SECRET not in str(caught.value) and "root:" not in str(caught.value)
    dotenv = tmp_path / "env"
    dotenv.write_text(f'API_TOKEN = "{SECRET}"\n')  # valid TOML: keys may show, values not
    with pytest.raises(PolicyFileError) as caught:
        policy_files.load(dotenv)
    assert SECRET not in str(caught.value)
    assert "API_TOKEN: unknown top-level key" in str(caught.value)


def test_the_watcher_logs_nothing_of_a_secret_file(shadow: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[interfaces.lo]\nrule_files = ["{shadow}"]\n')
    logged: list[str] = []

    def log(line: str) -> None:
        logged.append(line)
        if len(logged) >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        policy_files.watch(policy, log, interval=0.01)
    assert logged[0].startswith(f"{policy}: read (sha256 ")
    assert logged[1].startswith("error: ") and "not shown" in logged[1]
    assert not any(SECRET in line or "daemon" in line for line in logged)

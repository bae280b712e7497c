"""Hostile input without a kernel: bounded, typed reads of named files, the TOML shape
check, ASCII-only numbers, and what an error may quote (pingkiller.untrusted).

Real files throughout: FIFOs, sockets, devices, /proc files, files that grow while read.
"""

from __future__ import annotations

import os
import socket
import time
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pingkiller.model import untrusted
from pingkiller.model.errors import InvalidInput, PolicyFileError, RuleFileError
from pingkiller.model.untrusted import POLICY_FILE, RULE_FILE

# -- quoting


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.x", "'192.0.2.x'"),
        ("it's", "'it\\'s'"),
        ("a\nb\x1b[31m", "'a\\nb\\x1b[31m'"),
        ("\uff11\uff10", "'\\uff11\\uff10'"),
        ("\u202eevil", "'\\u202eevil'"),
        ("x" * 41, "'" + "x" * 40 + "'..."),
    ],
)
def test_quote_is_short_printable_ascii(text: str, expected: str) -> None:
    assert untrusted.quote(text) == expected


@given(st.text())
def test_quote_never_shows_more_than_40_printable_ascii_characters(text: str) -> None:
    shown = untrusted.quote(text)
    body = shown.removesuffix("...")
    assert body.startswith("'") and body.endswith("'")
    assert len(body) - 2 <= untrusted.QUOTE_WIDTH
    assert all(" " <= char <= "~" for char in shown)


def test_quote_reads_only_what_it_shows() -> None:
    huge = "1" * 100_000_000
    start = time.perf_counter()
    assert untrusted.quote(huge) == "'" + "1" * 40 + "'..."
    assert time.perf_counter() - start < 0.1


def test_long_paths_keep_both_ends() -> None:
    path = "/" + "d" * 300 + "/list.txt"
    shown = untrusted.shown_path(path)
    assert len(shown) <= untrusted.PATH_WIDTH
    assert shown.startswith("/ddd") and shown.endswith("/list.txt") and "..." in shown
    assert untrusted.shown_path("/tmp/list.txt") == "/tmp/list.txt"
    assert untrusted.shown_path("/tmp/\x1b[2Jx") == "/tmp/\\x1b[2Jx"


@pytest.mark.parametrize(
    "token", ["192.0.2.x", "2.2.2.300", "10.0.0.1/33", "fd00::1::2", "fe80::1%eth0", "0x7f.1",
              "198.19.1.1:80", "::ffff:1.2.3.4.5"],
)
def test_address_attempts_may_be_quoted(token: str) -> None:
    assert untrusted.looks_like_address(token)


@pytest.mark.parametrize(
    "token",
    [
        "root:$6$SECRETSALT$abcdefghijklmnopqrstuv:20228:0:99999:7:::",
        "root:*:20228:0:99999:7:::",
        "daemon:*:19000:0:99999:7:::",
        "HOME=/root\x00PATH=/usr/bin",
        "deadbeefcafebabe0123456789abcdef",  # a hex key: no dot, no colon
        "not-an-address",
        "<html>",
        "password=hunter2",
        "1." + "0" * 100,
        "198.18.0.9:5432:db:app:9f86d081884c7d65b",  # a pgpass line that starts like one
        "198.18.0.9:5432:*:*:secret",
        "2001:db8::1:5432:dbname:user:0123abcd",
        "10.0.0.1%$(reboot)",
        "10.0.0.1/24/8",
    ],
)
def test_other_text_is_never_quoted(token: str) -> None:
    assert not untrusted.looks_like_address(token)


def test_values_are_described_without_echoing_them() -> None:
    assert untrusted.describe_value("drop" * 100) == "'" + ("drop" * 10) + "'..."
    assert untrusted.describe_value([1, 2]) == "an array"
    assert untrusted.describe_value({"a": 1}) == "a table"
    assert untrusted.describe_value(True) == "True"
    assert untrusted.describe_value(10**60).endswith("...")


def test_one_line_escapes_control_characters_and_cuts() -> None:
    assert untrusted.one_line("a\nb\rc") == "a\\nb\\rc"
    assert untrusted.one_line("x" * 5000).endswith("... (cut)")
    assert len(untrusted.one_line("x" * 5000)) < 2100


# -- numbers


@pytest.mark.parametrize("text", ["\uff11\uff10", "1_000", " 10", "10 ", "\u0663", "0x10", "", "1e3",
                                  "1" * 31])
def test_whole_numbers_are_ascii_digits(text: str) -> None:
    with pytest.raises(ValueError, match="not a whole number"):
        untrusted.parse_int(text)


@pytest.mark.parametrize("text", ["\uff11.\uff15", "inf", "nan", "-inf", "1e999", " 2", "2,5", "1_0", ""])
def test_real_numbers_are_ascii_and_finite(text: str) -> None:
    with pytest.raises(ValueError, match="not a number"):
        untrusted.parse_float(text)


def test_ascii_numbers_parse() -> None:
    assert [untrusted.parse_int(t) for t in ("0", "-5", "+7", "1000")] == [0, -5, 7, 1000]
    assert [untrusted.parse_float(t) for t in ("2", "2.5", ".5", "1e3", "-0.1")] == \
        [2.0, 2.5, 0.5, 1000.0, -0.1]


@pytest.mark.parametrize(("text", "size"), [("1", 1), ("512", 512), ("4K", 4096), ("256M", 256 << 20),
                                            ("1g", 1 << 30)])
def test_sizes(text: str, size: int) -> None:
    assert untrusted.parse_size(text) == size


@pytest.mark.parametrize("text", ["0", "\uff11M", "1.5G", "-1", "1T", "1 M", "", "M"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        untrusted.parse_size(text)


def test_the_limit_comes_from_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RULE_FILE.env, raising=False)
    assert RULE_FILE.limit() == 256 << 20
    assert POLICY_FILE.limit() == 64 << 20
    monkeypatch.setenv(RULE_FILE.env, "1G")
    assert RULE_FILE.limit() == 1 << 30
    monkeypatch.setenv(RULE_FILE.env, "lots")
    with pytest.raises(InvalidInput, match="PINGKILLER_RULE_FILE_LIMIT='lots' is not a size"):
        RULE_FILE.limit()


# -- reading files


def test_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    start = time.perf_counter()
    for kind in (RULE_FILE, POLICY_FILE):
        with pytest.raises(kind.error, match=r"is a FIFO \(named pipe\), not a regular file"):
            untrusted.read_text(kind, fifo)
    with pytest.raises(RuleFileError, match="FIFO"):
        list(untrusted.read_lines(RULE_FILE, fifo))
    assert time.perf_counter() - start < 1


@pytest.mark.parametrize(("path", "what"), [("/dev/zero", "a character device"),
                                            ("/dev/urandom", "a character device"),
                                            ("/dev/null", "a character device")])
def test_devices_are_refused_before_they_are_read(path: str, what: str) -> None:
    with pytest.raises(RuleFileError, match=f"'{path}' is {what}, not a regular file"):
        list(untrusted.read_lines(RULE_FILE, path))
    with pytest.raises(PolicyFileError, match=f"is {what}"):
        untrusted.read_text(POLICY_FILE, path)


def test_sockets_and_directories_are_refused(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "sock"))
        with pytest.raises(RuleFileError, match="is a socket"):
            untrusted.read_text(RULE_FILE, tmp_path / "sock")
    with pytest.raises(RuleFileError, match="is a directory"):
        untrusted.read_text(RULE_FILE, tmp_path)


def test_missing_and_odd_paths(tmp_path: Path) -> None:
    with pytest.raises(RuleFileError, match="not found"):
        untrusted.read_text(RULE_FILE, tmp_path / "missing")
    with pytest.raises(RuleFileError, match="NUL"):
        untrusted.read_text(RULE_FILE, "a\0b")
    with pytest.raises(RuleFileError, match="cannot be read: Not a directory"):
        untrusted.read_text(RULE_FILE, "/etc/hostname/x")
    with pytest.raises(RuleFileError, match="cannot be read"):
        untrusted.read_text(RULE_FILE, "/" + "x" * 5000)


def test_a_file_over_the_limit_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sparse = tmp_path / "sparse"
    with sparse.open("wb") as out:
        out.truncate((256 << 20) + 1)  # sparse: nothing is written
    start = time.perf_counter()
    with pytest.raises(RuleFileError, match=r"holds more than 256 MiB, the limit for a rule file: "
                                            r"split it, or raise the limit with "
                                            r"PINGKILLER_RULE_FILE_LIMIT \(e.g\. "):
        list(untrusted.read_lines(RULE_FILE, sparse))
    assert time.perf_counter() - start < 0.5
    small = tmp_path / "small"
    small.write_text("192.0.2.1\n" * 200)  # 2000 bytes
    monkeypatch.setenv(RULE_FILE.env, "1K")
    with pytest.raises(RuleFileError, match="holds more than 1 KiB"):
        list(untrusted.read_lines(RULE_FILE, small))
    monkeypatch.setenv(RULE_FILE.env, "2K")
    assert sum(len(lines) for _, lines in untrusted.read_lines(RULE_FILE, small)) == 200


def test_a_file_that_reports_no_size_is_read_within_the_limit(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    # /proc files report size 0; this process's memory map is there from its start, and
    # a Python process maps far more than 1 KiB of lines (no child to wait for).
    maps = Path("/proc/self/maps")
    assert maps.stat().st_size == 0
    monkeypatch.setenv(POLICY_FILE.env, "1K")
    with pytest.raises(PolicyFileError, match="holds more than 1 KiB"):
        untrusted.read_text(POLICY_FILE, maps)


def test_a_file_that_grows_while_read_stops_at_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(untrusted, "_BLOCK", 1024)
    monkeypatch.setenv(RULE_FILE.env, "8K")
    path = tmp_path / "growing"
    path.write_text("192.0.2.1\n" * 500)  # 5000 bytes: within the limit when opened
    blocks = untrusted.read_lines(RULE_FILE, path)
    next(blocks)
    with path.open("a") as out:
        out.write("192.0.2.2\n" * 100_000)  # another writer appends meanwhile
    with pytest.raises(RuleFileError, match="holds more than 8 KiB"):
        list(blocks)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="1.\n\r é#", max_size=300), st.integers(1, 16))
def test_lines_come_whole_and_numbered_across_blocks(tmp_path_factory: pytest.TempPathFactory,
                                                     text: str, block: int) -> None:
    path = tmp_path_factory.mktemp("lines") / "rules.txt"
    path.write_bytes(text.encode())
    old = untrusted._BLOCK
    untrusted._BLOCK = block
    try:
        got = [(number, line) for first, lines in untrusted.read_lines(RULE_FILE, path)
               for number, line in enumerate(lines, first)]
    finally:
        untrusted._BLOCK = old
    expected = text.split("\n")
    if expected[-1] == "":
        expected.pop()
    assert got == list(enumerate(expected, 1))


def test_a_very_long_line_is_no_rule_and_not_read_on(tmp_path: Path) -> None:
    path = tmp_path / "long"
    path.write_text("192.0.2.1\n" + "1" * (untrusted.MAX_LINE + 10) + "\n")
    with pytest.raises(RuleFileError, match=r":2: a line of more than 64 KiB: not an address"):
        list(untrusted.read_lines(RULE_FILE, path))


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "binary"
    path.write_bytes(b"192.0.2.1\n192.0.2.2\n\xff\xfe\n")
    with pytest.raises(RuleFileError, match=r"is not UTF-8 text \(line 3\)"):
        list(untrusted.read_lines(RULE_FILE, path))
    with pytest.raises(PolicyFileError, match=r"is not UTF-8 text \(line 3\)"):
        untrusted.read_text(POLICY_FILE, path)


# -- the shape of policy TOML


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("x = " + "[" * 100_000, 1, "nested more than 32 deep"),
        ("x = " + "{a = " * 100_000, 1, "nested more than 32 deep"),
        ("[interfaces.eth0]\nblock = " + "[" * 33 + "]" * 33, 2, "nested more than 32 deep"),
        ('x = "' + "1" * 50_000_000 + '"', 1, "a string longer than 4096"),
        ("x = '" + "1" * 5000 + "'", 1, "a string longer than 4096"),
        ('x = """\n' + "1 " * 5000 + '"""', 1, "a string longer than 4096"),
        ("x = '''" + "[" * 5000 + "'''", 1, "a string longer than 4096"),
        ("\n\nx = " + "1" * 50_000_000, 3, "a value or key longer than 4096"),
        ("k" * 5000 + " = 1", 1, "a value or key longer than 4096"),
        ('"a".' + "k" * 5000 + " = 1", 1, "a value or key longer than 4096"),
    ],
)
def test_deep_or_long_toml_is_refused_before_parsing(text: str, line: int, words: str) -> None:
    start = time.perf_counter()
    found = untrusted.toml_shape_problem(text)
    assert time.perf_counter() - start < 0.1
    assert found is not None
    assert found[0] == line and words in found[2]


@pytest.mark.parametrize(
    "text",
    [
        'x = "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["',
        "x = '{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{'",
        '# [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\nx = 1',
        'x = """\n[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n"""',
        'x = "\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["',
        "x = " + "[" * 32 + "]" * 32,
        'x = "' + "1" * 4096 + '"',
    ],
)
def test_brackets_in_strings_and_comments_do_not_count(text: str) -> None:
    assert untrusted.toml_shape_problem(text) is None
    tomllib.loads(text)


_STRINGS = st.sampled_from(['"a"', '"[{"', "'}]'", '"\\"["', '"""[\n{"""', "'''x'''''", '""""a""""',
                            '"#["', "1", "true"])


@st.composite
def _nested(draw: st.DrawFn, depth: int) -> str:
    if depth == 0:
        return draw(_STRINGS)
    inner = draw(_nested(depth - 1))
    return f"[{inner}, {draw(_STRINGS)}]" if draw(st.booleans()) else f"{{k = {inner}}}"


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 60).flatmap(lambda depth: st.tuples(st.just(depth), _nested(depth))))
def test_the_shape_check_sees_the_depth_tomllib_sees(nested: tuple[int, str]) -> None:
    depth, value = nested
    text = f"x = {value}\n# {value.replace(chr(10), ' ')}\n"
    tomllib.loads(text)  # valid TOML: the check must not be thrown off by its strings
    assert (untrusted.toml_shape_problem(text) is None) == (depth <= untrusted.MAX_TOML_DEPTH)


def test_the_shape_check_passes_a_big_export() -> None:
    """Half a million rules in one array are no problem of shape (how fast the check is,
    make bench measures)."""
    text = "[interfaces]\n\n[interfaces.eth0]\nblock = [\n" + "".join(
        f'    "10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",\n' for i in range(500_000)) + "]\n"
    assert untrusted.toml_shape_problem(text) is None

"""Input from outside, handled as hostile: bounded, typed reads of the files a user names
(rule files, policy files), shape limits for policy TOML, ASCII-only numbers, and the
short, sanitized quotes an error message may make of any of it.

A file is read only if it is a regular file (a FIFO, device, socket or directory is
refused before it is read, and a FIFO never blocks the open) and at most a size limit
long, also when it grows while it is read or reports no size (``/proc``). Rule files
are read a block of lines at a time, so memory follows the rules, not the file. Error
messages never carry file content beyond a short excerpt of a token that looks like
what was expected (see :func:`quote`, :func:`looks_like_address`).
"""

from __future__ import annotations

import functools
import math
import os
import re
import stat
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pingkiller.model.errors import InvalidInput, PolicyFileError, RuleFileError

QUOTE_WIDTH = 40  # characters of a token an error message may quote
PATH_WIDTH = 200  # characters of a path (what the user typed) a message shows
MAX_LINE = 64 * 1024  # a rule file line longer than this is refused: no rule is that long
_BLOCK = 1 << 20  # bytes read at a time
MAX_TOML_DEPTH = 32  # arrays and inline tables nested deeper are refused before parsing
MAX_TOML_TOKEN = 4096  # characters of a string or bare token (the longest path Linux takes)


@dataclass(frozen=True)
class FileKind:
    """A kind of file users name: what messages call it, its size limit (``env``
    overrides ``default``), and the error raised for it."""

    what: str
    env: str
    default: int
    error: type[InvalidInput]

    def limit(self) -> int:
        """The size limit in effect: ``env`` when set (checked), else ``default``."""
        text = os.environ.get(self.env)
        if text is None:
            return self.default
        try:
            return parse_size(text)
        except ValueError as err:
            raise InvalidInput(f"{self.env}={err}: fix or unset the variable") from None


RULE_FILE = FileKind("rule file", "PINGKILLER_RULE_FILE_LIMIT", 256 << 20, RuleFileError)
POLICY_FILE = FileKind("policy file", "PINGKILLER_POLICY_FILE_LIMIT", 64 << 20, PolicyFileError)

_SIZE = re.compile(r"([0-9]{1,15})([KMGkmg]?)")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(text: str) -> int:
    """A size in bytes: ASCII digits with an optional K, M or G (powers of 1024), e.g.
    ``512M``; ValueError for anything else, and for 0."""
    match = _SIZE.fullmatch(text)
    size = int(match[1]) * _UNITS[match[2].lower()] if match else 0
    if not size:
        raise ValueError(f"{quote(text)} is not a size (digits and an optional K, M or G, "
                         "e.g. 512M; at least 1)")
    return size


def format_size(size: int) -> str:
    """``256 MiB``, ``1 GiB``, ``1000 bytes``."""
    for unit, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} bytes"


# -- quoting


def _escaped(text: str, quoted: bool = True) -> Iterator[str]:
    """``text`` as printable ASCII pieces, one per character (others as escapes; with
    ``quoted``, ``'`` and ``\\`` too)."""
    for char in text:
        if quoted and char in "'\\":
            yield "\\" + char
        elif " " <= char <= "~":
            yield char
        elif "\udc80" <= char <= "\udcff":  # a byte that was not UTF-8 (surrogateescape)
            yield f"\\x{ord(char) - 0xDC00:02x}"
        else:
            yield ascii(char)[1:-1]


def quote(text: str, width: int = QUOTE_WIDTH) -> str:
    """``'text'`` in printable ASCII (others escaped) with at most ``width`` characters
    between the quotes; a longer text is cut and marked ``'...'...``. Reads only what
    it shows, however long ``text`` is."""
    shown: list[str] = []
    used = 0
    for piece in _escaped(text):
        if used + len(piece) > width:
            return "'" + "".join(shown) + "'..."
        shown.append(piece)
        used += len(piece)
    return "'" + "".join(shown) + "'"


def plain(text: str, width: int = 2 * QUOTE_WIDTH) -> str:
    """``text`` unquoted in printable ASCII (others escaped), cut to ``width`` with ``...``."""
    shown: list[str] = []
    used = 0
    for piece in _escaped(text, quoted=False):
        if used + len(piece) > width:
            return "".join(shown) + "..."
        shown.append(piece)
        used += len(piece)
    return "".join(shown)


def shown_path(path: str | Path, width: int = PATH_WIDTH) -> str:
    """A path as a location (unquoted): printable ASCII, the middle cut out past ``width``."""
    pieces = list(_escaped(str(path), quoted=False))
    if sum(map(len, pieces)) <= width:
        return "".join(pieces)
    head, tail = "".join(pieces[: width // 2]), "".join(pieces[-(width // 2 - 3):])
    return f"{head}...{tail}"


def quote_path(path: str | Path) -> str:
    return f"'{shown_path(path)}'"


_ADDRESS_CHARS = frozenset("0123456789abcdefABCDEF.:/")
_LONGEST_ADDRESS = 64  # ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/128 is 49
_ZONE = re.compile(r"[A-Za-z0-9_.@:+-]{1,15}")  # an interface name after '%'


def looks_like_address(token: str) -> bool:
    """Whether a token read from a file looks like an attempt at an address or prefix,
    so that an error may quote it: an IPv4 or IPv6 address in shape (dotted groups of up
    to 4 characters, colon groups of up to 4, an optional /length, %zone or IPv4 :port)
    with at most one character that cannot be in an address (a typo). A line of a file
    that is no rule file (a password entry, an environment, a hex key) does not, even
    where it starts with an address, as a pgpass or hosts-style line does."""
    if len(token) > _LONGEST_ADDRESS or not ("." in token or ":" in token):
        return False
    core, percent, zone = token.partition("%")
    if percent and not _ZONE.fullmatch(zone):
        return False
    core, slash, length = core.partition("/")
    if slash and not (length.isascii() and length.isdigit() and len(length) <= 3):
        return False
    if sum(char not in _ADDRESS_CHARS for char in core) > 1:
        return False
    if ":" not in core:
        return _dotted(core)
    fields = core.split(":")
    if len(fields) == 2 and _dotted(fields[0]):  # IPv4 ADDRESS:PORT
        return fields[1].isdigit() and len(fields[1]) <= 5
    return len(fields) <= 9 and all(len(field) <= 4 for field in fields[:-1]) and (
        len(fields[-1]) <= 4 or _dotted(fields[-1]))


def _dotted(text: str) -> bool:
    """Dotted groups of 1 to 4 characters, 2 to 5 of them (typos of IPv4 included)."""
    groups = text.split(".")
    return 2 <= len(groups) <= 5 and all(1 <= len(group) <= 4 for group in groups)


_TOML_TYPES = {list: "an array", dict: "a table", bool: "a boolean", int: "an integer",
               float: "a float"}


def describe_value(value: object) -> str:
    """A value read from a policy file, for an error: a string quoted (:func:`quote`),
    a number or boolean as written, anything else by its type."""
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, bool | int | float):
        text = repr(value)
        return text if len(text) <= QUOTE_WIDTH else f"{text[:QUOTE_WIDTH]}..."
    return next((name for kind, name in _TOML_TYPES.items() if isinstance(value, kind)),
                f"a {type(value).__name__}")


def one_line(message: str, width: int = 2000) -> str:
    """A message made safe to print as one line: control characters escaped, at most
    ``width`` characters (the last resort behind the per-value quoting)."""
    safe = "".join(char if char.isprintable() else ascii(char)[1:-1] for char in message[:width])
    return safe if len(message) <= width else f"{safe}... (cut)"


# -- numbers

_INTEGER = re.compile(r"[-+]?[0-9]+")
_REAL = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


_DIGITS = 30  # more digits than any count or rate pingkiller takes


def parse_int(text: str) -> int:
    """A whole number in ASCII digits (``int()`` also takes other Unicode digits,
    e.g. fullwidth ones, ``1_000`` and spaces); ValueError otherwise."""
    if not (_INTEGER.fullmatch(text) and len(text) <= _DIGITS):
        raise ValueError(f"{quote(text)} is not a whole number (ASCII digits, e.g. 1000)")
    return int(text)


def parse_float(text: str) -> float:
    """A finite number in ASCII digits with an optional point and exponent (``float()``
    also takes other Unicode digits, ``inf``, ``nan`` and spaces); ValueError otherwise."""
    if not (_REAL.fullmatch(text) and len(text) <= _DIGITS and math.isfinite(float(text))):
        raise ValueError(f"{quote(text)} is not a number (ASCII digits and an optional "
                         "decimal point, e.g. 2.5)")
    return float(text)


# -- files


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def _checked(kind: FileKind, path: str | Path, info: os.stat_result, limit: int) -> None:
    """Refuse anything but a regular file of at most ``limit`` bytes."""
    if not stat.S_ISREG(info.st_mode):
        what = next((name for test, name in _KINDS if test(info.st_mode)), "not a regular file")
        raise kind.error(f"{kind.what} {quote_path(path)} is {what}, not a regular file: "
                         "name a file")
    if info.st_size > limit:
        raise _too_large(kind, path, limit)


def _too_large(kind: FileKind, path: str | Path, limit: int) -> InvalidInput:
    return kind.error(
        f"{kind.what} {quote_path(path)} holds more than {format_size(limit)}, the limit for a "
        f"{kind.what}: split it, or raise the limit with {kind.env} (e.g. {kind.env}=1G)"
    )


def _os_error(kind: FileKind, path: str | Path, err: OSError) -> InvalidInput:
    if isinstance(err, FileNotFoundError):
        return kind.error(f"{kind.what} {quote_path(path)} not found")
    if isinstance(err, PermissionError):
        return kind.error(f"{kind.what} {quote_path(path)} is not readable (permission denied)")
    return kind.error(f"{kind.what} {quote_path(path)} cannot be read: {err.strerror or err}")


@contextmanager
def _opened(kind: FileKind, path: str | Path) -> Iterator[tuple[int, int]]:
    """(fd, limit) of a regular file at most ``kind``'s limit long, closed on exit.

    The path is checked before it is opened (so no device is ever opened: some act on
    open), and the opened fd again (the path may have been swapped meanwhile); the open
    never blocks (O_NONBLOCK: a FIFO swapped in) nor takes a terminal (O_NOCTTY).
    """
    limit = kind.limit()
    if "\0" in str(path):
        raise kind.error(f"{kind.what} {quote_path(path)} cannot be read: no path holds a NUL "
                         "character")
    try:
        _checked(kind, path, os.stat(path), limit)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as err:
        raise _os_error(kind, path, err) from None
    try:
        _checked(kind, path, os.fstat(fd), limit)
        yield fd, limit
    finally:
        os.close(fd)


def _chunks(kind: FileKind, path: str | Path, fd: int, limit: int) -> Iterator[bytes]:
    """The bytes of ``fd`` a block at a time; the limit holds whatever the size said."""
    total = 0
    while True:
        try:
            chunk = os.read(fd, _BLOCK)
        except OSError as err:
            raise _os_error(kind, path, err) from None
        if not chunk:
            return
        total += len(chunk)
        if total > limit:
            raise _too_large(kind, path, limit)
        yield chunk


def _not_utf8(kind: FileKind, path: str | Path, line: int) -> InvalidInput:
    return kind.error(f"{kind.what} {quote_path(path)} is not UTF-8 text (line {line})")


def read_text(kind: FileKind, path: str | Path) -> str:
    """The whole UTF-8 text of a file a user named (see :func:`_opened` for what is refused)."""
    with _opened(kind, path) as (fd, limit):
        data = b"".join(_chunks(kind, path, fd, limit))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _not_utf8(kind, path, data.count(b"\n", 0, err.start) + 1) from None


def read_lines(kind: FileKind, path: str | Path) -> Generator[tuple[int, list[str]], None, None]:
    """The lines of a UTF-8 file a user named, a block at a time, as (number of the
    block's first line, its lines without the newline). Memory stays within one block:
    a line longer than :data:`MAX_LINE` is refused as no rule when it is met."""
    with _opened(kind, path) as (fd, limit):
        number, rest = 1, b""
        for chunk in _chunks(kind, path, fd, limit):
            data = rest + chunk if rest else chunk
            end = data.rfind(b"\n") + 1
            rest = data[end:]
            if len(rest) > MAX_LINE:
                raise _long_line(kind, path, number + data.count(b"\n", 0, end))
            if end:
                lines = _decoded(kind, path, data[:end], number).split("\n")
                lines.pop()  # after the last newline
                if max(map(len, lines)) > MAX_LINE:
                    long = next(n for n, line in enumerate(lines) if len(line) > MAX_LINE)
                    raise _long_line(kind, path, number + long)
                yield number, lines
                number += len(lines)
        if rest:
            yield number, [_decoded(kind, path, rest, number)]


def _long_line(kind: FileKind, path: str | Path, line: int) -> InvalidInput:
    return kind.error(f"{shown_path(path)}:{line}: a line of more than {format_size(MAX_LINE)}: "
                      "not an address or prefix (not shown)")


def _decoded(kind: FileKind, path: str | Path, data: bytes, number: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _not_utf8(kind, path, number + data.count(b"\n", 0, err.start)) from None


# -- the shape of policy TOML

# The scan takes what cannot go wrong (separators, short bare tokens, short one-line
# strings, comments) in one run of the regex engine, and stops only at what must be
# looked at: a bracket, a multi-line or long string, a long bare token.
_RUN = r"""[^"'#\[\]{}\s=,]"""
_N = MAX_TOML_TOKEN
_ATOMS = iter(range(1_000_000))


def _atomic(pattern: str) -> str:
    """``pattern`` matched once and never backtracked into, written as a lookahead and a
    backreference: Python's possessive quantifiers misbehave before 3.11.5."""
    name = f"_atom{next(_ATOMS)}"
    return f"(?=(?P<{name}>{pattern}))(?P={name})"


_BORING = (
    _atomic(r"[\s=,]+")
    + "|" + _atomic(rf"{_RUN}{{1,{_N}}}") + rf"(?!{_RUN})"
    + "|" + _atomic(r'"(?!"")(?:[^"\\\n]|\\.)' + rf"{{0,{_N}}}") + '"'
    + "|" + _atomic(r"'(?!'')[^'\n]" + rf"{{0,{_N}}}") + "'"
    + r"|\#[^\n]*"
)
# At most _BATCH boring tokens a match: the engine keeps a mark per repetition.
_BATCH = 1000


@functools.cache
def _toml_patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """The scan, a string, a string longer than the limit (compiled on first use: only
    policy files need them)."""
    scan = re.compile(_atomic(rf"(?:{_BORING}){{0,{_BATCH}}}")
                      + r"(?:(?P<open>[\[{])|(?P<close>[\]}])"
                      + rf"""|(?P<string>["'])|(?P<bare>{_RUN}{{{_N + 1}}})|(?P<more>))""")
    string = re.compile(
        r'"""[^"\\]*(?:(?:\\.|"(?!""))[^"\\]*)*"{3,5}'  # up to two quotes end the text
        r"|'''[^']*(?:'(?!'')[^']*)*'{3,5}"
        r'|"[^"\\\n]*(?:\\.[^"\\\n]*)*"'
        r"|'[^'\n]*'",
        re.DOTALL,  # a multi-line basic string may escape a newline
    )
    long_string = re.compile(
        r'"""(?:[^"\\]|\\.|"(?!""))' + rf"{{{_N + 1}}}"
        r"|'''(?:[^']|'(?!''))" + rf"{{{_N + 1}}}"
        r'|"(?:[^"\\\n]|\\.)' + rf"{{{_N + 1}}}"
        r"|'[^'\n]" + rf"{{{_N + 1}}}",
        re.DOTALL,
    )
    return scan, string, long_string


def toml_shape_problem(text: str) -> tuple[int, int, str] | None:
    """(line, column, problem) of the first place where policy TOML is nested deeper
    than :data:`MAX_TOML_DEPTH` or holds a string or bare token longer than
    :data:`MAX_TOML_TOKEN` characters; None if there is none. Checked before the text
    is parsed: tomllib recurses per level, and no value pingkiller reads is that long.
    Text tomllib refuses anyway (an unterminated string) may end the check early."""
    scan, string_pattern, long_string = _toml_patterns()
    depth, pos = 0, 0
    while (match := scan.match(text, pos)) is not None:
        if match["more"] is not None:
            if match.end() == pos:
                return None  # the end of the text, or what tomllib refuses anyway
            pos = match.end()
            continue
        pos = match.end()
        if match["open"] is not None:
            depth += 1
            if depth > MAX_TOML_DEPTH:
                return (*_position(text, match.start("open")),
                        f"arrays or tables nested more than {MAX_TOML_DEPTH} deep")
        elif match["close"] is not None:
            depth = max(depth - 1, 0)
        elif match["bare"] is not None:
            return (*_position(text, match.start("bare")),
                    f"a value or key longer than {MAX_TOML_TOKEN} characters (no value "
                    "pingkiller reads is that long; not shown)")
        else:
            start = match.start("string")
            if long_string.match(text, start):  # reads no further than the limit
                return (*_position(text, start),
                        f"a string longer than {MAX_TOML_TOKEN} characters (no value "
                        "pingkiller reads is that long; not shown)")
            string = string_pattern.match(text, start)
            if string is None:
                return None  # unterminated: tomllib says where, and parses no further
            pos = string.end()
    return None


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")  # ASCII digits, one optional point


def parse_seconds(text: str) -> float:
    """Seconds written as ASCII digits with an optional decimal point (``30``, ``2.5``);
    ValueError for anything else (signs, exponents, ``inf``, ``nan``, spaces)."""
    if not _SECONDS.fullmatch(text):
        raise ValueError(f"{quote(text)} is not a number of seconds (digits and an optional "
                         "decimal point, e.g. 30 or 2.5; 0 does not wait)")
    return float(text)

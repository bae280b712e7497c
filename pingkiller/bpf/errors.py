"""Typed errors of the BPF binding.

:class:`BpfError` is an OSError (errno, strerror) and, so that one ``except`` catches
everything the package raises, a :class:`pingkiller.model.errors.PingkillerError`: the
binding's one tie to the rest of the package, a module that imports nothing.
"""

from __future__ import annotations

import errno as errno_codes
import os

from pingkiller.model.errors import PingkillerError

# Kernel-internal errno values that leak out of the bpf() syscall.
ENOTSUPP = 524
# libbpf's own error codes (LIBBPF_ERRNO__START).
_LIBBPF_ERRNO_BASE = 4000


class BpfError(OSError, PingkillerError):
    """A libbpf or bpf() call failed; carries the errno and the operation."""

    def __init__(self, err: int, operation: str, detail: str = "") -> None:
        self.operation = operation
        self.detail = detail
        reason = _describe(err)
        message = f"{operation}: {reason}"
        if detail:
            message += f" ({detail})"
        OSError.__init__(self, err, message)
        self.message, self.point, self.remedy = message, None, None

    def __str__(self) -> str:
        return str(self.strerror)


def _describe(err: int) -> str:
    """strerror, with libbpf's own codes (4000 and up) and the kernel's ENOTSUPP spelled out."""
    if err == ENOTSUPP:
        return "operation not supported"
    if err >= _LIBBPF_ERRNO_BASE:
        from pingkiller.bpf._ffi import ffi, lib

        text = ffi.new("char[]", 256)
        if lib.libbpf_strerror(err, text, 256) == 0:
            return str(ffi.string(text).decode())
    return os.strerror(err)


class NotSupportedError(BpfError):
    """The running kernel lacks a feature the operation needs."""


class WrongObjectType(BpfError):
    """What a pin, id or fd holds is not what was asked for (a map reopened as a link,
    a tracing program attached to XDP...). ``expected`` and ``actual`` say both in words."""

    def __init__(self, where: str, expected: str, actual: str, operation: str = "") -> None:
        self.where = where
        self.expected = expected
        self.actual = actual
        super().__init__(errno_codes.EINVAL, operation or f"opening {expected}",
                         f"{where} is {actual}, not {expected}")


class VerifierError(BpfError):
    """The kernel verifier rejected a program.

    ``log`` is its log as the kernel wrote it, ``truncated`` whether the kernel had more
    to say than the largest buffer tried held (then ``errno`` is ENOSPC and, on kernels
    since 6.4, ``log`` is the end of the log). ``cause`` is the last line that says why;
    ``summary`` is the cause with the line before it when that line explains it (the
    failing instruction before a register's complaint).
    """

    def __init__(self, err: int, program: str, log: str, *, truncated: bool = False) -> None:
        self.program = program
        self.log = log
        self.truncated = truncated
        self.cause = verifier_cause(log, truncated=truncated)
        self.summary = summarize_verifier_log(log, truncated=truncated)
        detail = self.summary + ("; the log is truncated" if truncated else "")
        super().__init__(err, f"loading program {program!r}", detail)


_NOT_SUPPORTED = {ENOTSUPP, errno_codes.EOPNOTSUPP}

_NOISE_PREFIXES = ("processed ", "verification time", "stack depth", "-- end", "-- begin")
_NO_REASON = "the verifier gave no reason (empty log)"
_CUT_REASON = "the verifier's reason did not fit in the log buffer"


def _meaningful(log: str, truncated: bool = False) -> list[str]:
    """The log's lines without blanks and bookkeeping, right-stripped (indents kept).

    A truncated log has a cut line: the first when the kernel kept the end of the log
    (since 6.4; the log then still ends with a newline), else the last.
    """
    lines = log.replace("\0", "").splitlines()
    if truncated and len(lines) > 1:
        lines = lines[1:] if log.endswith("\n") else lines[:-1]
    return [line.rstrip() for line in lines
            if line.strip() and not line.strip().lower().startswith(_NOISE_PREFIXES)]


def _needs_previous(line: str) -> bool:
    """Whether ``line`` reads better after the line before it (as cilium/ebpf decides):
    a register's complaint follows the instruction that caused it, an indented BTF
    member follows its type, a context access follows the load that made it."""
    text = line.strip()
    return (line.startswith("\t")
            or (len(text) >= 2 and text[0] == "R" and text[1].isdigit())
            or text.startswith("invalid bpf_context access"))


def verifier_cause(log: str, *, truncated: bool = False) -> str:
    """The last line of a verifier log that says why, not how much work was done."""
    lines = _meaningful(log, truncated)
    if not lines:
        return _CUT_REASON if truncated else _NO_REASON
    return lines[-1].strip()


def summarize_verifier_log(log: str, *, truncated: bool = False) -> str:
    """The cause, after the line before it when that explains it (or the log is cut)."""
    lines = _meaningful(log, truncated)
    if not lines:
        return _CUT_REASON if truncated else _NO_REASON
    if len(lines) >= 2 and (truncated or _needs_previous(lines[-1])):
        return f"{lines[-2].strip()}: {lines[-1].strip()}"
    return lines[-1].strip()


def error_from_errno(err: int, operation: str, detail: str = "") -> BpfError:
    """The right BpfError subclass for an errno."""
    if err in _NOT_SUPPORTED:
        return NotSupportedError(err, operation, detail)
    return BpfError(err, operation, detail)


def check(result: int, operation: str, detail: str = "") -> int:
    """Raise for a negative libbpf return (-errno); pass non-negative results through."""
    if result < 0:
        raise error_from_errno(-result, operation, detail)
    return result

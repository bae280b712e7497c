"""Typed errors of the BPF binding."""

from __future__ import annotations

import errno as errno_codes
import os

# Kernel-internal errno values that leak out of the bpf() syscall.
ENOTSUPP = 524
# libbpf's own error codes (LIBBPF_ERRNO__START).
_LIBBPF_ERRNO_BASE = 4000


class BpfError(OSError):
    """A libbpf or bpf() call failed; carries the errno and the operation."""

    def __init__(self, err: int, operation: str, detail: str = "") -> None:
        self.operation = operation
        self.detail = detail
        reason = _describe(err)
        message = f"{operation}: {reason}"
        if detail:
            message += f" ({detail})"
        super().__init__(err, message)

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


class VerifierError(BpfError):
    """The kernel verifier rejected a program; ``log`` is its full log."""

    def __init__(self, err: int, program: str, log: str) -> None:
        self.program = program
        self.log = log
        self.summary = summarize_verifier_log(log)
        super().__init__(err, f"loading program {program!r}", self.summary)


_NOT_SUPPORTED = {ENOTSUPP, errno_codes.EOPNOTSUPP}

_NOISE_PREFIXES = ("processed ", "verification time", "stack depth", "-- end", "-- begin")


def summarize_verifier_log(log: str) -> str:
    """The last line of a verifier log that says why, not how much work was done."""
    for line in reversed(log.splitlines()):
        text = line.strip()
        if text and not text.lower().startswith(_NOISE_PREFIXES):
            return text
    return "the verifier gave no reason (empty log)"


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

"""Errors a user can cause, each with a message that names the fix.

``exit_code`` is what the CLI exits with: 2 for bad input, 1 for a runtime failure.
"""

from __future__ import annotations


class PingkillerError(Exception):
    """Base of every error pingkiller reports to users."""

    exit_code = 1


class InvalidInput(PingkillerError):
    """Something the user typed is wrong."""

    exit_code = 2


class InvalidAddress(InvalidInput):
    """Not an IPv4/IPv6 address or prefix."""


class InvalidInterfaceName(InvalidInput):
    """Not a usable interface name."""


class InterfaceNotFound(InvalidInput):
    """No interface of that name in this network namespace."""


class NotAttached(InvalidInput):
    """pingkiller holds no attachment on that interface."""


class RuleFileError(InvalidInput):
    """A rule file cannot be read or has a bad line."""


class PolicyFileError(InvalidInput):
    """A declarative policy file cannot be read or is invalid (see pingkiller.declarative)."""


class AlreadyAttached(PingkillerError):
    """pingkiller already holds the interface."""


class StaleAttachment(PingkillerError):
    """The attachment filters nothing any more (its interface is gone)."""


class IncompatiblePins(PingkillerError):
    """The pins were made by a pingkiller of another ABI version: reading them would misread."""


class ForeignProgram(PingkillerError):
    """Another tool's XDP program is on the interface; pingkiller leaves it alone."""


class RuleTableFull(PingkillerError):
    """A rule map is at capacity; nothing was changed."""


class PermissionDenied(PingkillerError):
    """The caller lacks root / CAP_BPF + CAP_NET_ADMIN."""


class AttachFailed(PingkillerError):
    """The kernel refused to attach (e.g. native mode unsupported)."""


class LockTimeout(PingkillerError):
    """Another process held the pin lock longer than the lock timeout; nothing was changed."""

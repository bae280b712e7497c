"""Every error pingkiller raises, in one tree under :class:`PingkillerError`.

An error carries what happened (``message``), the attachment it is about (``point``,
where there is one) and what to do (``remedy``), as fields: the library words the
remedy as Python (``str(err)``), the CLI as a command (pingkiller.cli.errors).
``exit_code`` is what the CLI exits with: 2 for bad input, 1 for a runtime failure.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pingkiller.model.point import Point


class Remedy(enum.Enum):
    """What the caller can do about an error at ``point``."""

    ATTACH = "attach"  # attach one there first
    DETACH = "detach"  # detach it (its pins go too), then attach again if wanted
    REPLACE = "replace"  # attach again with replace to swap the policy, or detach first
    UPGRADE = "upgrade"  # upgrade it in place to this pingkiller's program
    CHOOSE = "choose"  # say which of an interface's attachments: hook and direction
    NEWER = "newer"  # use the pingkiller that made the pins (this one can still detach)
    TC_HOOK = "tc-hook"  # the XDP hook is taken: attach at the tc hook instead
    LOCK_TIMEOUT = "lock-timeout"  # wait longer for the lock (a higher lock timeout)


class PingkillerError(Exception):
    """Base of every error pingkiller raises (the binding's BpfError included)."""

    exit_code = 1

    def __init__(self, message: str, *, point: Point | None = None,
                 remedy: Remedy | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.point = point
        self.remedy = remedy

    def __str__(self) -> str:
        hint = library_hint(self.remedy, self.point)
        separator = "; " if self.remedy is Remedy.LOCK_TIMEOUT else ": "
        return f"{self.message}{separator}{hint}" if hint else self.message


def library_hint(remedy: Remedy | None, point: Point | None) -> str:
    """``remedy`` in the library's words (Python calls), '' for none."""
    if remedy is None:
        return ""
    where = _call_arguments(point)
    return {
        Remedy.ATTACH: f"attach one first (pingkiller.attach({where}))",
        Remedy.DETACH: f"detach it (pingkiller.detach({where})), then attach again",
        Remedy.REPLACE: "attach with replace=True to swap the policy, or detach it first "
                        f"(pingkiller.detach({where}))",
        Remedy.UPGRADE: f"upgrade it in place, keeping rules and counters "
                        f"(pingkiller.upgrade({where}))",
        Remedy.CHOOSE: "say which with hook='xdp', or hook='tc' and direction='in' or 'out'",
        Remedy.NEWER: "use that pingkiller or a newer one (this one can still detach it: "
                      f"pingkiller.detach({where}))",
        Remedy.TC_HOOK: "attach at the tc hook instead (hook='tc'), which runs beside it, or "
                        "remove it with the tool that loaded it and try again",
        Remedy.LOCK_TIMEOUT: "a longer lock timeout (pingkiller.set_lock_timeout, or "
                             "PINGKILLER_LOCK_TIMEOUT) waits longer",
    }[remedy]


def _call_arguments(point: Point | None) -> str:
    if point is None:
        return "IFACE"
    if point.hook_text == "xdp":
        return repr(point.ifname)
    return f"{point.ifname!r}, hook='tc', direction={point.direction.label!r}"


class InvalidInput(PingkillerError):
    """Something the caller gave is wrong."""

    exit_code = 2


class InvalidAddress(InvalidInput):
    """Not an IPv4/IPv6 address or prefix."""


class InvalidInterfaceName(InvalidInput):
    """Not a usable interface name."""


class InterfaceNotFound(InvalidInput):
    """No interface of that name in this network namespace."""


class NotAttached(InvalidInput):
    """pingkiller holds no attachment there."""


class RuleFileError(InvalidInput):
    """A rule file cannot be read or has a bad line."""


class PolicyFileError(InvalidInput):
    """A policy file cannot be read or is invalid."""


class WebConfigError(InvalidInput):
    """The exporter's web configuration file cannot be read or is invalid."""


class AlreadyAttached(PingkillerError):
    """pingkiller already holds that hook."""


class StaleAttachment(PingkillerError):
    """The attachment filters nothing any more (its interface is gone, its link was detached)."""


class IncompatiblePins(PingkillerError):
    """The pins were made by a pingkiller of another ABI version: reading them would misread."""


class ForeignProgram(PingkillerError):
    """Another tool's program holds the hook; pingkiller leaves it alone."""


class RuleTableFull(PingkillerError):
    """A rule map is at capacity; nothing was changed."""


class PermissionDenied(PingkillerError):
    """The caller lacks root / CAP_BPF + CAP_NET_ADMIN, or may not trust what it found."""


class AttachFailed(PingkillerError):
    """The kernel refused to attach (e.g. native mode unsupported)."""


class LockTimeout(PingkillerError):
    """Another process held a lock longer than the timeout; nothing was changed."""


class AttachmentEnded(PingkillerError):
    """The attachment a handle reads no longer filters or is no longer this handle's: its
    interface was deleted, it was detached, replaced by another attachment, or its link
    was detached. What the handle would read is frozen, so reads and watchers stop."""


class AttachmentClosed(PingkillerError):
    """The handle was closed; open the attachment again to use it."""


class SandboxError(PingkillerError):
    """Making a sandbox (namespaces and veth pairs) failed."""


class ProgramNotFound(PingkillerError):
    """A system program pingkiller runs is not installed in a trusted place."""

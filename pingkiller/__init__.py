"""pingkiller: kill pings at the driver with XDP, by policy, from Python or the CLI.

>>> import pingkiller
>>> attachment = pingkiller.attach("veth0", block=["198.18.0.7"])  # doctest: +SKIP
>>> attachment.stats().dropped  # doctest: +SKIP
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pingkiller.abi import (
        DefaultAction,
        Direction,
        EventsMode,
        Hook,
        IcmpSet,
        Reason,
        RuleAction,
        TimingSlot,
    )
    from pingkiller.bpf import BpfError, XdpMode
    from pingkiller.errors import (
        AlreadyAttached,
        AttachFailed,
        ForeignProgram,
        IncompatiblePins,
        InterfaceNotFound,
        InvalidAddress,
        InvalidInput,
        InvalidInterfaceName,
        NotAttached,
        PermissionDenied,
        PingkillerError,
        RuleFileError,
        RuleTableFull,
        StaleAttachment,
    )
    from pingkiller.events import Event, EventStream
    from pingkiller.hooks import TcMode
    from pingkiller.killer import (
        Attachment,
        AttachmentInfo,
        Detached,
        LinkState,
        RuleChange,
        Upgraded,
        attach,
        attach_both,
        attachments,
        change_rules,
        detach,
        detach_all,
        each_attachment,
        open_attachment,
        open_each,
        points,
        upgrade,
        upgrade_all,
    )
    from pingkiller.pins import Point
    from pingkiller.policy import Policy, Rule
    from pingkiller.stats import Counter, Stats, run_time_stats
    open = open_attachment

__version__ = "0.1.0"

# Imported on first use, so that `import pingkiller.bpf` (the generic binding) loads nothing
# of the product, and a CLI verb loads only what it needs.
_LAZY = {
    "DefaultAction": "pingkiller.abi",
    "EventsMode": "pingkiller.abi",
    "Direction": "pingkiller.abi",
    "Hook": "pingkiller.abi",
    "IcmpSet": "pingkiller.abi",
    "Reason": "pingkiller.abi",
    "RuleAction": "pingkiller.abi",
    "TimingSlot": "pingkiller.abi",
    "BpfError": "pingkiller.bpf",
    "XdpMode": "pingkiller.bpf",
    "AlreadyAttached": "pingkiller.errors",
    "AttachFailed": "pingkiller.errors",
    "ForeignProgram": "pingkiller.errors",
    "IncompatiblePins": "pingkiller.errors",
    "LockTimeout": "pingkiller.errors",
    "InterfaceNotFound": "pingkiller.errors",
    "InvalidAddress": "pingkiller.errors",
    "InvalidInput": "pingkiller.errors",
    "InvalidInterfaceName": "pingkiller.errors",
    "NotAttached": "pingkiller.errors",
    "PermissionDenied": "pingkiller.errors",
    "PingkillerError": "pingkiller.errors",
    "RuleFileError": "pingkiller.errors",
    "RuleTableFull": "pingkiller.errors",
    "StaleAttachment": "pingkiller.errors",
    "Event": "pingkiller.events",
    "EventStream": "pingkiller.events",
    "Attachment": "pingkiller.killer",
    "AttachmentInfo": "pingkiller.killer",
    "Detached": "pingkiller.killer",
    "LinkState": "pingkiller.killer",
    "attach": "pingkiller.killer",
    "attach_both": "pingkiller.killer",
    "change_rules": "pingkiller.killer",
    "RuleChange": "pingkiller.killer",
    "open_each": "pingkiller.killer",
    "points": "pingkiller.killer",
    "Point": "pingkiller.pins",
    "TcMode": "pingkiller.hooks",
    "attachments": "pingkiller.killer",
    "each_attachment": "pingkiller.killer",
    "detach": "pingkiller.killer",
    "detach_all": "pingkiller.killer",
    "open_attachment": "pingkiller.killer",
    "Upgraded": "pingkiller.killer",
    "upgrade": "pingkiller.killer",
    "upgrade_all": "pingkiller.killer",
    "Policy": "pingkiller.policy",
    "Rule": "pingkiller.policy",
    "Counter": "pingkiller.stats",
    "Stats": "pingkiller.stats",
    "run_time_stats": "pingkiller.stats",
}


def __getattr__(name: str) -> Any:
    # pingkiller.open(ifname) reads naturally. It is not in __all__, so `from pingkiller import *`
    # leaves the builtin open() alone.
    target = "open_attachment" if name == "open" else name
    if target not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[target]), target)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY, "open"])

__all__ = [
    "AlreadyAttached",
    "AttachFailed",
    "Attachment",
    "AttachmentInfo",
    "BpfError",
    "Counter",
    "DefaultAction",
    "Detached",
    "Direction",
    "Event",
    "EventStream",
    "EventsMode",
    "ForeignProgram",
    "Hook",
    "IcmpSet",
    "IncompatiblePins",
    "InterfaceNotFound",
    "InvalidAddress",
    "InvalidInput",
    "InvalidInterfaceName",
    "LinkState",
    "LockTimeout",
    "NotAttached",
    "PermissionDenied",
    "PingkillerError",
    "Point",
    "Policy",
    "Reason",
    "Rule",
    "RuleAction",
    "RuleChange",
    "RuleFileError",
    "RuleTableFull",
    "StaleAttachment",
    "Stats",
    "TcMode",
    "TimingSlot",
    "Upgraded",
    "XdpMode",
    "__version__",
    "attach",
    "attach_both",
    "attachments",
    "change_rules",
    "detach",
    "detach_all",
    "each_attachment",
    "open_attachment",
    "open_each",
    "points",
    "run_time_stats",
    "upgrade",
    "upgrade_all",
]

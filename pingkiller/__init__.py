"""pingkiller: kill pings at the driver with XDP, by policy, from Python or the CLI.

>>> import pingkiller
>>> attachment = pingkiller.attach("veth0", block=["198.18.0.7"])  # doctest: +SKIP
>>> attachment.stats().dropped  # doctest: +SKIP
"""

from pingkiller.abi import DefaultAction, EventsMode, IcmpSet, Reason, RuleAction
from pingkiller.bpf import XdpMode
from pingkiller.errors import (
    AlreadyAttached,
    AttachFailed,
    ForeignProgram,
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
from pingkiller.killer import (
    Attachment,
    AttachmentInfo,
    Detached,
    attach,
    attachments,
    detach,
    detach_all,
    open_attachment,
)
from pingkiller.policy import Policy, Rule
from pingkiller.stats import Counter, Stats

# pingkiller.open(ifname) reads naturally. It is not in __all__, so `from pingkiller import *`
# leaves the builtin open() alone.
open = open_attachment
__version__ = "0.1.0"

__all__ = [
    "AlreadyAttached",
    "AttachFailed",
    "Attachment",
    "AttachmentInfo",
    "Counter",
    "DefaultAction",
    "Detached",
    "Event",
    "EventStream",
    "EventsMode",
    "ForeignProgram",
    "IcmpSet",
    "InterfaceNotFound",
    "InvalidAddress",
    "InvalidInput",
    "InvalidInterfaceName",
    "NotAttached",
    "PermissionDenied",
    "PingkillerError",
    "Policy",
    "Reason",
    "Rule",
    "RuleAction",
    "RuleFileError",
    "RuleTableFull",
    "StaleAttachment",
    "Stats",
    "XdpMode",
    "__version__",
    "attach",
    "attachments",
    "detach",
    "detach_all",
    "open_attachment",
]

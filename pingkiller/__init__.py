"""pingkiller: kill pings at the driver with XDP (or at tc), by policy, from Python or the CLI.

>>> import pingkiller
>>> attachment = pingkiller.attach("veth0", block=["198.18.0.7"])  # doctest: +SKIP
>>> attachment.stats().dropped  # doctest: +SKIP

Every public name is imported below, for type checkers, and nowhere else: at run time
each is loaded on first use (:func:`__getattr__` reads this block), so that
``import pingkiller.bpf`` loads nothing of the product and a CLI verb only what it needs.
``docs/library.md`` documents them.
"""

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:  # the public API, listed once
    from pingkiller.attachment import Attachment as Attachment
    from pingkiller.attachment import AttachmentView as AttachmentView
    from pingkiller.bpf.errors import BpfError as BpfError
    from pingkiller.datapath.counters import run_time_stats as run_time_stats
    from pingkiller.datapath.events import EventFeed as EventFeed
    from pingkiller.datapath.events import EventStream as EventStream
    from pingkiller.declarative import apply as apply
    from pingkiller.declarative import export as export
    from pingkiller.declarative import from_running as from_running
    from pingkiller.declarative import parse_policy_file as parse_policy_file
    from pingkiller.declarative import plan as plan
    from pingkiller.model.enums import DefaultAction as DefaultAction
    from pingkiller.model.enums import Direction as Direction
    from pingkiller.model.enums import EventsMode as EventsMode
    from pingkiller.model.enums import Hook as Hook
    from pingkiller.model.enums import IcmpSet as IcmpSet
    from pingkiller.model.enums import LinkState as LinkState
    from pingkiller.model.enums import Mode as Mode
    from pingkiller.model.enums import PinState as PinState
    from pingkiller.model.enums import Reason as Reason
    from pingkiller.model.enums import RuleAction as RuleAction
    from pingkiller.model.enums import TimingSlot as TimingSlot
    from pingkiller.model.errors import AlreadyAttached as AlreadyAttached
    from pingkiller.model.errors import AttachFailed as AttachFailed
    from pingkiller.model.errors import AttachmentClosed as AttachmentClosed
    from pingkiller.model.errors import AttachmentEnded as AttachmentEnded
    from pingkiller.model.errors import ForeignProgram as ForeignProgram
    from pingkiller.model.errors import IncompatiblePins as IncompatiblePins
    from pingkiller.model.errors import InterfaceNotFound as InterfaceNotFound
    from pingkiller.model.errors import InvalidAddress as InvalidAddress
    from pingkiller.model.errors import InvalidInput as InvalidInput
    from pingkiller.model.errors import InvalidInterfaceName as InvalidInterfaceName
    from pingkiller.model.errors import LockTimeout as LockTimeout
    from pingkiller.model.errors import NotAttached as NotAttached
    from pingkiller.model.errors import PermissionDenied as PermissionDenied
    from pingkiller.model.errors import PingkillerError as PingkillerError
    from pingkiller.model.errors import PolicyFileError as PolicyFileError
    from pingkiller.model.errors import Remedy as Remedy
    from pingkiller.model.errors import RuleFileError as RuleFileError
    from pingkiller.model.errors import RuleTableFull as RuleTableFull
    from pingkiller.model.errors import SandboxError as SandboxError
    from pingkiller.model.errors import StaleAttachment as StaleAttachment
    from pingkiller.model.errors import WebConfigError as WebConfigError
    from pingkiller.model.events import Event as Event
    from pingkiller.model.events import EventSummary as EventSummary
    from pingkiller.model.icmp import IcmpTypes as IcmpTypes
    from pingkiller.model.limits import Limit as Limit
    from pingkiller.model.limits import Rate as Rate
    from pingkiller.model.network import Network as Network
    from pingkiller.model.network import format_network as format_network
    from pingkiller.model.network import parse_network as parse_network
    from pingkiller.model.point import Point as Point
    from pingkiller.model.policy import Policy as Policy
    from pingkiller.model.results import AttachmentInfo as AttachmentInfo
    from pingkiller.model.results import Detached as Detached
    from pingkiller.model.results import RuleChange as RuleChange
    from pingkiller.model.results import RuleDiff as RuleDiff
    from pingkiller.model.results import Upgraded as Upgraded
    from pingkiller.model.rules import Rule as Rule
    from pingkiller.model.rules import RuleSet as RuleSet
    from pingkiller.model.rules import read_rule_file as read_rule_file
    from pingkiller.model.stats import Counter as Counter
    from pingkiller.model.stats import Stats as Stats
    from pingkiller.ops.attach import attach as attach
    from pingkiller.ops.attach import attach_both as attach_both
    from pingkiller.ops.change import change_rules as change_rules
    from pingkiller.ops.change import sync_rules as sync_rules
    from pingkiller.ops.common import set_lock_timeout as set_lock_timeout
    from pingkiller.ops.detach import detach as detach
    from pingkiller.ops.detach import detach_all as detach_all
    from pingkiller.ops.detach import recover_interrupted as recover_interrupted
    from pingkiller.ops.listing import attachments as attachments
    from pingkiller.ops.listing import check_access as check_access
    from pingkiller.ops.listing import each_attachment as each_attachment
    from pingkiller.ops.listing import open as open
    from pingkiller.ops.listing import open_attachment as open_attachment
    from pingkiller.ops.listing import open_each as open_each
    from pingkiller.ops.listing import points as points
    from pingkiller.ops.upgrade import upgrade as upgrade
    from pingkiller.ops.upgrade import upgrade_all as upgrade_all
    from pingkiller.store import Store as Store
else:
    def __getattr__(name: str) -> object:
        """A public name, imported from its module on first use (and kept)."""
        import importlib

        from pingkiller._public import public

        where = public(__file__)
        if name == "__all__":
            value: object = [*sorted(n for n in where if n != "open"), "__version__"]
        elif name in where:
            module, original = where[name]
            value = getattr(importlib.import_module(module), original)
        else:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        from pingkiller._public import public

        return sorted([*globals(), *public(__file__)])

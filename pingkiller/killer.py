"""Attachments: attach, open, list and detach pingkiller on interfaces; change policy live.

An attachment pins its XDP link and maps under one bpffs directory per interface
(:mod:`pingkiller.pins`), so it outlives the process that made it and any later
process can reopen it. With ``persist=False`` nothing is pinned and closing the
attachment detaches it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from pingkiller import abi, capabilities, datapath, pins
from pingkiller.abi import DefaultAction, EventsMode, IcmpSet, Network, RuleAction
from pingkiller.bpf import BpfError, Map, NotSupportedError, Object, Program, XdpLink, XdpMode
from pingkiller.bpf.link import LinkInfo, xdp_query
from pingkiller.errors import (
    AlreadyAttached,
    AttachFailed,
    ForeignProgram,
    InterfaceNotFound,
    InvalidInput,
    NotAttached,
    PermissionDenied,
    StaleAttachment,
)
from pingkiller.events import EventStream
from pingkiller.policy import Policy, Rule, format_network, parse_network
from pingkiller.rules import RuleKeys, RuleTable, read_rule_keys
from pingkiller.stats import Stats, read_stats

PINNED_MAPS = (
    abi.SETTINGS_MAP,
    abi.COUNTERS_MAP,
    abi.TIMING_MAP,
    abi.EVENTS_MAP,
    abi.RULES_V4_MAP,
    abi.RULES_V6_MAP,
    abi.PREFIXES_V4_MAP,
    abi.PREFIXES_V6_MAP,
)
# Kept across --replace so counters and event readers carry on.
CARRIED_MAPS = (abi.COUNTERS_MAP, abi.TIMING_MAP, abi.EVENTS_MAP)

NEEDS_ROOT = "needs root (CAP_BPF + CAP_NET_ADMIN): run it with sudo"
# Pinned only during --replace, until the link is pinned: tells recover() whether the
# interrupted writer had already swapped the link to the new program.
_NEW_PROGRAM_PIN = "program"


def require_privileges(*, load: bool = False) -> None:
    """Raise PermissionDenied unless the process may use pingkiller's pins (and, with
    ``load``, load and attach its program: the verifier needs CAP_PERFMON for it too).

    CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON, as in the kernel. The pins are
    root's (0600 in a 0700 directory), so a non-root user is refused even with the caps.
    """
    lacking = capabilities.missing(capabilities.effective(), load=load)
    if lacking == ["CAP_PERFMON"]:
        raise PermissionDenied(f"{NEEDS_ROOT} (loading its XDP program also needs CAP_PERFMON)")
    if lacking:
        raise PermissionDenied(NEEDS_ROOT)
    pin_root = pins.root()
    if pin_root.exists() and not os.access(pin_root, os.R_OK | os.W_OK | os.X_OK, effective_ids=True):
        raise PermissionDenied(f"the pins in {pin_root} are root's: {NEEDS_ROOT}")


def interface_index(ifname: str) -> int:
    """The ifindex of ``ifname`` in this network namespace."""
    pins.validate_ifname(ifname)
    try:
        return socket.if_nametoindex(ifname)
    except OSError:
        raise InterfaceNotFound(
            f"interface {ifname!r} not found: list interfaces with `ip link`"
        ) from None


_RENAMED = "the interface was renamed to"
_SIOCGIFHWADDR = 0x8927
_ARPHRD_ETHER = 1
_ARPHRD_LOOPBACK = 772


def _is_stale(problem: str) -> bool:
    """A renamed interface is a problem but still filters; every other problem is stale."""
    return bool(problem) and not problem.startswith(_RENAMED)


def _check_ethernet(ifname: str) -> None:
    """Refuse devices whose frames do not start with an Ethernet header (tun, wireguard,
    ipip, gre, ppp...): the program would parse them as Ethernet and every ping would pass.
    """
    request = struct.pack("16sH14s", ifname.encode(), 0, b"")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            reply = fcntl.ioctl(sock, _SIOCGIFHWADDR, request)
    except OSError:
        return  # cannot tell; the kernel decides
    (link_type,) = struct.unpack_from("H", reply, 16)
    if link_type not in (_ARPHRD_ETHER, _ARPHRD_LOOPBACK):
        raise InvalidInput(
            f"{ifname} is not an Ethernet device (link type {link_type}): pingkiller parses "
            "Ethernet frames, so it would pass every ping there; attach it to an Ethernet "
            "interface (e.g. the one carrying this tunnel)"
        )


def interface_name(ifindex: int) -> str | None:
    try:
        return socket.if_indextoname(ifindex)
    except OSError:
        return None


def _networks(addresses: Iterable[str | Network]) -> list[Network]:
    return [a if not isinstance(a, str) else parse_network(a) for a in addresses]


def _pinned_program_ids() -> dict[int, str]:
    """Program id -> interface name of every pinned pingkiller link."""
    held = {}
    for name in pins.listed():
        try:
            with XdpLink.from_pin(pins.directory(name) / pins.LINK_PIN) as link:
                held[link.info().prog_id] = name
        except (BpfError, ValueError):
            continue
    return held


def _check_foreign(ifname: str, ifindex: int) -> None:
    attached = xdp_query(ifindex).attached_ids
    if not attached:
        return
    prog_id = attached[0]
    ours = _pinned_program_ids()
    if prog_id in ours:
        raise AlreadyAttached(
            f"{ifname} already carries pingkiller's attachment pinned as {ours[prog_id]!r} "
            f"(the interface was renamed): `pingkiller detach {ours[prog_id]}` first"
        )
    try:
        name = Program.from_id(prog_id).info().name
    except BpfError:
        name = "?"
    raise ForeignProgram(
        f"{ifname} already carries XDP program id {prog_id} ({name!r}) that pingkiller did "
        f"not attach; it is left alone: remove it with the tool that loaded it "
        f"(or `ip link set dev {ifname} xdp off`) and try again"
    )


@dataclass(frozen=True)
class AttachmentInfo:
    """What ``status`` shows about one attachment."""

    ifname: str
    ifindex: int
    program_id: int
    link_id: int
    mode: str
    policy: Policy | None
    rule_count: int
    rules: list[Rule]
    stats: Stats | None
    stale: bool
    problem: str
    pin_dir: str

    def to_json(self) -> dict[str, object]:
        return {
            "interface": self.ifname,
            "ifindex": self.ifindex,
            "program_id": self.program_id,
            "link_id": self.link_id,
            "mode": self.mode,
            "stale": self.stale,
            "problem": self.problem or None,
            "policy": self.policy.to_json() if self.policy else None,
            "rule_count": self.rule_count,
            "rules": [rule.to_json() for rule in self.rules],
            "stats": self.stats.to_json() if self.stats else None,
            "pin_dir": self.pin_dir,
        }


class Attachment:
    """pingkiller on one interface. Obtain it with :func:`attach` or :func:`open`.

    As a context manager it closes its handles on exit; an attachment made with
    ``persist=False`` is detached then, a pinned one stays.
    """

    def __init__(
        self, ifname: str, link: XdpLink, maps: dict[str, Map], *, pinned: bool,
        obj: Object | None = None,
    ) -> None:
        self.ifname = ifname
        self.link = link
        self.maps = maps
        self.pinned = pinned
        self._obj = obj
        self._table = RuleTable(maps)

    # -- policy

    @property
    def policy(self) -> Policy:
        return Policy.from_config(abi.Config.decode(self.maps[abi.SETTINGS_MAP][abi.u32_key(0)]))

    def set_policy(self, policy: Policy) -> None:
        """Change default action, ICMP set, events, timing... at once, rules untouched."""
        with self._locked():
            current = abi.Config.decode(self.maps[abi.SETTINGS_MAP][abi.u32_key(0)])
            prefixes = current.flags & (abi.ConfigFlag.PREFIXES_V4 | abi.ConfigFlag.PREFIXES_V6)
            self.maps[abi.SETTINGS_MAP][abi.u32_key(0)] = policy.to_config(prefixes).encode()

    def _locked(self) -> AbstractContextManager[None]:
        """The pin lock for pinned attachments; private ones have no other writer."""
        return pins.locked() if self.pinned else nullcontext()

    def _changing(self) -> AbstractContextManager[None]:
        """The lock for a rule change, refusing one that would filter nothing."""
        if self.is_stale():
            raise StaleAttachment(
                f"{self.ifname}'s attachment filters nothing ({self.problem()}): "
                f"`pingkiller detach {self.ifname}` cleans it, then attach again"
            )
        return self._locked()

    def block(self, addresses: Iterable[str | Network]) -> int:
        """Block pings from/to these addresses or prefixes; returns rules changed."""
        return self._set(addresses, RuleAction.BLOCK)

    def allow(self, addresses: Iterable[str | Network]) -> int:
        """Let pings from/to these addresses or prefixes pass; returns rules changed."""
        return self._set(addresses, RuleAction.ALLOW)

    def _set(self, addresses: Iterable[str | Network], action: RuleAction) -> int:
        networks = _networks(addresses)
        with self._changing():
            return self._table.set(networks, action)

    def block_file(self, path: str | Path, action: RuleAction = RuleAction.BLOCK) -> int:
        """Load a blocklist file (one address/prefix per line, # comments) in batches."""
        return self.set_rules(read_rule_keys(path), action)

    def set_rules(self, keys: RuleKeys, action: RuleAction) -> int:
        """Give every rule in ``keys`` the ``action``; returns rules changed (big lists)."""
        with self._changing():
            return self._table.set_keys(keys.by_map, action)

    def remove_rules(self, keys: RuleKeys) -> int:
        """Remove any rule in ``keys``; returns how many existed."""
        with self._changing():
            return self._table.remove_keys(keys.by_map)

    def unblock(self, addresses: Iterable[str | Network]) -> int:
        """Remove any rule for these addresses; returns how many existed."""
        networks = _networks(addresses)
        with self._changing():
            return self._table.remove(networks)

    def rules(self) -> list[Rule]:
        return self._table.rules()

    def rule_count(self) -> int:
        return self._table.count()

    # -- observation

    def program(self) -> Program:
        return Program.from_id(self.link.info().prog_id)

    def stats(self, *, per_cpu: bool = False) -> Stats:
        try:
            program: Program | None = self.program()
        except BpfError:
            program = None
        return read_stats(self.maps, program, per_cpu=per_cpu)

    def _link_state(self) -> tuple[LinkInfo | None, str]:
        """The link's kernel info (None if unreadable) and what is wrong, '' if nothing."""
        try:
            info = self.link.info()
        except BpfError:
            return None, "its XDP link cannot be read"
        if info.ifindex == 0:
            return info, "the interface is gone (the link is defunct)"
        current = interface_name(info.ifindex)
        if current != self.ifname:
            return info, f"{_RENAMED} {current!r}" if current else "the interface is gone"
        return info, ""

    def events(self) -> EventStream:
        """A stream of this attachment's events (the mode is set by the policy)."""
        return EventStream(self.maps[abi.EVENTS_MAP])

    def problem(self) -> str:
        """What is wrong with the attachment, or '' when nothing is.

        A renamed interface is a problem (the pins keep the old name) but not stale:
        the program still filters. Everything else reported here is stale.
        """
        return self._link_state()[1]

    def is_stale(self) -> bool:
        """True when the attachment filters nothing any more (link defunct, interface gone)."""
        return _is_stale(self.problem())

    def info(self, *, with_rules: bool = True) -> AttachmentInfo:
        link_info, problem = self._link_state()
        stale = _is_stale(problem)
        rules = self.rules() if with_rules else []
        try:
            program = Program.from_id(link_info.prog_id) if link_info else None
        except BpfError:
            program = None
        return AttachmentInfo(
            ifname=self.ifname,
            ifindex=link_info.ifindex if link_info else 0,
            program_id=link_info.prog_id if link_info else 0,
            link_id=link_info.id if link_info else 0,
            mode=xdp_query(link_info.ifindex).mode.value if link_info and not stale else "none",
            policy=self.policy,
            rule_count=len(rules) if with_rules else self.rule_count(),
            rules=rules,
            stats=read_stats(self.maps, program),
            stale=stale,
            problem=problem,
            pin_dir=str(pins.directory(self.ifname)) if self.pinned else "",
        )

    # -- lifetime

    def detach(self) -> None:
        """Detach from the interface and remove the pins."""
        if self.pinned:
            with pins.locked():
                _detach_pinned(self.ifname)
        else:
            self.link.detach()
        self.close()

    def close(self) -> None:
        """Release this process's handles (a pinned attachment stays attached)."""
        self.link.close()
        for bpf_map in self.maps.values():
            bpf_map.close()
        if self._obj is not None:
            self._obj.close()
            self._obj = None

    def __enter__(self) -> Attachment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_pinned(ifname: str, directory: Path | None = None) -> Attachment:
    where = directory or pins.directory(ifname)
    try:
        link = XdpLink.from_pin(where / pins.LINK_PIN)
        maps = {name: Map.from_pin(where / name) for name in PINNED_MAPS}
    except BpfError as err:
        if err.errno in (errno.EACCES, errno.EPERM):
            raise PermissionDenied(f"reading pingkiller's pins {NEEDS_ROOT}") from None
        if err.errno == errno.ENOENT:
            raise NotAttached(
                f"{ifname} has no complete pingkiller attachment (its pins are incomplete; "
                f"`pingkiller detach {ifname}` cleans them)"
            ) from None
        raise
    return Attachment(ifname, link, maps, pinned=True)


def open_attachment(ifname: str) -> Attachment:
    """Reopen the pinned attachment on ``ifname`` (made by any process)."""
    directory = pins.directory(ifname)  # a bad name is bad input, also without root
    require_privileges()
    if not directory.is_dir():
        raise NotAttached(
            f"{ifname} has no pingkiller attachment: attach one with `pingkiller attach {ifname}`"
        )
    return _open_pinned(ifname)


def recover() -> list[str]:
    """Finish or undo what killed writers left half done; returns what was done, in words.

    Call with the pin lock held. Every writer holds that lock from its first pin to its
    last, so whatever is left over now was left by a writer that is gone (its pid may
    have been reused, or live in another pid namespace sharing this bpffs).
    """
    notes = []
    for path, kind, ifname, _pid in pins.leftovers():
        final = pins.directory(ifname)
        if kind == "attach" and not final.exists() and _link_alive(path):
            (path / _NEW_PROGRAM_PIN).unlink(missing_ok=True)
            pins.publish(path, ifname)
            notes.append(f"{ifname}: completed an interrupted attach")
            continue
        if kind == "attach" and final.exists() and _replace_done(path, final):
            if not (path / pins.LINK_PIN).exists():
                with XdpLink.from_pin(final / pins.LINK_PIN) as link:
                    link.pin(path / pins.LINK_PIN)
                pins.secure(path / pins.LINK_PIN)
            (path / _NEW_PROGRAM_PIN).unlink(missing_ok=True)
            pins.publish(path, ifname)
            notes.append(f"{ifname}: completed an interrupted replace")
            continue
        if kind == "replace" and not final.exists():
            path.rename(final)
            notes.append(f"{ifname}: restored pins of an interrupted replace")
            continue
        if kind == "detach" or (kind == "attach" and not final.exists()):
            _detach_directory(path)
        else:
            pins.remove(path)
        notes.append(f"{ifname}: cleaned up after an interrupted {kind}")
    return notes


def _replace_done(temp: Path, final: Path) -> bool:
    """Whether an interrupted --replace had already swapped the link to ``temp``'s program.

    Then the running program uses the maps pinned in ``temp``, so ``temp`` must win.
    """
    if (temp / pins.LINK_PIN).exists():
        return True  # the link is pinned there only after the swap
    try:
        program = Program.from_pin(temp / _NEW_PROGRAM_PIN)
    except BpfError:
        return False  # killed before the new program was pinned, so before the swap
    try:
        with XdpLink.from_pin(final / pins.LINK_PIN) as link:
            return link.info().prog_id == program.info().id
    except BpfError:
        return False
    finally:
        program.close()


def _link_alive(directory: Path) -> bool:
    try:
        with XdpLink.from_pin(directory / pins.LINK_PIN) as link:
            return link.info().ifindex != 0
    except (BpfError, ValueError):
        return False


def _detach_directory(directory: Path) -> None:
    try:
        with XdpLink.from_pin(directory / pins.LINK_PIN) as link:
            link.detach()
    except BpfError as err:
        if err.errno != errno.ENOENT:
            raise
    pins.remove(directory)


def _detach_pinned(ifname: str) -> None:
    if not pins.directory(ifname).is_dir():
        raise NotAttached(f"{ifname} has no pingkiller attachment: nothing to detach")
    _detach_directory(pins.retire(ifname))


def attach(
    ifname: str,
    *,
    block: Iterable[str | Network] = (),
    allow: Iterable[str | Network] = (),
    default: DefaultAction | None = None,
    icmp: IcmpSet = IcmpSet.ECHO,
    all_protocols: bool = False,
    mode: XdpMode = XdpMode.AUTO,
    events: EventsMode = EventsMode.DROPS,
    event_rate: int = abi.DEFAULT_EVENT_RATE,
    timing: bool = False,
    replace: bool = False,
    persist: bool = True,
) -> Attachment:
    """Attach pingkiller to ``ifname`` with a policy; returns the attachment.

    ``default`` is what happens to pings no rule decides: DROP when no ``block`` rule is
    given (kill every ping), PASS otherwise (kill only listed pings). The program is
    loaded, configured and filled with rules before it is attached, so it never runs
    half-configured. ``replace`` swaps program and policy of an existing attachment
    atomically. ``persist=False`` pins nothing: the attachment lives until closed.
    """
    block_networks = _networks(block)
    allow_networks = _networks(allow)
    both = set(block_networks) & set(allow_networks)
    if both:
        listed = ", ".join(sorted(format_network(n) for n in both))
        raise InvalidInput(f"{listed} given both to block and to allow: pick one")
    if default is None:
        default = DefaultAction.PASS if block_networks else DefaultAction.DROP
    policy = Policy(default, icmp, all_protocols, events, event_rate, timing)
    require_privileges(load=True)
    ifindex = interface_index(ifname)
    _check_ethernet(ifname)

    if not persist:
        _check_foreign(ifname, ifindex)
        obj = _load(policy, block_networks, allow_networks, carried={})
        link = _attach_link(obj, ifname, ifindex, mode)
        return Attachment(ifname, link, dict(obj.maps), pinned=False, obj=obj)

    with pins.locked():
        recover()
        existing: Attachment | None = None
        if pins.directory(ifname).is_dir():
            existing = _open_pinned(ifname)
            problem = existing.problem()
            if _is_stale(problem):
                existing.close()
                _detach_directory(pins.retire(ifname))
                existing = None
            elif problem:
                existing.close()
                raise AlreadyAttached(
                    f"pingkiller's attachment for {ifname} still filters, but {problem}: "
                    f"`pingkiller detach {ifname}` first"
                )
            elif not replace:
                prog_id = existing.link.info().prog_id
                existing.close()
                raise AlreadyAttached(
                    f"pingkiller already holds {ifname} (program id {prog_id}): use --replace to "
                    f"swap the policy, or `pingkiller detach {ifname}` first"
                )
        if existing is None:
            _check_foreign(ifname, ifindex)
        elif mode not in (XdpMode.AUTO, existing.link.mode):
            existing.close()
            raise InvalidInput(
                f"--replace keeps the attach mode ({existing.link.mode.value}); "
                f"to change it to {mode.value}, detach first"
            )

        carried = {name: existing.maps[name] for name in CARRIED_MAPS} if existing else {}
        obj = _load(policy, block_networks, allow_networks, carried)
        temp = pins.temporary(ifname)
        swapped = False
        try:
            for name in PINNED_MAPS:
                obj.maps[name].pin(temp / name)
                pins.secure(temp / name)
            if existing is not None:
                program = obj.programs[abi.PROGRAM_NAME]
                program.pin(temp / _NEW_PROGRAM_PIN)
                pins.secure(temp / _NEW_PROGRAM_PIN)
                link = existing.link
                link.update(program)
                swapped = True
            else:
                link = _attach_link(obj, ifname, ifindex, mode)
            link.pin(temp / pins.LINK_PIN)
            pins.secure(temp / pins.LINK_PIN)
            (temp / _NEW_PROGRAM_PIN).unlink(missing_ok=True)
            pins.publish(temp, ifname)
        except BaseException:
            if swapped:
                # The new program runs already: its maps must win, as after a kill -9.
                recover()
            else:
                pins.remove(temp)
            obj.close()
            raise
        if existing is not None:
            for name in set(PINNED_MAPS) - set(CARRIED_MAPS):
                existing.maps[name].close()
        return Attachment(ifname, link, dict(obj.maps), pinned=True, obj=obj)


def _load(
    policy: Policy, block: list[Network], allow: list[Network], carried: dict[str, Map]
) -> Object:
    obj = datapath.open_object()
    try:
        for name, existing in carried.items():
            obj.reuse_map(name, existing)
        obj.load()
        obj.maps[abi.SETTINGS_MAP][abi.u32_key(0)] = policy.to_config().encode()
        table = RuleTable(obj.maps)
        table.set(block, RuleAction.BLOCK)
        table.set(allow, RuleAction.ALLOW)
    except BaseException:
        obj.close()
        raise
    return obj


def _attach_link(obj: Object, ifname: str, ifindex: int, mode: XdpMode) -> XdpLink:
    try:
        return XdpLink.attach(obj.programs[abi.PROGRAM_NAME], ifindex, mode)
    except NotSupportedError:
        obj.close()
        raise AttachFailed(
            f"{ifname} does not support XDP in {mode.value} mode: try --mode generic or --mode auto"
        ) from None
    except BpfError as err:
        obj.close()
        if err.errno == errno.EBUSY:
            _check_foreign(ifname, ifindex)
        raise AttachFailed(f"attaching to {ifname} failed: {err}") from None


def _recovered_names() -> list[str]:
    """Interfaces with pins, after recovering what killed writers left behind."""
    require_privileges()
    if not pins.root().is_dir():
        return []
    with pins.locked():
        recover()
        return pins.listed()


def attachments(*, with_rules: bool = True) -> list[AttachmentInfo]:
    """Every pinned attachment, stale ones included (interface gone, link defunct)."""
    names = _recovered_names()
    found = []
    for ifname in names:
        try:
            with _open_pinned(ifname) as attachment:
                found.append(attachment.info(with_rules=with_rules))
        except NotAttached as err:
            found.append(_broken(ifname, str(err)))
    return found


def _broken(ifname: str, problem: str) -> AttachmentInfo:
    return AttachmentInfo(
        ifname=ifname, ifindex=0, program_id=0, link_id=0, mode="none", policy=None,
        rule_count=0, rules=[], stats=None, stale=True, problem=problem,
        pin_dir=str(pins.directory(ifname)),
    )


@dataclass(frozen=True)
class Detached:
    """What ``detach`` did to one interface."""

    ifname: str
    was_stale: bool


def detach(ifname: str) -> Detached:
    """Detach pingkiller from ``ifname`` and remove its pins (works if the interface is gone)."""
    pins.validate_ifname(ifname)
    require_privileges()
    with pins.locked():
        recover()
        if not pins.directory(ifname).is_dir():
            raise NotAttached(f"{ifname} has no pingkiller attachment: nothing to detach")
        try:
            with _open_pinned(ifname) as attachment:
                stale = attachment.is_stale()
        except NotAttached:
            stale = True
        _detach_pinned(ifname)
    return Detached(ifname, stale)


def detach_all() -> list[Detached]:
    """Detach every pingkiller attachment (and nothing else)."""
    return [detach(ifname) for ifname in _recovered_names()]

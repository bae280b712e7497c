"""Classic tc filters on an interface's clsact qdisc: how SCHED_CLS programs attach where
the kernel has no tcx (before Linux 6.6).

A filter is named by where it sits: interface, direction, priority and handle (chain 0,
every protocol). It runs in direct-action mode, so the program's return code is the
verdict. Attaching makes the clsact qdisc if the interface has none; detaching removes
only that filter. The qdisc, which other tools' filters may share, goes only through
:func:`remove_clsact_if_empty`. Where an interface has tcx programs as well, those run
first and the filters only see what they pass on (TCX_NEXT).

libbpf attaches and detaches (bpf_tc_*); listing has no libbpf call, so it is an
RTM_GETTFILTER dump (:mod:`pingkiller.bpf.netlink`).
"""

from __future__ import annotations

import contextlib
import errno
import socket
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pingkiller.bpf._ffi import capture_libbpf_log, ffi, lib
from pingkiller.bpf.errors import BpfError, NotSupportedError, error_from_errno
from pingkiller.bpf.fd import ObjectKind, check_type
from pingkiller.bpf.link import TcDirection
from pingkiller.bpf.netlink import RouteSocket, attributes, c_string, u32
from pingkiller.bpf.program import PROG_TYPE_SCHED_CLS, Program

if TYPE_CHECKING:
    from pingkiller.bpf._libbpf import CData

# <linux/pkt_sched.h>, <linux/rtnetlink.h>, <linux/pkt_cls.h>
TC_H_CLSACT = 0xFFFFFFF1
TC_H_MIN_INGRESS = 0xFFF2
TC_H_MIN_EGRESS = 0xFFF3
ETH_P_ALL = 0x0003
_RTM_NEWQDISC = 36
_RTM_GETQDISC = 38
_RTM_NEWTFILTER = 44
_RTM_GETTFILTER = 46
_TCA_KIND = 1
_TCA_OPTIONS = 2
_TCA_CHAIN = 11
_TCA_BPF_NAME = 7
_TCA_BPF_FLAGS = 8
_TCA_BPF_ID = 11
_TCA_BPF_FLAG_ACT_DIRECT = 1 << 0

_TCMSG = struct.Struct("=BxxxiIII")  # family, ifindex, handle, parent, info
_MAX_PRIORITY = 0xFFFF
_MAX_HANDLE = 0xFFFFFFFF
_MAX_IFINDEX = 0x7FFFFFFF
_KERNEL_SAYS = "Kernel error message: "


def tc_parent(direction: TcDirection) -> int:
    """The clsact parent of ``direction``'s filters: TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_*)."""
    minor = TC_H_MIN_INGRESS if direction is TcDirection.INGRESS else TC_H_MIN_EGRESS
    return (TC_H_CLSACT & 0xFFFF0000) | minor


@dataclass(frozen=True)
class TcFilterInfo:
    """One filter on a clsact hook, as the kernel lists it. ``protocol`` is the ETH_P_*
    it matches (ETH_P_ALL, 3: every one); ``prog_id``, ``name`` and ``direct_action``
    are a bpf filter's (0, "" and False for other kinds and classic BPF)."""

    priority: int
    handle: int
    kind: str
    protocol: int = ETH_P_ALL
    chain: int = 0
    prog_id: int = 0
    name: str = ""
    direct_action: bool = False


@dataclass(frozen=True)
class TcFilter:
    """A SCHED_CLS program's filter on an interface's clsact ingress or egress, named by
    where it sits (it holds no fd: the filter lives until detached, or the interface or
    its clsact qdisc goes)."""

    ifindex: int
    direction: TcDirection
    priority: int
    handle: int = 1

    @classmethod
    def attach(cls, program: Program, ifindex: int, direction: TcDirection, *, priority: int,
               handle: int = 1, replace: bool = False) -> TcFilter:
        """Attach ``program`` in direct-action mode at ``priority`` (1-65535) and
        ``handle``, making the clsact qdisc if the interface has none. A filter already
        there raises BpfError (EEXIST) unless ``replace``; WrongObjectType before trying
        if ``program`` is not SCHED_CLS; BpfError (ENODEV) for a missing interface."""
        operation = "attaching a tc filter"
        check_type(ObjectKind.PROGRAM, program.type, PROG_TYPE_SCHED_CLS,
                   f"program {program.name!r}", operation)
        if not 1 <= priority <= _MAX_PRIORITY:
            raise ValueError(f"tc filter priority {priority} is not in 1-{_MAX_PRIORITY}")
        if not 1 <= handle <= _MAX_HANDLE:
            raise ValueError(f"tc filter handle {handle} is not in 1-{_MAX_HANDLE:#x}")
        where = _where(ifindex, direction, priority, handle)
        opts = _opts(priority, handle)
        opts.prog_fd = program.fd  # a closed program raises before anything is made
        created = _ensure_clsact(ifindex, direction, operation)
        opts.flags = lib.BPF_TC_F_REPLACE if replace else 0
        with capture_libbpf_log() as log:
            result = lib.bpf_tc_attach(_hook(ifindex, direction), opts)
        if result < 0:
            error = _attach_error(-result, ifindex, direction, priority, where, _kernel_says(log))
            if created:  # leave the interface as it was
                with contextlib.suppress(BpfError):
                    remove_clsact_if_empty(ifindex)
            raise error
        return cls(ifindex, direction, int(opts.priority), int(opts.handle))

    def query(self) -> int:
        """The id of the program in this filter's place; 0 if none is (or the interface
        is gone)."""
        found = self._find()
        return found.prog_id if found else 0

    def detach(self) -> None:
        """Remove this filter, and only it (never the qdisc); one already gone is fine."""
        if self._find() is None:
            return
        with capture_libbpf_log() as log:
            result = lib.bpf_tc_detach(_hook(self.ifindex, self.direction),
                                       _opts(self.priority, self.handle))
        err = -result
        if result < 0 and err not in (errno.ENOENT, errno.ENODEV) and self._find() is not None:
            raise error_from_errno(err, "detaching a tc filter",
                                   _detail(_where(self.ifindex, self.direction, self.priority,
                                                  self.handle), _kernel_says(log)))

    def _find(self) -> TcFilterInfo | None:
        """The bpf filter in this filter's place, as listed (None if none; the interface
        gone counts as none)."""
        try:
            listed = tc_filters(self.ifindex, self.direction)
        except BpfError as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise
        return next((f for f in listed if f.kind == "bpf" and f.chain == 0
                     and f.protocol == ETH_P_ALL
                     and (f.priority, f.handle) == (self.priority, self.handle)), None)


def tc_filters(ifindex: int, direction: TcDirection) -> list[TcFilterInfo]:
    """Every filter on ``ifindex``'s clsact ``direction`` (every chain), in the kernel's
    order; none without a clsact qdisc. BpfError (ENODEV) for a missing interface."""
    operation = "listing tc filters"
    with RouteSocket() as netlink:
        listed = _dump_filters(netlink, ifindex, direction, operation)
    return [info for info in listed if info is not None]


def clsact_present(ifindex: int) -> bool:
    """Whether ``ifindex`` has a clsact qdisc (BpfError ENODEV for a missing interface)."""
    with RouteSocket() as netlink:
        return _ingress_qdisc(netlink, ifindex, "looking for a clsact qdisc") == "clsact"


def remove_clsact_if_empty(ifindex: int) -> bool:
    """Destroy ``ifindex``'s clsact qdisc if neither direction holds a filter (anyone's);
    whether it did. A filter added between the check and the removal goes with the qdisc:
    netlink has no conditional delete."""
    operation = "removing a clsact qdisc"
    with RouteSocket() as netlink:
        if _ingress_qdisc(netlink, ifindex, operation) != "clsact":
            return False
        for direction in TcDirection:
            if _dump_filters(netlink, ifindex, direction, operation):
                return False
    with capture_libbpf_log() as log:
        result = lib.bpf_tc_hook_destroy(_hook(ifindex, None))
    if result == 0:
        return True
    if -result in (errno.ENOENT, errno.EINVAL, errno.ENODEV):
        return False  # gone, or replaced, meanwhile
    raise error_from_errno(-result, operation, _detail(f"ifindex {ifindex}", _kernel_says(log)))


def _check_ifindex(ifindex: int, operation: str) -> None:
    """BpfError (ENODEV) unless ``ifindex`` names an interface in this namespace (dumps
    of a missing interface are empty, not errors)."""
    try:
        if 0 < ifindex <= _MAX_IFINDEX:
            socket.if_indextoname(ifindex)
            return
    except OSError:
        pass
    raise BpfError(errno.ENODEV, operation, f"ifindex {ifindex}: no such interface")


def _ingress_qdisc(netlink: RouteSocket, ifindex: int, operation: str) -> str | None:
    """The kind of the qdisc in ``ifindex``'s ingress slot: ``clsact``, ``ingress`` (the
    older qdisc with an ingress hook only) or None.

    A dump of the namespace's qdiscs, not a get: the kernel answers an RTM_GETQDISC get
    only with NLM_F_ECHO, which also sends the answer to every tc monitor.
    """
    _check_ifindex(ifindex, operation)
    request = _TCMSG.pack(socket.AF_UNSPEC, ifindex, 0, 0, 0)
    for reply in netlink.dump(_RTM_GETQDISC, request, operation, f"ifindex {ifindex}"):
        if reply.type != _RTM_NEWQDISC or len(reply.payload) < _TCMSG.size:
            continue
        _, owner, _, parent, _ = _TCMSG.unpack_from(reply.payload)
        if owner == ifindex and parent == TC_H_CLSACT:
            kind = c_string(attributes(reply.payload[_TCMSG.size:]).get(_TCA_KIND, b""))
            return kind if kind in ("clsact", "ingress") else None
    return None


def _dump_filters(netlink: RouteSocket, ifindex: int, direction: TcDirection,
                  operation: str) -> list[TcFilterInfo | None]:
    """What an RTM_GETTFILTER dump of the hook lists: a filter's info, or None for a
    classifier's own header line (there are filters where there is any entry)."""
    kind = _ingress_qdisc(netlink, ifindex, operation)
    # An ingress qdisc takes filters of either parent, all on its one (ingress) hook.
    if kind != "clsact" and (kind, direction) != ("ingress", TcDirection.INGRESS):
        return []
    request = _TCMSG.pack(socket.AF_UNSPEC, ifindex, 0, tc_parent(direction), 0)
    replies = netlink.dump(_RTM_GETTFILTER, request, operation,
                           f"ifindex {ifindex}, {direction.value}")
    return [_filter_info(reply.payload) for reply in replies if reply.type == _RTM_NEWTFILTER]


def _filter_info(payload: bytes) -> TcFilterInfo | None:
    if len(payload) < _TCMSG.size:
        raise BpfError(errno.EBADMSG, "reading a netlink reply",
                       f"a filter message of {len(payload)} bytes")
    _, _, handle, _, info = _TCMSG.unpack_from(payload)
    attrs = attributes(payload[_TCMSG.size:])
    options = attrs.get(_TCA_OPTIONS)
    if handle == 0 and options is None:
        return None  # the line a classifier (one priority's) has before its filters
    kind = c_string(attrs.get(_TCA_KIND, b""))
    chain = u32(attrs[_TCA_CHAIN], "TCA_CHAIN") if _TCA_CHAIN in attrs else 0
    prog_id, name, direct_action = 0, "", False
    if kind == "bpf" and options:
        bpf = attributes(options)
        if _TCA_BPF_ID in bpf:
            prog_id = u32(bpf[_TCA_BPF_ID], "TCA_BPF_ID")
        if _TCA_BPF_NAME in bpf:
            name = c_string(bpf[_TCA_BPF_NAME])
        if _TCA_BPF_FLAGS in bpf:
            direct_action = bool(u32(bpf[_TCA_BPF_FLAGS], "TCA_BPF_FLAGS") & _TCA_BPF_FLAG_ACT_DIRECT)
    return TcFilterInfo(priority=info >> 16, handle=handle, kind=kind,
                        protocol=socket.ntohs(info & 0xFFFF), chain=chain, prog_id=prog_id,
                        name=name, direct_action=direct_action)


def _ensure_clsact(ifindex: int, direction: TcDirection, operation: str) -> bool:
    """Make the clsact qdisc unless there; whether this call made it."""
    with RouteSocket() as netlink:
        kind = _ingress_qdisc(netlink, ifindex, operation)
        created = False
        if kind is None:
            with capture_libbpf_log() as log:
                result = lib.bpf_tc_hook_create(_hook(ifindex, None))
            created = result == 0
            if result < 0 and -result != errno.EEXIST:  # EEXIST: made meanwhile
                err = -result
                detail = _detail(f"ifindex {ifindex}", _kernel_says(log))
                if err in (errno.ENOENT, errno.EOPNOTSUPP):
                    raise NotSupportedError(err, operation, _detail(
                        detail, "this kernel has no clsact qdisc (CONFIG_NET_SCH_INGRESS)"))
                raise error_from_errno(err, operation, detail)
            kind = "clsact" if created else _ingress_qdisc(netlink, ifindex, operation)
    if kind == "clsact" or (kind, direction) == ("ingress", TcDirection.INGRESS):
        return created
    if kind is None:
        raise BpfError(errno.EAGAIN, operation,
                       f"ifindex {ifindex}: its ingress qdisc changed while clsact was made; try again")
    name = socket.if_indextoname(ifindex)
    raise BpfError(errno.EEXIST, operation,
                   f"ifindex {ifindex} ({name}) has an ingress qdisc, which has no egress hook: "
                   f"replace it with clsact (tc qdisc del dev {name} ingress) or attach to ingress")


def _attach_error(err: int, ifindex: int, direction: TcDirection, priority: int, where: str,
                  kernel: str) -> BpfError:
    operation = "attaching a tc filter"
    if err == errno.EEXIST:
        return BpfError(err, operation, f"{where}: a filter is already there (detach it, or "
                        "attach with replace=True to replace it)")
    if err == errno.ENODEV:
        return BpfError(err, operation, f"ifindex {ifindex}: no such interface")
    if err == errno.ENOENT:
        return NotSupportedError(err, operation, _detail(
            where, kernel, "this kernel has no bpf classifier (CONFIG_NET_CLS_BPF)"))
    if err == errno.EINVAL:
        # One priority of a chain holds one classifier of one protocol.
        try:
            listed = tc_filters(ifindex, direction)
        except BpfError:
            listed = []
        other = next((f for f in listed if f.chain == 0 and f.priority == priority
                      and (f.kind != "bpf" or f.protocol != ETH_P_ALL)), None)
        if other is not None:
            return BpfError(err, operation, f"{where}: priority {priority} holds a {other.kind} "
                            f"filter (protocol {other.protocol:#06x}): choose another priority")
    return error_from_errno(err, operation, _detail(where, kernel))


def _where(ifindex: int, direction: TcDirection, priority: int, handle: int) -> str:
    return f"ifindex {ifindex}, {direction.value}, priority {priority}, handle {handle:#x}"


def _detail(*parts: str) -> str:
    return "; ".join(part for part in parts if part)


def _kernel_says(log: list[str]) -> str:
    """The kernel's extended-ack messages among libbpf's log lines."""
    return "; ".join(line.split(_KERNEL_SAYS, 1)[1].strip() for line in log if _KERNEL_SAYS in line)


def _hook(ifindex: int, direction: TcDirection | None) -> CData:
    """libbpf's hook for one direction, or (None) for the clsact qdisc itself."""
    hook = ffi.new("struct bpf_tc_hook *")
    hook.sz = ffi.sizeof("struct bpf_tc_hook")
    hook.ifindex = ifindex
    if direction is None:
        hook.attach_point = lib.BPF_TC_INGRESS | lib.BPF_TC_EGRESS
    else:
        hook.attach_point = (lib.BPF_TC_INGRESS if direction is TcDirection.INGRESS
                             else lib.BPF_TC_EGRESS)
    return hook


def _opts(priority: int, handle: int) -> CData:
    opts = ffi.new("struct bpf_tc_opts *")
    opts.sz = ffi.sizeof("struct bpf_tc_opts")
    opts.priority = priority
    opts.handle = handle
    return opts

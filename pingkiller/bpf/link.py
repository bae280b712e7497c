"""Attaching programs through bpf_links: XDP (explicit mode, pin, reopen, atomic update,
detach), tcx (the link-based, multi-program tc hooks of Linux 6.6: ingress and egress,
first or last, the order queried) and raw tracepoints. Every attach function lives here,
above programs."""

from __future__ import annotations

import enum
import errno
import os
from dataclasses import dataclass
from typing import ClassVar, Self

from pingkiller.bpf._ffi import ffi, lib
from pingkiller.bpf.errors import (
    ENOTSUPP,
    BpfError,
    NotSupportedError,
    check,
    error_from_errno,
)
from pingkiller.bpf.fd import FD, Handle, ObjectKind, adopt, check_type, type_name
from pingkiller.bpf.pin import open_pinned
from pingkiller.bpf.program import PROG_TYPE_SCHED_CLS, PROG_TYPE_XDP, Program

LINK_TYPE_XDP: int = lib.BPF_LINK_TYPE_XDP
# Newer than the <linux/bpf.h> the extension may be built with (Linux 6.6's uapi values).
LINK_TYPE_TCX = 11
ATTACH_TCX_INGRESS = 46
ATTACH_TCX_EGRESS = 47
_F_BEFORE = 1 << 3  # BPF_F_BEFORE: with no relative program, before every other one


@dataclass(frozen=True)
class LinkInfo:
    """Kernel information for a link; ``ifindex`` (XDP links) is 0 once its interface is
    gone, or for other kinds of link."""

    id: int
    prog_id: int
    ifindex: int
    type: int = LINK_TYPE_XDP
    attach_type: int = 0  # tcx links: ATTACH_TCX_INGRESS or ATTACH_TCX_EGRESS


def link_info(raw: int) -> LinkInfo:
    """What the kernel says of the link behind the fd ``raw``."""
    ids = ffi.new("__u32[5]")
    check(lib.pk_link_info(raw, ids, ids + 1, ids + 2, ids + 3, ids + 4), "reading link info")
    return LinkInfo(id=ids[0], prog_id=ids[2], ifindex=ids[3], type=ids[1], attach_type=ids[4])


class Link(Handle):
    """A program attached through a bpf_link (e.g. a raw tracepoint); closing it detaches
    unless it is pinned. :meth:`from_pin` reopens only a link (of the class's types)."""

    # The link types this class stands for (None: any).
    LINK_TYPES: ClassVar[frozenset[int] | None] = None

    def __init__(self, fd: FD) -> None:
        self._fd = fd

    @classmethod
    def from_pin(cls, path: str | os.PathLike[str]) -> Self:
        """Reopen a link pinned on bpffs. This needs write access to the pin: the kernel
        opens link pins only read-write (it refuses BPF_F_RDONLY with EINVAL). A pin of
        anything else (a map, a program, a link of another type) raises WrongObjectType."""
        fd = open_pinned(path, "link")
        adopt(fd, ObjectKind.LINK, cls.LINK_TYPES, os.fspath(path), link_info)
        return cls(fd)

    @classmethod
    def from_id(cls, link_id: int) -> Self:
        """Open a link by its kernel id (needs CAP_SYS_ADMIN); a link of another type than
        the class's raises WrongObjectType."""
        where = f"link id {link_id}"
        fd = FD(check(lib.bpf_link_get_fd_by_id(link_id), "opening link", where), where)
        adopt(fd, ObjectKind.LINK, cls.LINK_TYPES, where, link_info)
        return cls(fd)

    def dup(self) -> Self:
        """A second handle on the link, with its own fd (the link lives while either does)."""
        return type(self)(self._fd.dup())

    def info(self) -> LinkInfo:
        return link_info(self.fd)

    @property
    def type_name(self) -> str:
        """libbpf's name of the link type, e.g. ``xdp`` or ``raw_tracepoint``."""
        return type_name(ObjectKind.LINK, self.info().type)

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the link on bpffs so it outlives this process."""
        check(lib.bpf_obj_pin(self.fd, os.fsencode(path)), "pinning link", str(path))

    def detach(self) -> None:
        """Detach now, even if pinned or shared (NotSupportedError for kinds that cannot,
        e.g. raw tracepoints: those detach when the last fd and pin are gone)."""
        check(lib.bpf_link_detach(self.fd), "detaching link")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {'closed' if self.closed else f'fd {self._fd.raw}'}>"


def attach_raw_tracepoint(program: Program, tracepoint: str) -> Link:
    """Attach a raw_tracepoint ``program`` to ``tracepoint``, e.g. ``sys_enter``."""
    raw = check(lib.bpf_raw_tracepoint_open(tracepoint.encode(), program.fd),
                "attaching raw tracepoint", tracepoint)
    return Link(FD(raw, f"raw tracepoint link {tracepoint!r}"))


class XdpMode(enum.Enum):
    """How an XDP program is attached: the kernel's choice, the driver, or generic (skb)."""

    AUTO = "auto"
    NATIVE = "native"
    GENERIC = "generic"
    OFFLOAD = "offload"
    NONE = "none"


_MODE_FLAGS = {
    XdpMode.AUTO: 0,
    XdpMode.NATIVE: lib.XDP_FLAGS_DRV_MODE,
    XdpMode.GENERIC: lib.XDP_FLAGS_SKB_MODE,
    XdpMode.OFFLOAD: lib.XDP_FLAGS_HW_MODE,
}

_ATTACHED_MODES = {
    lib.XDP_ATTACHED_NONE: XdpMode.NONE,
    lib.XDP_ATTACHED_DRV: XdpMode.NATIVE,
    lib.XDP_ATTACHED_SKB: XdpMode.GENERIC,
    lib.XDP_ATTACHED_HW: XdpMode.OFFLOAD,
}


@dataclass(frozen=True)
class XdpState:
    """What is attached to an interface: the mode and program ids per mode (0 = none)."""

    mode: XdpMode
    prog_id: int
    native_prog_id: int
    generic_prog_id: int
    offload_prog_id: int

    @property
    def attached_ids(self) -> list[int]:
        ids = {self.prog_id, self.native_prog_id, self.generic_prog_id, self.offload_prog_id}
        return sorted(i for i in ids if i)


def xdp_query(ifindex: int) -> XdpState:
    """Ask the kernel which XDP programs an interface carries (bpf_xdp_query)."""
    opts = ffi.new("struct bpf_xdp_query_opts *")
    opts.sz = ffi.sizeof("struct bpf_xdp_query_opts")
    check(lib.bpf_xdp_query(ifindex, 0, opts), "querying XDP state", f"ifindex {ifindex}")
    if opts.attach_mode == lib.XDP_ATTACHED_MULTI:
        mode = XdpMode.NATIVE if opts.drv_prog_id else XdpMode.GENERIC
    else:
        mode = _ATTACHED_MODES.get(opts.attach_mode, XdpMode.NONE)
    return XdpState(
        mode=mode,
        prog_id=opts.prog_id or opts.drv_prog_id or opts.skb_prog_id or opts.hw_prog_id,
        native_prog_id=opts.drv_prog_id,
        generic_prog_id=opts.skb_prog_id,
        offload_prog_id=opts.hw_prog_id,
    )


class _InterfaceLink(Link):
    """A link holding a program of one type on an interface: XDP's and tcx's share how a
    program is swapped in and how the link is detached."""

    PROGRAM_TYPE: ClassVar[int]
    WHAT: ClassVar[str]  # e.g. "XDP program", in messages

    @classmethod
    def _check(cls, program: Program, operation: str) -> None:
        check_type(ObjectKind.PROGRAM, program.type, cls.PROGRAM_TYPE,
                   f"program {program.name!r}", operation)

    def update(self, program: Program, expected: Program | None = None) -> None:
        """Swap in ``program`` atomically, in the link's place (only if ``expected`` is
        what runs, when given)."""
        operation = f"replacing the {self.WHAT}"
        self._check(program, operation)
        opts = ffi.new("struct bpf_link_update_opts *")
        opts.sz = ffi.sizeof("struct bpf_link_update_opts")
        if expected is not None:
            opts.flags = lib.BPF_F_REPLACE
            opts.old_prog_fd = expected.fd
        check(lib.bpf_link_update(self.fd, program.fd, opts), operation)

    def detach(self) -> None:
        """Take the program off the interface (the link stays valid but defunct until
        closed); a link already defunct is left so."""
        result = lib.bpf_link_detach(self.fd)
        if result < 0 and -result not in (errno.ENOLINK, errno.EINVAL):
            raise BpfError(-result, f"detaching the {self.WHAT}'s link")


class XdpLink(_InterfaceLink):
    """An XDP program attached to an interface through a bpf_link."""

    LINK_TYPES = frozenset({LINK_TYPE_XDP})
    PROGRAM_TYPE = PROG_TYPE_XDP
    WHAT = "XDP program"

    @classmethod
    def attach(cls, program: Program, ifindex: int, mode: XdpMode = XdpMode.AUTO) -> XdpLink:
        """Attach ``program`` to ``ifindex``; fails with EBUSY if an XDP program is there,
        with WrongObjectType before trying if ``program`` is not an XDP program."""
        cls._check(program, "attaching XDP program")
        opts = ffi.new("struct bpf_link_create_opts *")
        opts.sz = ffi.sizeof("struct bpf_link_create_opts")
        opts.flags = _MODE_FLAGS[mode]
        result = lib.bpf_link_create(program.fd, ifindex, lib.BPF_XDP, opts)
        if result < 0:
            err = -result
            where = f"ifindex {ifindex}, mode {mode.value}"
            # The program is known to be XDP: EINVAL for an explicit mode is the driver's no.
            if err in (errno.EOPNOTSUPP, ENOTSUPP) or (err == errno.EINVAL and mode != XdpMode.AUTO):
                raise NotSupportedError(err, "attaching XDP program", f"{where} not supported")
            raise error_from_errno(err, "attaching XDP program", where)
        return cls(FD(result, f"XDP link on ifindex {ifindex}"))

    @property
    def mode(self) -> XdpMode:
        """The mode in effect, as the kernel reports it for the link's interface."""
        ifindex = self.info().ifindex
        if not ifindex:
            return XdpMode.NONE
        return xdp_query(ifindex).mode



class TcDirection(enum.Enum):
    """Which tc hook (tcx, or clsact's for :class:`~pingkiller.bpf.TcFilter`): packets
    the interface receives, or sends."""

    INGRESS = "ingress"
    EGRESS = "egress"

    @property
    def attach_type(self) -> int:
        return ATTACH_TCX_INGRESS if self is TcDirection.INGRESS else ATTACH_TCX_EGRESS


class TcxLink(_InterfaceLink):
    """A tc (SCHED_CLS) program on an interface's tcx hook, through a bpf_link (Linux 6.6).

    A tcx hook runs several programs in order, each link one of them; a program that
    returns TCX_NEXT (-1) hands the packet to the next. Attaching never displaces
    another program.
    """

    LINK_TYPES = frozenset({LINK_TYPE_TCX})
    PROGRAM_TYPE = PROG_TYPE_SCHED_CLS
    WHAT = "tc program"

    @classmethod
    def attach(cls, program: Program, ifindex: int, direction: TcDirection, *,
               first: bool = False) -> TcxLink:
        """Attach ``program`` to ``ifindex``'s ``direction`` hook, after every program
        there (``first``: before every one). NotSupportedError where the kernel has no
        tcx (before 6.6); WrongObjectType before trying if ``program`` is not SCHED_CLS."""
        cls._check(program, "attaching a tc program")
        opts = ffi.new("struct bpf_link_create_opts *")
        opts.sz = ffi.sizeof("struct bpf_link_create_opts")
        opts.flags = _F_BEFORE if first else 0
        result = lib.bpf_link_create(program.fd, ifindex, direction.attach_type, opts)
        where = f"ifindex {ifindex}, {direction.value}"
        if result < 0:
            err = -result
            # A kernel without tcx does not know the attach type.
            if err == errno.EINVAL and not tcx_supported():
                raise NotSupportedError(err, "attaching a tc program",
                                        f"{where}: this kernel has no tcx (Linux 6.6+)")
            raise error_from_errno(err, "attaching a tc program", where)
        return cls(FD(result, f"tcx link on ifindex {ifindex} ({direction.value})"))

    @property
    def direction(self) -> TcDirection:
        """The hook the link is on."""
        attach_type = self.info().attach_type
        return TcDirection.INGRESS if attach_type == ATTACH_TCX_INGRESS else TcDirection.EGRESS


def tcx_query(ifindex: int, direction: TcDirection) -> list[int]:
    """The ids of the programs on ``ifindex``'s ``direction`` hook, in the order they run
    (links and, where any, programs attached without a link alike)."""
    count = 64
    while True:
        ids = ffi.new("__u32[]", count)
        opts = ffi.new("struct bpf_prog_query_opts *")
        opts.sz = ffi.sizeof("struct bpf_prog_query_opts")
        opts.prog_ids = ids
        opts.prog_cnt = count
        result = lib.bpf_prog_query_opts(ifindex, direction.attach_type, opts)
        if result < 0 and -result == errno.ENOSPC:
            count *= 4  # more programs than room: ask again with more
            continue
        check(result, "querying tcx programs", f"ifindex {ifindex}, {direction.value}")
        return [ids[i] for i in range(opts.prog_cnt)]


def tcx_supported() -> bool:
    """Whether the kernel has tcx hooks: it answers a query of loopback's ingress."""
    opts = ffi.new("struct bpf_prog_query_opts *")
    opts.sz = ffi.sizeof("struct bpf_prog_query_opts")
    return lib.bpf_prog_query_opts(1, ATTACH_TCX_INGRESS, opts) == 0


"""Attaching programs through bpf_links: XDP (explicit mode, pin, reopen, atomic update,
detach) and raw tracepoints. Every attach function lives here, above programs."""

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
from pingkiller.bpf.program import PROG_TYPE_XDP, Program

LINK_TYPE_XDP: int = lib.BPF_LINK_TYPE_XDP


@dataclass(frozen=True)
class LinkInfo:
    """Kernel information for a link; ``ifindex`` (XDP links) is 0 once its interface is
    gone, or for other kinds of link."""

    id: int
    prog_id: int
    ifindex: int
    type: int = LINK_TYPE_XDP


def link_info(raw: int) -> LinkInfo:
    """What the kernel says of the link behind the fd ``raw``."""
    ids = ffi.new("__u32[4]")
    check(lib.pk_link_info(raw, ids, ids + 1, ids + 2, ids + 3), "reading link info")
    return LinkInfo(id=ids[0], prog_id=ids[2], ifindex=ids[3], type=ids[1])


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


class XdpLink(Link):
    """An XDP program attached to an interface through a bpf_link."""

    LINK_TYPES = frozenset({LINK_TYPE_XDP})

    @classmethod
    def attach(cls, program: Program, ifindex: int, mode: XdpMode = XdpMode.AUTO) -> XdpLink:
        """Attach ``program`` to ``ifindex``; fails with EBUSY if an XDP program is there,
        with WrongObjectType before trying if ``program`` is not an XDP program."""
        _check_xdp(program, "attaching XDP program")
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

    def update(self, program: Program, expected: Program | None = None) -> None:
        """Swap in ``program`` atomically (only if ``expected`` is what runs, when given)."""
        _check_xdp(program, "replacing the XDP program")
        opts = ffi.new("struct bpf_link_update_opts *")
        opts.sz = ffi.sizeof("struct bpf_link_update_opts")
        if expected is not None:
            opts.flags = lib.BPF_F_REPLACE
            opts.old_prog_fd = expected.fd
        check(lib.bpf_link_update(self.fd, program.fd, opts), "replacing the XDP program")

    def detach(self) -> None:
        """Detach from the interface (the link stays valid but defunct until closed)."""
        result = lib.bpf_link_detach(self.fd)
        if result < 0 and -result not in (errno.ENOLINK, errno.EINVAL):
            raise BpfError(-result, "detaching XDP link")


def _check_xdp(program: Program, operation: str) -> None:
    check_type(ObjectKind.PROGRAM, program.type, PROG_TYPE_XDP, f"program {program.name!r}",
               operation)

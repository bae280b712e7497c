"""The one owner of a BPF file descriptor, and what kind of BPF object an fd holds.

Every program, map and link handle owns exactly one :class:`FD`. ``close()`` closes the
number and sets it to -1, once; after that every use raises ``BpfError(EBADF)`` instead of
passing on a number the process may already have reused for something else. ``__del__``
only closes what an owner forgot to; ``dup()`` makes a second, independent owner.

The kind of object behind an fd (map, program, link) is what the kernel named the
anonymous inode when it made the fd (``/proc/self/fd/N`` -> ``anon_inode:bpf-map``,
``anon_inode:bpf-prog``, ``anon_inode:bpf_link`` or, reopened from a pin,
``anon_inode:bpf-link``); bpftool tells them apart the same way. An unknown name falls
back to the kind-specific line of ``/proc/self/fdinfo/N`` (``map_type:``...). The
info structs cannot tell them apart: ``BPF_OBJ_GET_INFO_BY_FD`` fills whichever struct
fits the object, and a map's type 6 reads as a link's type 6.
"""

from __future__ import annotations

import enum
import errno
import fcntl
import os
from collections.abc import Callable
from typing import Protocol, Self, TypeVar

from pingkiller.bpf._ffi import ffi, lib
from pingkiller.bpf.errors import BpfError, WrongObjectType, check


class ObjectKind(enum.Enum):
    """What a BPF fd (or pin) holds."""

    MAP = "map"
    PROGRAM = "program"
    LINK = "link"
    BTF = "BTF"
    UNKNOWN = "unknown"  # /proc is not mounted: the kind cannot be told
    NOT_BPF = "not a BPF object"


# A link made now is "bpf_link", one reopened from a pin "bpf-link".
_ANON_INODES = {
    "anon_inode:bpf-map": ObjectKind.MAP,
    "anon_inode:bpf-prog": ObjectKind.PROGRAM,
    "anon_inode:bpf_link": ObjectKind.LINK,
    "anon_inode:bpf-link": ObjectKind.LINK,
    "anon_inode:btf": ObjectKind.BTF,
}
# The line of /proc/self/fdinfo/N that only each kind has.
_FDINFO_KEYS = (("link_type", ObjectKind.LINK), ("prog_type", ObjectKind.PROGRAM),
                ("map_type", ObjectKind.MAP), ("btf_id", ObjectKind.BTF))


class FD:
    """Owns one file descriptor: closes it once, and refuses to be used after that."""

    __slots__ = ("_raw", "what")

    def __init__(self, raw: int, what: str) -> None:
        if raw < 0:
            raise ValueError(f"{what}: {raw} is not a file descriptor")
        self._raw = raw
        self.what = what  # e.g. "program 'pingkiller'", for the error of a closed handle

    @property
    def raw(self) -> int:
        """The number, for one syscall now; never keep it (it may be reused after close)."""
        if self._raw < 0:
            raise BpfError(errno.EBADF, f"using {self.what}", "the handle is closed")
        return self._raw

    def fileno(self) -> int:
        return self.raw

    @property
    def closed(self) -> bool:
        return self._raw < 0

    def close(self) -> None:
        """Close the fd; closing again does nothing."""
        raw, self._raw = self._raw, -1
        if raw >= 0:
            os.close(raw)

    def dup(self) -> FD:
        """A new owner of the same kernel object (its own number, close-on-exec)."""
        return FD.copy_of(self.raw, self.what)

    @classmethod
    def copy_of(cls, raw: int, what: str) -> FD:
        """An owner of a close-on-exec duplicate of ``raw``, which stays its owner's."""
        return cls(fcntl.fcntl(raw, fcntl.F_DUPFD_CLOEXEC, 0), what)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # Only a safety net for a handle nobody closed; owners close explicitly.
        raw = getattr(self, "_raw", -1)
        if raw >= 0:
            self._raw = -1
            try:  # noqa: SIM105 (contextlib may be gone at interpreter exit)
                os.close(raw)
            except OSError:
                pass

    def __repr__(self) -> str:
        return f"<FD {self._raw if self._raw >= 0 else 'closed'} {self.what}>"


def fd_kind(raw: int) -> ObjectKind:
    """The kind of object behind the fd ``raw``, as the kernel named its inode (or, for a
    name not known here, as its /proc/self/fdinfo entry shows it)."""
    try:
        target = os.readlink(f"/proc/self/fd/{raw}")
    except FileNotFoundError:
        # /proc is there but the number is not open; without /proc nothing is known
        if os.path.isdir("/proc/self/fd"):
            raise BpfError(errno.EBADF, "reading what an fd holds", f"fd {raw}") from None
        return ObjectKind.UNKNOWN
    except OSError:
        return ObjectKind.UNKNOWN
    if target in _ANON_INODES:
        return _ANON_INODES[target]
    if not target.startswith("anon_inode:"):
        return ObjectKind.NOT_BPF
    return _fdinfo_kind(raw)


def _fdinfo_kind(raw: int) -> ObjectKind:
    try:
        with open(f"/proc/self/fdinfo/{raw}") as fdinfo:
            keys = {line.split(":", 1)[0] for line in fdinfo}
    except OSError:
        return ObjectKind.UNKNOWN
    for key, kind in _FDINFO_KEYS:
        if key in keys:
            return kind
    return ObjectKind.NOT_BPF


def type_name(kind: ObjectKind, type_id: int) -> str:
    """libbpf's name of a map, program or link type (``percpu_array``, ``xdp``...)."""
    namer = {
        ObjectKind.MAP: lib.libbpf_bpf_map_type_str,
        ObjectKind.PROGRAM: lib.libbpf_bpf_prog_type_str,
        ObjectKind.LINK: lib.libbpf_bpf_link_type_str,
    }.get(kind)
    if namer is None:
        return str(type_id)
    name = namer(type_id)
    if name != ffi.NULL:
        return str(ffi.string(name).decode())
    return _NEWER_THAN_LIBBPF.get((kind, type_id), f"type {type_id}")


# Names of types newer than the oldest libbpf the binding supports (1.1).
_NEWER_THAN_LIBBPF = {(ObjectKind.LINK, 11): "tcx"}


def object_type(raw: int, kind: ObjectKind) -> int:
    """The map, program or link type of the object behind ``raw`` (of ``kind``)."""
    if kind is ObjectKind.LINK:
        ids = ffi.new("__u32[5]")
        check(lib.pk_link_info(raw, ids, ids + 1, ids + 2, ids + 3, ids + 4), "reading link info")
        return int(ids[1])
    struct = {ObjectKind.MAP: "struct bpf_map_info", ObjectKind.PROGRAM: "struct bpf_prog_info"}
    if kind not in struct:
        raise ValueError(f"a {kind.value} has no type")
    info = ffi.new(f"{struct[kind]} *")
    size = ffi.new("__u32 *", ffi.sizeof(struct[kind]))
    check(lib.bpf_obj_get_info_by_fd(raw, info, size), f"reading {kind.value} info")
    return int(info.type)


def describe(raw: int) -> str:
    """What the fd holds, in words: ``a map (percpu_array)``, ``a link (xdp)``..."""
    kind = fd_kind(raw)
    if kind in (ObjectKind.MAP, ObjectKind.PROGRAM, ObjectKind.LINK):
        return f"a {kind.value} ({type_name(kind, object_type(raw, kind))})"
    if kind is ObjectKind.UNKNOWN:
        return "an object of unknown kind"
    return "a BTF object" if kind is ObjectKind.BTF else "not a BPF object"


class _Typed(Protocol):
    @property
    def type(self) -> int: ...


_Info = TypeVar("_Info", bound=_Typed)


def adopt(
    fd: FD, kind: ObjectKind, types: int | frozenset[int] | None, where: str,
    info_of: Callable[[int], _Info],
) -> _Info:
    """Own a fresh ``fd`` once it holds a ``kind`` of one of ``types`` (any type when
    None): returns its info, read once with ``info_of``. Otherwise ``fd`` is closed and
    :class:`WrongObjectType` names what it really holds.

    Where /proc is not mounted the kind cannot be told and only the type is checked.
    """
    try:
        actual = fd_kind(fd.raw)
        if actual is not kind and actual is not ObjectKind.UNKNOWN:
            raise WrongObjectType(where, _wanted(kind, _type_set(types)), describe(fd.raw))
        info = info_of(fd.raw)
        check_type(kind, info.type, types, where)
        return info
    except BaseException:
        fd.close()
        raise


def check_type(
    kind: ObjectKind, type_id: int, types: int | frozenset[int] | None, where: str,
    operation: str = "",
) -> None:
    """Raise :class:`WrongObjectType` unless ``type_id`` is one of ``types`` (None: any)."""
    wanted = _type_set(types)
    if wanted is not None and type_id not in wanted:
        raise WrongObjectType(where, _wanted(kind, wanted),
                              f"a {kind.value} ({type_name(kind, type_id)})", operation)


def _type_set(types: int | frozenset[int] | None) -> frozenset[int] | None:
    return frozenset({types}) if isinstance(types, int) else types


def _wanted(kind: ObjectKind, types: frozenset[int] | None) -> str:
    if not types:
        return f"a {kind.value}"
    names = " or ".join(sorted(type_name(kind, t) for t in types))
    return f"a {kind.value} ({names})"


class Handle:
    """A handle that owns one :class:`FD`: a context manager, closed once."""

    _fd: FD

    @property
    def fd(self) -> int:
        """The fd number for a call now (BpfError EBADF once closed); do not keep it."""
        return self._fd.raw

    @property
    def closed(self) -> bool:
        return self._fd.closed

    def close(self) -> None:
        """Close the handle's fd; closing again does nothing."""
        self._fd.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

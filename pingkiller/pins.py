"""Where an attachment's pins live on bpffs (the lock that serializes changes to them is
pingkiller.lock).

Layout: one directory per attachment under the root ``/sys/fs/bpf/pingkiller`` (0700),
named after its :class:`Point`: ``<ifname>`` for the XDP hook, ``<ifname>,tc-in`` and
``<ifname>,tc-out`` for the tc hooks (',' is in no interface name), each holding
``{link,program,identity,settings,counters,...}``: an interface can carry an XDP and tc
attachments at once, each with its own program, maps and counters. A directory is
written under a temporary name and renamed into place, so a reader sees a whole
attachment or none; leftovers of a killed writer are recovered by the next writer
(``recovery.recover``), never by a reader.

Readers need only read access: the kernel opens a link pin only read-write, so the
writer also pins the program and an :class:`Identity` record (the link's id and
interface), which open read-only.
"""

from __future__ import annotations

import errno
import os
import re
import struct
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from pingkiller import bpffs, trust
from pingkiller.abi import Direction, Hook
from pingkiller.bpffs import BPF_FS_MAGIC, BPFFS
from pingkiller.errors import InvalidInput, InvalidInterfaceName, PermissionDenied
from pingkiller.untrusted import quote

DEFAULT_ROOT = BPFFS / "pingkiller"
LINK_PIN = "link"
PROGRAM_PIN = "program"  # the program the link runs, for readers (and a --replace in progress)
IDENTITY_PIN = "identity"  # an Identity record in a one-entry array map
# Linux interface names: at most 15 bytes, no '/', no whitespace, not '.' or '..'.
_IFNAME = re.compile(r"[A-Za-z0-9_.@:+-]{1,15}")
# bpffs refuses names with '.', so a '.' of an interface name is stored as '~', and the
# work directories start with '=' (neither '~' nor '=' can be in a validated name).
_TEMP_PREFIX = "=tmp-"  # an attach being written
_OLD_PREFIX = "=old-"  # the previous pins during a --replace
_DEL_PREFIX = "=del-"  # a detach in progress


def root() -> Path:
    """The pin root; PINGKILLER_PIN_ROOT overrides it (it must be on bpffs)."""
    return Path(os.environ.get("PINGKILLER_PIN_ROOT", str(DEFAULT_ROOT)))


def validate_ifname(name: str) -> str:
    """Return ``name`` if it can be an interface name, else raise naming the rule broken."""
    if not name:
        raise InvalidInterfaceName("empty interface name: name one, e.g. eth0 (see `ip link`)")
    if len(name.encode(errors="surrogateescape")) > 15:  # argv that is not UTF-8 escapes
        raise InvalidInterfaceName(f"interface name {quote(name)} is longer than 15 bytes")
    if name in (".", "..") or not _IFNAME.fullmatch(name):
        raise InvalidInterfaceName(
            f"{quote(name)} is not a valid interface name (letters, digits and _ . @ : + - only)"
        )
    return name


def _encode(ifname: str) -> str:
    return validate_ifname(ifname).replace(".", "~")


def _decode(entry: str) -> str:
    return entry.replace("~", ".")


_TC_SUFFIXES = {Direction.IN: ",tc-in", Direction.OUT: ",tc-out"}


@dataclass(frozen=True, order=True)
class Point:
    """Where an attachment runs: an interface's XDP hook (which sees only what arrives),
    or its tc hook in one direction. The name is validated when the point is made."""

    ifname: str
    hook: Hook = Hook.XDP
    direction: Direction = Direction.IN

    def __post_init__(self) -> None:
        validate_ifname(self.ifname)
        if self.hook is Hook.XDP and self.direction is not Direction.IN:
            raise InvalidInput("XDP sees only packets that arrive: --direction out and both "
                               "need --hook tc")

    @property
    def entry(self) -> str:
        """The name of its pin directory."""
        suffix = _TC_SUFFIXES[self.direction] if self.hook is Hook.TC else ""
        return _encode(self.ifname) + suffix

    @classmethod
    def from_entry(cls, entry: str) -> Point | None:
        """The point a pin directory's name stands for (None: not one of ours)."""
        name, comma, suffix = entry.partition(",")
        try:
            if not comma:
                return cls(_decode(name))
            for direction, known in _TC_SUFFIXES.items():
                if known == comma + suffix:
                    return cls(_decode(name), Hook.TC, direction)
        except (InvalidInput, InvalidInterfaceName):
            pass
        return None

    @property
    def hook_text(self) -> str:
        """``xdp``, ``tc in`` or ``tc out``."""
        if self.hook is Hook.XDP:
            return "xdp"
        return f"tc {self.direction.label}"

    @property
    def label(self) -> str:
        """How messages name it: ``eth0`` for XDP (as before tc existed), ``eth0 (tc in)``."""
        return self.ifname if self.hook is Hook.XDP else f"{self.ifname} ({self.hook_text})"

    @property
    def options(self) -> str:
        """The CLI arguments that name it, e.g. ``eth0`` or ``eth0 --hook tc --direction out``."""
        if self.hook is Hook.XDP:
            return self.ifname
        return f"{self.ifname} --hook tc --direction {self.direction.label}"


def directory(point: Point) -> Path:
    """The pin directory of an attachment."""
    return root() / point.entry


@dataclass(frozen=True)
class Identity:
    """What the writer records beside the link pin: which link, interface and network
    namespace the attachment is, and which ABI and program made the pins.

    A reader that cannot open the link (link pins open only read-write) learns from it
    which link and interface the attachment is, and checks with the kernel that the
    pinned program is still the one attached there. Every verb compares ``abi_version``
    with its own before it reads a map; ``program`` (the SHA-256 of the ELF) tells
    whether the running program is the installed one.
    """

    link_id: int
    ifindex: int
    abi_version: int = 1
    netns_cookie: int = 0  # 0: not recorded (pins of ABI 1)
    program: bytes = b""  # SHA-256 of the BPF ELF; b"": not recorded (ABI 1)

    # Record version 2: version, ABI version, link id, ifindex, netns cookie, ELF SHA-256.
    FORMAT = struct.Struct("=IIIIQ32s")
    VERSION = 2
    # Record version 1 (pins of ABI 1): version, link id, ifindex, reserved.
    FORMAT_V1 = struct.Struct("=IIII")

    def encode(self) -> bytes:
        return self.FORMAT.pack(self.VERSION, self.abi_version, self.link_id, self.ifindex,
                                self.netns_cookie, self.program.ljust(32, b"\0"))

    @classmethod
    def decode(cls, raw: bytes) -> Identity:
        """The record, of either version (ValueError for anything else)."""
        if len(raw) < 4:
            raise ValueError(f"an identity record of {len(raw)} bytes")
        (version,) = struct.unpack_from("=I", raw)
        if version == 1 and len(raw) >= cls.FORMAT_V1.size:
            _, link_id, ifindex, _ = cls.FORMAT_V1.unpack_from(raw)
            return cls(link_id, ifindex)
        if version == cls.VERSION and len(raw) >= cls.FORMAT.size:
            _, abi_version, link_id, ifindex, cookie, program = cls.FORMAT.unpack_from(raw)
            return cls(link_id, ifindex, abi_version, cookie, program)
        raise ValueError(f"identity record version {version} (this pingkiller reads 1 and "
                         f"{cls.VERSION}): written by a newer pingkiller")

    @property
    def program_id_text(self) -> str:
        """The program's short identity for humans: the ELF's SHA-256, first 12 digits."""
        return self.program.hex()[:12] if self.program else "unrecorded"


def read_only_mount(path: Path | None = None) -> Path | None:
    """``path`` (default: the pin root), or its closest parent that exists (as far as
    this process may look), if it is on a read-only mount; None when it is writable."""
    where = path or root()
    while not os.path.exists(where) and where != where.parent:
        where = where.parent
    try:
        return where if os.statvfs(where).f_flag & os.ST_RDONLY else None
    except OSError:
        return None


def read_only_error(where: Path) -> PermissionDenied:
    return PermissionDenied(
        f"{where} is mounted read-only here: changing attachments needs bpffs mounted "
        "read-write (status, stats, export and exporter only read)"
    )


def ensure_root() -> Path:
    """Make sure bpffs is mounted and the pin root exists (0700); returns the root.

    What a writer trusts is checked here, before it takes the lock: the root
    (:func:`check_owned`), that it is on bpffs, and every directory directly below it
    (:func:`check_entries`). Nothing is taken over: a root or entry someone else could
    have made is refused, with a line telling the operator to look at it and remove it.

    bpffs is mounted at /sys/fs/bpf (root-only) when the root is under it and nothing is
    mounted there, but only in the host's mount namespace: elsewhere (as under `ip netns
    exec`, which gives a command a private mount namespace and a fresh /sys) the mount and
    every pin made in it would vanish when this command exits.
    """
    pin_root = root()
    if pin_root.is_relative_to(BPFFS) and str(BPFFS) not in bpffs.mount_points():
        _mount_bpffs()
    read_only = read_only_mount(pin_root)
    if read_only is not None:
        raise read_only_error(read_only)
    existed = os.path.lexists(pin_root)
    if existed:
        check_owned(pin_root)  # a symlink is refused before anything follows it
    check_on_bpffs(pin_root if existed else pin_root.parent, pin_root)
    try:  # also when it exists: every writer makes the same calls (tests inject faults by count)
        pin_root.mkdir(mode=0o700)
    except FileExistsError:
        pass  # made before, or by another writer just now: checked below like any other
    except PermissionError:
        raise PermissionDenied(
            f"cannot create {pin_root}: needs root (CAP_BPF + CAP_NET_ADMIN)"
        ) from None
    except OSError as err:
        if err.errno == errno.EROFS:
            raise read_only_error(pin_root) from None
        raise
    else:
        os.chmod(pin_root, 0o700)  # mkdir's mode is masked by the umask
    check_owned(pin_root)
    check_entries(pin_root)
    return pin_root


def _mount_bpffs() -> None:
    """Mount bpffs at /sys/fs/bpf, root-only, where the mount outlives this command."""
    namespace = bpffs.this_mount_namespace()
    if not namespace.hosts:
        raise PermissionDenied(
            f"{BPFFS} is not mounted in this mount namespace, {namespace.evidence}: pins made "
            "here would vanish when this command exits; run `nsenter --net=/run/netns/NS "
            "pingkiller ...` instead, which keeps the host's bpffs (or, in the host's mount "
            f"namespace, `mount -t bpf -o mode=0700 bpf {BPFFS}` first)"
        )
    try:
        bpffs.mount(BPFFS)
    except OSError as err:
        raise PermissionDenied(
            f"bpffs is not mounted at {BPFFS} and mounting it failed ({err.strerror}): run as "
            f"root, or `mount -t bpf -o mode=0700 bpf {BPFFS}`"
        ) from None


def check_on_bpffs(where: Path, pin_root: Path) -> None:
    """Refuse a pin root that is not on bpffs (``where``: the root, or its parent while
    the root is not made yet); pins can only live there."""
    found = bpffs.filesystem_type(where)
    if found is None or found == BPF_FS_MAGIC:
        return  # unreadable: what comes next (mkdir, pinning) reports it
    raise PermissionDenied(
        f"the pin root {pin_root} is not on bpffs ({where} is on a file system of type "
        f"{found:#x}): pins live only on bpffs; point PINGKILLER_PIN_ROOT at a directory "
        f"under a bpffs mount (e.g. {BPFFS}/NAME), or unset it"
    )


def check_owned(pin_root: Path) -> None:
    """Refuse a pin root that someone else could have made or can change.

    A writer trusts what it finds under the root (it finishes interrupted transactions
    there), so a root another user made before ours, e.g. in a world-writable
    /sys/fs/bpf, or can write into, could get our filter removed. It must be a real
    directory (not a symlink), owned by this user, writable by nobody else. Nothing
    found wrong is taken over (not even by chown/chmod: what it holds could be planted):
    the operator is told to check it and remove it.
    """
    problem = trust.untrusted_directory(pin_root.lstat())
    if problem:
        raise PermissionDenied(
            f"the pin root {pin_root} {problem}: someone else may have made it; check what it "
            f"holds, then remove it (`rm -r {pin_root}`) and run this again"
        )


def check_entries(pin_root: Path) -> None:
    """Refuse a pin root holding an entry a writer would trust but someone else made.

    Every entry directly below the root is an interface's pins or a writer's leftover
    ('=' directories) that recovery finishes; each must be a real directory owned by
    this user and writable by nobody else (one lstat per entry). Nothing is taken over.
    """
    with os.scandir(pin_root) as entries:
        for entry in entries:
            problem = trust.untrusted_directory(entry.stat(follow_symlinks=False))
            if problem:
                path = pin_root / entry.name
                raise PermissionDenied(
                    f"{path} in the pin root {problem}: someone else may have made it; check "
                    f"what it holds, then remove it (`rm -r {path}`) and run this again"
                )


def listed() -> list[Point]:
    """The attachments that have a pin directory, by interface, XDP first."""
    pin_root = root()
    if not pin_root.is_dir():
        return []
    points = (Point.from_entry(p.name) for p in pin_root.iterdir() if not p.name.startswith("="))
    return sorted(point for point in points if point is not None)


def listed_interfaces() -> list[str]:
    """The interfaces that have at least one attachment's pin directory."""
    return sorted({point.ifname for point in listed()})


def temporary(point: Point) -> Path:
    """A fresh directory to build an attachment's pins in before renaming it into place."""
    path = root() / f"{_TEMP_PREFIX}{os.getpid()}-{point.entry}"
    remove(path)
    path.mkdir(mode=0o700)
    return path


def publish(temp: Path, point: Point) -> None:
    """Move a finished temporary directory to the attachment's place, replacing what was there."""
    final = directory(point)
    if final.exists():
        old = root() / f"{_OLD_PREFIX}{os.getpid()}-{point.entry}"
        remove(old)
        final.rename(old)
        temp.rename(final)
        remove(old)
    else:
        temp.rename(final)


def retire(point: Point) -> Path:
    """Move an attachment's pins out of sight before detaching, so a crash cannot revive them."""
    doomed = root() / f"{_DEL_PREFIX}{os.getpid()}-{point.entry}"
    remove(doomed)
    directory(point).rename(doomed)
    return doomed


def remove(path: Path) -> None:
    """Remove a pin directory and everything in it (unpinning what it holds)."""
    with suppress(FileNotFoundError):
        import shutil  # only here: every verb imports this module
        shutil.rmtree(path)


LEFTOVER_KINDS = {_TEMP_PREFIX: "attach", _OLD_PREFIX: "replace", _DEL_PREFIX: "detach"}


def leftovers() -> list[tuple[Path, str, Point, int]]:
    """(path, kind, point, writer pid) of directories a writer left behind, attach first.

    ``kind`` is the operation that wrote it: "attach", "replace" or "detach".
    """
    pin_root = root()
    if not pin_root.is_dir():
        return []
    found = []
    for path in pin_root.iterdir():
        for prefix, kind in LEFTOVER_KINDS.items():
            if path.name.startswith(prefix):
                pid_text, _, entry = path.name[len(prefix) :].partition("-")
                point = Point.from_entry(entry)
                if pid_text.isdigit() and point is not None:
                    found.append((path, kind, point, int(pid_text)))
    order = list(LEFTOVER_KINDS.values())
    return sorted(found, key=lambda item: order.index(item[1]))


def secure(path: Path) -> None:
    """Pins are for root only."""
    os.chmod(path, 0o600)

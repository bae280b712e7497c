"""The two records of an attachment: its identity (pinned beside the link, for readers)
and its settings (the settings map's one entry, which the program reads).

Nothing else reads or writes either.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pingkiller import abi
from pingkiller.bpf import MAP_TYPE_ARRAY, BpfError, Map
from pingkiller.model.errors import IncompatiblePins
from pingkiller.model.policy import DEFAULT_BUCKETS, Policy
from pingkiller.store.layout import IDENTITY_PIN

_KEY = abi.u32_key(0)


@dataclass(frozen=True)
class Identity:
    """What the writer records beside the link pin: which link, interface and network
    namespace the attachment is, and which ABI and program made the pins.

    A reader that cannot open the link (link pins open only read-write) learns from it
    which link and interface the attachment is, and checks with the kernel that the
    pinned program is still the one attached there. Every verb compares ``abi_version``
    with its own before it reads a map; ``program`` (the SHA-256 of the ELF) tells
    whether the running program is the installed one. A clsact filter has no link: its
    ``link_id`` is 0.
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


UNRECORDED = Identity(0, 0)


def read_identity(directory: Path) -> Identity | None:
    """The identity record pinned in ``directory``; None when there is none (pins of ABI
    1 made before records existed, or a writer killed before it pinned one). A record
    this pingkiller cannot read raises IncompatiblePins."""
    try:
        with Map.from_pin(directory / IDENTITY_PIN, read_only=True) as record:
            raw = record[_KEY]
    except BpfError as err:
        if err.errno == errno.ENOENT:
            return None
        raise
    try:
        return Identity.decode(raw)
    except ValueError as err:
        raise IncompatiblePins(f"{directory.name}'s pins cannot be read by this pingkiller: "
                               f"{err}; use the pingkiller that made them") from None


def write_identity(directory: Path, identity: Identity) -> None:
    """Pin ``identity`` in ``directory`` (0600)."""
    with Map.create(MAP_TYPE_ARRAY, "pk_identity", 4, Identity.FORMAT.size, 1) as bpf_map:
        bpf_map[_KEY] = identity.encode()
        bpf_map.pin(directory / IDENTITY_PIN)
    (directory / IDENTITY_PIN).chmod(0o600)


def read_settings(maps: Mapping[str, Map]) -> abi.Config:
    """The settings an attachment's program runs with."""
    return abi.Config.decode(maps[abi.SETTINGS_MAP][_KEY])


def read_policy(maps: Mapping[str, Map]) -> Policy:
    """The policy an attachment runs: its settings, and the size of its buckets map."""
    buckets = maps.get(abi.BUCKETS_MAP)
    return read_settings(maps).policy(buckets.info.max_entries if buckets is not None
                                      else DEFAULT_BUCKETS)


def write_settings(maps: Mapping[str, Map], config: abi.Config) -> None:
    """Give an attachment's program these settings (one map update: atomic)."""
    maps[abi.SETTINGS_MAP][_KEY] = config.encode()


_FLAGS_AT = abi.CONFIG_LAYOUT.offsets()["flags"][0]
_FLAGS = struct.Struct("=I")


def read_flags(maps: Mapping[str, Map]) -> abi.ConfigFlag:
    """The flags word of an attachment's settings (readable whatever else the record
    holds, a record never written included)."""
    return abi.ConfigFlag(_FLAGS.unpack_from(maps[abi.SETTINGS_MAP][_KEY], _FLAGS_AT)[0])


def write_flags(maps: Mapping[str, Map], flags: abi.ConfigFlag) -> None:
    """Change only the flags word of an attachment's settings (one map update)."""
    raw = bytearray(maps[abi.SETTINGS_MAP][_KEY])
    _FLAGS.pack_into(raw, _FLAGS_AT, flags)
    maps[abi.SETTINGS_MAP][_KEY] = bytes(raw)


def copy_settings(source: Mapping[str, Map], target: Mapping[str, Map]) -> None:
    """The settings of ``source`` into ``target``, as they are (any ABI's layout)."""
    target[abi.SETTINGS_MAP][_KEY] = source[abi.SETTINGS_MAP][_KEY]

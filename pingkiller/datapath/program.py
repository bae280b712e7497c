"""The BPF object embedded in the extension (bpftool skeleton): its bytes, its identity,
and opening it."""

from __future__ import annotations

import functools

from pingkiller import abi
from pingkiller._datapath import ffi, lib
from pingkiller.bpf import Object
from pingkiller.store.records import write_settings


def elf_bytes() -> bytes:
    """The compiled BPF object, as the skeleton embeds it."""
    size = ffi.new("size_t *")
    data = lib.pingkiller_bpf__elf_bytes(size)
    return bytes(ffi.buffer(data, size[0]))


@functools.cache
def program_digest() -> bytes:
    """The SHA-256 of :func:`elf_bytes`: the installed program's identity, as recorded
    beside the pins (pingkiller.store.records.Identity) to tell an outdated attachment."""
    import hashlib  # only where a record is written or compared: ~3 ms of start-up

    return hashlib.sha256(elf_bytes()).digest()


def open_object() -> Object:
    """The pingkiller object, opened but not loaded (maps can still be resized)."""
    return Object.from_bytes(elf_bytes(), "pingkiller")


def load(config: abi.Config | None = None) -> Object:
    """Load the program and write ``config`` (defaults: pass pings, no events) to its settings."""
    obj = open_object().load()
    write_settings(obj.maps, config or abi.Config())
    return obj

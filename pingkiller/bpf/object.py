"""BPF objects: open an ELF (bytes or file), adjust maps, load, and reach programs and maps."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from typing import Any

from pingkiller.bpf._ffi import capture_libbpf_log, ffi, lib
from pingkiller.bpf.errors import VerifierError, check, error_from_errno
from pingkiller.bpf.maps import Map, map_info
from pingkiller.bpf.program import Program

_LOG_BEGIN = "-- BEGIN PROG LOAD LOG --"
_LOG_END = "-- END PROG LOAD LOG --"


def _verifier_log(lines: list[str]) -> tuple[str, str] | None:
    """(program name, verifier log) from libbpf's output of a failed load, if it holds one."""
    text = "".join(lines)
    start = text.find(_LOG_BEGIN)
    if start < 0:
        return None
    end = text.find(_LOG_END, start)
    log = text[start + len(_LOG_BEGIN) : end if end >= 0 else len(text)].strip("\n")
    before = text[:start]
    name = "?"
    marker = before.rfind("prog '")
    if marker >= 0:
        name = before[marker + 6 :].split("'", 1)[0]
    return name, log


def _why(what: str, lines: list[str]) -> str:
    """``what``, with libbpf's last word on it when it said something."""
    said = [line.strip() for line in lines if line.strip()]
    return f"{what}: {said[-1]}" if said else what


class Object:
    """A BPF object file opened with libbpf. Use as a context manager; closing frees all.

    Open it, optionally change maps (:meth:`set_max_entries`, :meth:`reuse_map`), then
    :meth:`load`; afterwards ``programs[name]`` and ``maps[name]`` are usable.
    """

    def __init__(self, handle: Any, keepalive: object = None) -> None:
        self._obj = handle
        self._keepalive = keepalive  # open_mem does not copy the ELF
        self.loaded = False
        self.programs: dict[str, Program] = {}
        self.maps: dict[str, Map] = {}

    @classmethod
    def from_bytes(cls, elf: bytes, name: str) -> Object:
        """Open an object from an ELF image in memory (e.g. a skeleton's embedded bytes)."""
        opts = ffi.new("struct bpf_object_open_opts *")
        opts.sz = ffi.sizeof("struct bpf_object_open_opts")
        object_name = ffi.new("char[]", name.encode())
        opts.object_name = object_name
        buffer = ffi.from_buffer(elf)
        with capture_libbpf_log() as lines:
            handle = lib.bpf_object__open_mem(buffer, len(elf), opts)
            err = ffi.errno
        if handle == ffi.NULL:
            raise error_from_errno(err or errno.EINVAL, "opening BPF object", _why(name, lines))
        return cls(handle, keepalive=(elf, buffer))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Object:
        """Open an object from an ELF file."""
        with capture_libbpf_log() as lines:
            handle = lib.bpf_object__open_file(os.fsencode(path), ffi.NULL)
            err = ffi.errno
        if handle == ffi.NULL:
            raise error_from_errno(err or errno.EINVAL, "opening BPF object", _why(str(path), lines))
        return cls(handle)

    @property
    def name(self) -> str:
        return str(ffi.string(lib.bpf_object__name(self._handle())).decode())

    def _handle(self) -> Any:
        if self._obj is None:
            raise ValueError("BPF object is closed")
        return self._obj

    def _map_handles(self) -> Iterator[Any]:
        handle = lib.bpf_object__next_map(self._handle(), ffi.NULL)
        while handle != ffi.NULL:
            yield handle
            handle = lib.bpf_object__next_map(self._obj, handle)

    def _program_handles(self) -> Iterator[Any]:
        handle = lib.bpf_object__next_program(self._handle(), ffi.NULL)
        while handle != ffi.NULL:
            yield handle
            handle = lib.bpf_object__next_program(self._obj, handle)

    def _map_handle(self, name: str) -> Any:
        for handle in self._map_handles():
            if ffi.string(lib.bpf_map__name(handle)).decode() == name:
                return handle
        raise KeyError(f"no map named {name!r} in object {self.name!r}")

    def map_names(self) -> list[str]:
        return [ffi.string(lib.bpf_map__name(h)).decode() for h in self._map_handles()]

    def set_max_entries(self, map_name: str, max_entries: int) -> None:
        """Change a map's capacity before load."""
        check(
            lib.bpf_map__set_max_entries(self._map_handle(map_name), max_entries),
            f"resizing map {map_name}",
        )

    def reuse_map(self, map_name: str, existing: Map) -> None:
        """Make the object use an existing map (e.g. a pinned one) instead of creating it."""
        check(
            lib.bpf_map__reuse_fd(self._map_handle(map_name), existing.fd),
            f"reusing map {map_name}",
        )

    def load(self) -> Object:
        """Create the maps and load the programs into the kernel."""
        with capture_libbpf_log() as lines:
            result = lib.bpf_object__load(self._handle())
        if result < 0:
            found = _verifier_log(lines)
            if found is not None:
                raise VerifierError(-result, found[0], found[1])
            detail = lines[-1].strip() if lines else ""
            raise error_from_errno(-result, f"loading BPF object {self.name!r}", detail)
        self.loaded = True
        for handle in self._program_handles():
            name = ffi.string(lib.bpf_program__name(handle)).decode()
            self.programs[name] = Program(lib.bpf_program__fd(handle), name, owns_fd=False, owner=self)
        for handle in self._map_handles():
            fd = lib.bpf_map__fd(handle)
            info = map_info(fd)
            self.maps[info.name] = Map(fd, info, owns_fd=False, owner=self)
        return self

    def close(self) -> None:
        """Free the object, its programs and maps (pins and links stay)."""
        if self._obj is not None:
            lib.bpf_object__close(self._obj)
            self._obj = None
        self.programs.clear()
        self.maps.clear()

    def __enter__(self) -> Object:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_obj", None) is not None:
            lib.bpf_object__close(self._obj)

    def __repr__(self) -> str:
        state = "loaded" if self.loaded else "open"
        return f"<Object {self.name if self._obj is not None else '(closed)'} {state}>"


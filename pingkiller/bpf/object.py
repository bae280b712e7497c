"""BPF objects: open an ELF (bytes or file), adjust maps, load, and reach programs and maps."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

from pingkiller.bpf._ffi import capture_libbpf_log, ffi, lib
from pingkiller.bpf.errors import VerifierError, check, error_from_errno
from pingkiller.bpf.fd import FD
from pingkiller.bpf.maps import Map, map_info
from pingkiller.bpf.program import Program

_log = logging.getLogger("pingkiller.bpf")

# The verifier log buffer each program gets, and how far it may grow on ENOSPC. The
# kernel refuses buffers under 128 bytes; on kernels since 6.4 a full buffer keeps the
# end of the log (where the reason is), on older ones the beginning.
LOG_SIZE = 64 * 1024
LOG_LIMIT = 16 * 1024 * 1024
_LOG_MIN = 128
_LOG_GROWTH = 4


def _why(what: str, lines: list[str]) -> str:
    """``what``, with libbpf's last word on it when it said something."""
    said = [line.strip() for line in lines if line.strip()]
    return f"{what}: {said[-1]}" if said else what


class Object:
    """A BPF object file opened with libbpf. Use as a context manager; closing frees all.

    Open it, optionally change maps (:meth:`set_max_entries`, :meth:`reuse_map`), then
    :meth:`load`; afterwards ``programs[name]`` and ``maps[name]`` are usable until the
    object is closed, which closes them too (``dup()`` one to keep it longer).
    """

    def __init__(self, handle: Any, keepalive: object = None,
                 reopen: Callable[[], Any] | None = None) -> None:
        self._obj = handle
        self._keepalive = keepalive  # open_mem does not copy the ELF
        self._reopen = reopen  # a fresh handle on the same ELF, to load again
        self._setup: list[Callable[[Any], None]] = []  # what to redo on a fresh handle
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

        def open_mem() -> Any:
            with capture_libbpf_log() as lines:
                handle = lib.bpf_object__open_mem(buffer, len(elf), opts)
                err = ffi.errno
            if handle == ffi.NULL:
                raise error_from_errno(err or errno.EINVAL, "opening BPF object",
                                       _why(name, lines))
            return handle

        return cls(open_mem(), keepalive=(elf, buffer, opts, object_name), reopen=open_mem)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Object:
        """Open an object from an ELF file."""
        encoded = os.fsencode(path)

        def open_file() -> Any:
            with capture_libbpf_log() as lines:
                handle = lib.bpf_object__open_file(encoded, ffi.NULL)
                err = ffi.errno
            if handle == ffi.NULL:
                raise error_from_errno(err or errno.EINVAL, "opening BPF object",
                                       _why(str(path), lines))
            return handle

        return cls(open_file(), reopen=open_file)

    @property
    def name(self) -> str:
        return str(ffi.string(lib.bpf_object__name(self._handle())).decode())

    def _handle(self) -> Any:
        if self._obj is None:
            raise error_from_errno(errno.EBADF, "using BPF object", "the object is closed")
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

    def map_names(self) -> list[str]:
        return [ffi.string(lib.bpf_map__name(h)).decode() for h in self._map_handles()]

    def program_names(self) -> list[str]:
        return [ffi.string(lib.bpf_program__name(h)).decode() for h in self._program_handles()]

    def _apply(self, step: Callable[[Any], None]) -> None:
        """Do a before-load change now, and again on a fresh handle if load retries."""
        step(self._handle())
        self._setup.append(step)

    def set_max_entries(self, map_name: str, max_entries: int) -> None:
        """Change a map's capacity before load."""
        def resize(handle: Any) -> None:
            check(lib.bpf_map__set_max_entries(self._map_handle_of(handle, map_name),
                                               max_entries), f"resizing map {map_name}")
        self._apply(resize)

    def load_only(self, *program_names: str) -> None:
        """Load only these programs (the others' autoload is switched off); their maps
        are made all the same. KeyError for a name the object does not have."""
        known = set(self.program_names())
        unknown = sorted(set(program_names) - known)
        if unknown:
            raise KeyError(f"no program named {unknown[0]!r} in object {self.name!r}")

        def choose(handle: Any) -> None:
            program = lib.bpf_object__next_program(handle, ffi.NULL)
            while program != ffi.NULL:
                name = ffi.string(lib.bpf_program__name(program)).decode()
                check(lib.bpf_program__set_autoload(program, name in program_names),
                      "choosing the programs to load", name)
                program = lib.bpf_object__next_program(handle, program)
        self._apply(choose)

    def reuse_map(self, map_name: str, existing: Map) -> None:
        """Make the object use an existing map (e.g. a pinned one) instead of creating it."""
        def reuse(handle: Any) -> None:
            check(lib.bpf_map__reuse_fd(self._map_handle_of(handle, map_name), existing.fd),
                  f"reusing map {map_name}")
        self._apply(reuse)

    def _map_handle_of(self, handle: Any, name: str) -> Any:
        bpf_map = lib.bpf_object__next_map(handle, ffi.NULL)
        while bpf_map != ffi.NULL:
            if ffi.string(lib.bpf_map__name(bpf_map)).decode() == name:
                return bpf_map
            bpf_map = lib.bpf_object__next_map(handle, bpf_map)
        raise KeyError(f"no map named {name!r} in object {self.name!r}")

    def load(self, *, log_size: int = LOG_SIZE, log_limit: int = LOG_LIMIT) -> Object:
        """Create the maps and load the programs into the kernel.

        Each program gets a verifier log buffer of ``log_size`` bytes, owned here; when
        the kernel needs more (ENOSPC) the object is opened again and loaded with a
        buffer four times larger, up to ``log_limit``. A rejected program raises
        :class:`VerifierError` with its log (``truncated`` if ``log_limit`` was not
        enough).
        """
        if log_limit < _LOG_MIN:
            raise ValueError(f"log_limit must be at least {_LOG_MIN} bytes (the kernel's minimum)")
        size = max(_LOG_MIN, min(log_size, log_limit))
        while True:
            buffers = self._give_log_buffers(size)
            with capture_libbpf_log() as lines:
                result = lib.bpf_object__load(self._handle())
            if result >= 0:
                break
            err = -result
            failed = next(((name, buf) for name, buf in buffers.items() if buf[0] != b"\0"), None)
            if failed is None:
                raise error_from_errno(err, f"loading BPF object {self.name!r}",
                                       lines[-1].strip() if lines else "")
            if err == errno.ENOSPC and size < log_limit and self._reopen is not None:
                size = min(size * _LOG_GROWTH, log_limit)
                _log.debug("verifier log of %r is over %d bytes: loading again with %d",
                           failed[0], size // _LOG_GROWTH, size)
                self._fresh_handle()
                continue
            log = ffi.string(failed[1]).decode(errors="replace")
            _log.debug("verifier log of program %r:\n%s", failed[0], log)
            raise VerifierError(err, failed[0], log, truncated=err == errno.ENOSPC)
        self.loaded = True
        for handle in self._program_handles():
            name = ffi.string(lib.bpf_program__name(handle)).decode()
            borrowed = lib.bpf_program__fd(handle)
            if borrowed < 0:
                continue  # not loaded (autoload off)
            self.programs[name] = Program(FD.copy_of(borrowed, f"program {name!r}"), name,
                                          lib.bpf_program__type(handle))
        for handle in self._map_handles():
            fd = FD.copy_of(lib.bpf_map__fd(handle), "map")  # libbpf keeps its own
            info = map_info(fd.raw)
            fd.what = f"map {info.name!r}"
            self.maps[info.name] = Map(fd, info)
        return self

    def _give_log_buffers(self, size: int) -> dict[str, Any]:
        """A zeroed ``size``-byte log buffer per program, set on it (kept alive by the
        returned dict until the load is over)."""
        buffers = {}
        for handle in self._program_handles():
            name = ffi.string(lib.bpf_program__name(handle)).decode()
            buffers[name] = ffi.new("char[]", size)
            check(lib.bpf_program__set_log_buf(handle, buffers[name], size),
                  "setting the verifier log buffer", name)
        return buffers

    def _fresh_handle(self) -> None:
        """Replace a handle whose load failed (libbpf loads once) by a new one, set up
        as the old one was."""
        assert self._reopen is not None
        handle = self._reopen()
        lib.bpf_object__close(self._obj)
        self._obj = handle
        for step in self._setup:
            step(handle)

    def close(self) -> None:
        """Free the object and close every program and map it handed out (pins, links
        and ``dup()``-ed handles stay)."""
        for handle in (*self.programs.values(), *self.maps.values()):
            handle.close()
        self.programs.clear()
        self.maps.clear()
        if self._obj is not None:
            lib.bpf_object__close(self._obj)
            self._obj = None

    def __enter__(self) -> Object:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A safety net: the handles handed out own their fds and close on their own.
        if getattr(self, "_obj", None) is not None:
            lib.bpf_object__close(self._obj)

    def __repr__(self) -> str:
        state = "loaded" if self.loaded else "open"
        return f"<Object {self.name if self._obj is not None else '(closed)'} {state}>"

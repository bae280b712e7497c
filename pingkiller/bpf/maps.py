"""BPF maps as Python mappings over bytes, with per-CPU values and batch operations."""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Iterator, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from pingkiller.bpf._ffi import ffi, lib
from pingkiller.bpf.errors import ENOTSUPP, BpfError, check, error_from_errno
from pingkiller.bpf.fd import FD, Handle, ObjectKind, adopt, type_name
from pingkiller.bpf.pin import open_pinned

PER_CPU_TYPES = frozenset(
    {
        lib.BPF_MAP_TYPE_PERCPU_HASH,
        lib.BPF_MAP_TYPE_PERCPU_ARRAY,
        lib.BPF_MAP_TYPE_LRU_PERCPU_HASH,
        lib.BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE,
    }
)
# Maps whose keys cannot be deleted; "deleting" is not what they do.
ARRAY_TYPES = frozenset({lib.BPF_MAP_TYPE_ARRAY, lib.BPF_MAP_TYPE_PERCPU_ARRAY})
MAP_TYPE_ARRAY: int = lib.BPF_MAP_TYPE_ARRAY  # for Map.create

UPDATE_ANY = lib.BPF_ANY
UPDATE_NOEXIST = lib.BPF_NOEXIST
UPDATE_EXIST = lib.BPF_EXIST

_BATCH_UNSUPPORTED = {ENOTSUPP, errno.EOPNOTSUPP, errno.EINVAL}
_COUNT_CHUNK = 4096  # elements per batch when counting (larger batches measured no faster)


def possible_cpus() -> int:
    """Number of possible CPUs: the number of values a per-CPU map holds per key."""
    return check(lib.libbpf_num_possible_cpus(), "counting possible CPUs")


@dataclass(frozen=True)
class MapInfo:
    """What the kernel says about a map."""

    id: int
    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int


def map_info(fd: int) -> MapInfo:
    """Kernel information for the map behind ``fd``."""
    info = ffi.new("struct bpf_map_info *")
    size = ffi.new("__u32 *", ffi.sizeof("struct bpf_map_info"))
    check(lib.bpf_obj_get_info_by_fd(fd, info, size), "reading map info")
    return MapInfo(
        id=info.id,
        name=ffi.string(info.name).decode(),
        type=info.type,
        key_size=info.key_size,
        value_size=info.value_size,
        max_entries=info.max_entries,
        flags=info.map_flags,
    )


class BatchError(BpfError):
    """A batch operation failed part way; ``completed`` elements were processed."""

    def __init__(self, err: int, operation: str, completed: int) -> None:
        self.completed = completed
        super().__init__(err, operation, f"{completed} elements done before the failure")


def _join(items: bytes | Sequence[bytes], size: int, what: str) -> tuple[bytes, int]:
    blob = items if isinstance(items, bytes | bytearray) else b"".join(items)
    if size == 0 or len(blob) % size:
        raise ValueError(f"{what}: {len(blob)} bytes is not a whole number of {size}-byte items")
    return bytes(blob), len(blob) // size


class Map(Handle, MutableMapping[bytes, bytes]):
    """A BPF map: keys and values are bytes of the map's key and value sizes.

    For per-CPU maps a value is the concatenation of one value per possible CPU,
    each padded to 8 bytes; :meth:`per_cpu` splits it and :meth:`sum` adds it up.
    The map owns its fd; a map an :class:`~pingkiller.bpf.Object` hands out is closed
    with the object, :meth:`dup` gives one that outlives it.
    """

    def __init__(self, fd: FD, info: MapInfo) -> None:
        self._fd = fd
        self.info = info
        self.per_cpu_type = info.type in PER_CPU_TYPES
        self.cpus = possible_cpus() if self.per_cpu_type else 1
        self.value_stride = (info.value_size + 7) & ~7 if self.per_cpu_type else info.value_size
        self.full_value_size = self.value_stride * self.cpus

    @classmethod
    def from_fd(cls, fd: int, *, owns_fd: bool = True) -> Map:
        """Wrap a map file descriptor. With ``owns_fd`` the map takes it over (and closes
        it if it is not a map); without, the map owns a duplicate and ``fd`` stays the
        caller's."""
        owned = FD(fd, f"map fd {fd}") if owns_fd else FD.copy_of(fd, f"map fd {fd}")
        return cls._adopt(owned, None, f"fd {fd}")

    @classmethod
    def _adopt(cls, fd: FD, map_type: int | None, where: str) -> Map:
        """Own a fresh fd once it is known to hold a map; it is closed otherwise."""
        info = adopt(fd, ObjectKind.MAP, map_type, where, map_info)
        fd.what = f"map {info.name!r}"
        return cls(fd, info)

    @classmethod
    def from_pin(
        cls, path: str | os.PathLike[str], *, read_only: bool = False,
        map_type: int | None = None,
    ) -> Map:
        """Open a map pinned on bpffs; ``read_only`` asks only for read access (updates
        through the handle then fail with EPERM). A pin of anything but a map (of
        ``map_type``, when given) raises WrongObjectType."""
        fd = open_pinned(path, "map", read_only=read_only)
        return cls._adopt(fd, map_type, os.fspath(path))

    @classmethod
    def create(
        cls, map_type: int, name: str, key_size: int, value_size: int, max_entries: int
    ) -> Map:
        """Create a map from user space (bpf_map_create), e.g. a record to pin."""
        raw = check(lib.bpf_map_create(map_type, name.encode(), key_size, value_size,
                                       max_entries, ffi.NULL), "creating map", name)
        fd = FD(raw, f"map {name!r}")
        try:
            return cls(fd, map_info(raw))  # made just now: no kind or type to check
        except BaseException:
            fd.close()
            raise

    @classmethod
    def from_id(cls, map_id: int, *, map_type: int | None = None) -> Map:
        """Open a loaded map by its kernel id (WrongObjectType unless of ``map_type``,
        when given)."""
        raw = check(lib.bpf_map_get_fd_by_id(map_id), "opening map", f"id {map_id}")
        return cls._adopt(FD(raw, f"map id {map_id}"), map_type, f"map id {map_id}")

    def dup(self) -> Map:
        """A second handle on the map, with its own fd (e.g. to outlive its object)."""
        return type(self)(self._fd.dup(), self.info)

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def type_name(self) -> str:
        """libbpf's name of the map type, e.g. ``percpu_array``."""
        return type_name(ObjectKind.MAP, self.info.type)

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the map at ``path`` on bpffs."""
        check(lib.bpf_obj_pin(self.fd, os.fsencode(path)), "pinning map", str(path))

    def _key(self, key: bytes) -> Any:
        if len(key) != self.info.key_size:
            raise ValueError(f"map {self.name}: key is {len(key)} bytes, expected {self.info.key_size}")
        return ffi.from_buffer(key)

    # MutableMapping over bytes

    def get_raw(self, key: bytes) -> bytes | None:
        """The value for ``key``, or None when there is none."""
        value = ffi.new("char[]", self.full_value_size)
        result = lib.bpf_map_lookup_elem(self.fd, self._key(key), value)
        if result == -errno.ENOENT:
            return None
        check(result, f"looking up a key in map {self.name}")
        return bytes(ffi.buffer(value))

    def __getitem__(self, key: bytes) -> bytes:
        value = self.get_raw(key)
        if value is None:
            raise KeyError(key)
        return value

    def put(self, key: bytes, value: bytes, flags: int = UPDATE_ANY) -> None:
        """Insert or replace one element (``flags``: UPDATE_ANY/NOEXIST/EXIST)."""
        if len(value) != self.full_value_size:
            raise ValueError(
                f"map {self.name}: value is {len(value)} bytes, expected {self.full_value_size}"
            )
        check(
            lib.bpf_map_update_elem(self.fd, self._key(key), ffi.from_buffer(value), flags),
            f"updating map {self.name}",
        )

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.put(key, value)

    def __delitem__(self, key: bytes) -> None:
        result = lib.bpf_map_delete_elem(self.fd, self._key(key))
        if result == -errno.ENOENT:
            raise KeyError(key)
        check(result, f"deleting from map {self.name}")

    def discard(self, key: bytes) -> bool:
        """Delete ``key`` if present; True when it was."""
        result = lib.bpf_map_delete_elem(self.fd, self._key(key))
        if result == -errno.ENOENT:
            return False
        check(result, f"deleting from map {self.name}")
        return True

    def keys_iter(self) -> Iterator[bytes]:
        """Iterate over keys with BPF_MAP_GET_NEXT_KEY (safe against concurrent deletes)."""
        key = ffi.new("char[]", self.info.key_size)
        next_key = ffi.new("char[]", self.info.key_size)
        result = lib.bpf_map_get_next_key(self.fd, ffi.NULL, next_key)
        while result == 0:
            yield bytes(ffi.buffer(next_key))
            ffi.memmove(key, next_key, self.info.key_size)
            result = lib.bpf_map_get_next_key(self.fd, key, next_key)
        if result != -errno.ENOENT:
            check(result, f"iterating map {self.name}")

    def __iter__(self) -> Iterator[bytes]:
        return self.keys_iter()

    def __len__(self) -> int:
        """How many keys the map holds: an array's size, or the keys counted.

        Counted with batch lookups, 4096 elements a syscall (the kernel tells user space
        no element count): for 10^6 entries of a hash map that is ~0.35 s, five times
        less than a keys-only BPF_MAP_GET_NEXT_KEY walk (one syscall per key, ~1.9 s),
        though values are copied too (and dropped). Memory: one batch. Maps without
        batch lookup are counted by the key walk.
        """
        if self.info.type in ARRAY_TYPES:
            self._fd.raw  # noqa: B018 (a closed map has no length either)
            return self.info.max_entries
        return sum(count for _, _, count in self._batches(_COUNT_CHUNK, keys_only=True))

    def is_empty(self) -> bool:
        """True when the map holds no key (one syscall, whatever its size)."""
        next_key = ffi.new("char[]", self.info.key_size)
        result = lib.bpf_map_get_next_key(self.fd, ffi.NULL, next_key)
        if result == -errno.ENOENT:
            return True
        check(result, f"iterating map {self.name}")
        return False

    # Per-CPU values

    def per_cpu(self, key: bytes) -> list[bytes]:
        """One value per possible CPU (a one-item list for ordinary maps)."""
        return self.split_per_cpu(self[key])

    def split_per_cpu(self, raw: bytes) -> list[bytes]:
        """A full value (as read by lookup or a batch) cut into one value per CPU."""
        size, stride = self.info.value_size, self.value_stride
        return [raw[i * stride : i * stride + size] for i in range(self.cpus)]

    def sum(self, key: bytes, fmt: str) -> tuple[int, ...]:
        """Field-wise sum over CPUs of a value made only of integers (``struct`` format)."""
        layout = struct.Struct(fmt)
        totals = [0] * len(layout.unpack(bytes(layout.size)))
        for value in self.per_cpu(key):
            for i, field in enumerate(layout.unpack(value[: layout.size])):
                totals[i] += field
        return tuple(totals)

    # Batch operations

    def _batch_opts(self, elem_flags: int = 0) -> Any:
        opts = ffi.new("struct bpf_map_batch_opts *")
        opts.sz = ffi.sizeof("struct bpf_map_batch_opts")
        opts.elem_flags = elem_flags
        return opts

    def update_batch(
        self, keys: bytes | Sequence[bytes], values: bytes | Sequence[bytes], flags: int = UPDATE_ANY
    ) -> int:
        """Update many elements in one syscall; keys/values are sequences or packed bytes.

        Returns how many were written. On failure raises :class:`BatchError` whose
        ``completed`` says how many were written before it. Maps whose kernel has no
        batch support fall back to one update per element.
        """
        key_blob, count = _join(keys, self.info.key_size, "keys")
        value_blob, value_count = _join(values, self.full_value_size, "values")
        if count != value_count:
            raise ValueError(f"{count} keys but {value_count} values")
        if count == 0:
            return 0
        done = ffi.new("__u32 *", count)
        result = lib.bpf_map_update_batch(
            self.fd, ffi.from_buffer(key_blob), ffi.from_buffer(value_blob), done,
            self._batch_opts(flags),
        )
        if result == 0:
            return count
        if -result in _BATCH_UNSUPPORTED and done[0] == 0:
            return self._update_one_by_one(key_blob, value_blob, count, flags)
        raise BatchError(-result, f"batch update of map {self.name}", done[0])

    def _update_one_by_one(self, key_blob: bytes, value_blob: bytes, count: int, flags: int) -> int:
        ksize, vsize = self.info.key_size, self.full_value_size
        keys, values = ffi.from_buffer(key_blob), ffi.from_buffer(value_blob)
        for i in range(count):
            result = lib.bpf_map_update_elem(self.fd, keys + i * ksize, values + i * vsize, flags)
            if result < 0:
                raise BatchError(-result, f"update of map {self.name}", i)
        return count

    def delete_batch(self, keys: bytes | Sequence[bytes]) -> int:
        """Delete many keys in one syscall (one by one where unsupported); returns the count.

        A key that is not present stops the batch with ENOENT (BatchError.completed tells
        how far it got).
        """
        key_blob, count = _join(keys, self.info.key_size, "keys")
        if count == 0:
            return 0
        done = ffi.new("__u32 *", count)
        result = lib.bpf_map_delete_batch(
            self.fd, ffi.from_buffer(key_blob), done, self._batch_opts()
        )
        if result == 0:
            return count
        if -result in _BATCH_UNSUPPORTED and done[0] == 0:
            ksize = self.info.key_size
            key_ptr = ffi.from_buffer(key_blob)
            for i in range(count):
                single = lib.bpf_map_delete_elem(self.fd, key_ptr + i * ksize)
                if single < 0:
                    raise BatchError(-single, f"delete from map {self.name}", i)
            return count
        raise BatchError(-result, f"batch delete from map {self.name}", done[0])

    def items_batch(self, chunk: int = 4096) -> Iterator[tuple[bytes, bytes]]:
        """All (key, value) pairs, read ``chunk`` at a time with BPF_MAP_LOOKUP_BATCH.

        Falls back to key iteration where the map type has no batch lookup.
        """
        ksize, vsize = self.info.key_size, self.full_value_size
        for keys, values, count in self._batches(chunk):
            for i in range(count):
                yield keys[i * ksize : (i + 1) * ksize], values[i * vsize : (i + 1) * vsize]

    def lookup_batches(self, chunk: int = 4096) -> Iterator[tuple[bytes, bytes, int]]:
        """Every element, ``chunk`` at a time: (packed keys, packed values, count) per
        BPF_MAP_LOOKUP_BATCH call, for callers that decode a whole batch at once (e.g.
        ``struct.iter_unpack``) and hold no more than one batch. Maps without batch
        lookup are read key by key and handed out in batches all the same.

        The kernel returns a hash map's elements bucket by bucket: a map of at most
        ``chunk`` elements comes in one batch; the order is the kernel's.
        """
        return self._batches(chunk)

    def _batches(self, chunk: int, *, keys_only: bool = False) -> Iterator[tuple[bytes, bytes, int]]:
        """(packed keys, packed values, count) for up to ``chunk`` elements at a time
        (``keys_only``: a map without batch lookup is walked by key alone, and the values
        handed out are empty)."""
        ksize, vsize = self.info.key_size, self.full_value_size
        keys = ffi.new("char[]", ksize * chunk)
        values = ffi.new("char[]", vsize * chunk)
        # The batch cursor is opaque to user space and at least a key wide.
        in_batch = ffi.new("char[]", max(ksize, 8))
        out_batch = ffi.new("char[]", max(ksize, 8))
        first = True
        while True:
            count = ffi.new("__u32 *", chunk)
            result = lib.bpf_map_lookup_batch(
                self.fd, ffi.NULL if first else in_batch, out_batch, keys, values, count,
                self._batch_opts(),
            )
            if result < 0 and -result in _BATCH_UNSUPPORTED and first:
                yield from self._batches_one_by_one(chunk, keys_only=keys_only)
                return
            if result < 0 and result != -errno.ENOENT:
                raise error_from_errno(-result, f"batch lookup of map {self.name}")
            if count[0]:
                yield (
                    bytes(ffi.buffer(keys, ksize * count[0])),
                    bytes(ffi.buffer(values, vsize * count[0])),
                    count[0],
                )
            if result == -errno.ENOENT:
                return
            ffi.memmove(in_batch, out_batch, ffi.sizeof(in_batch))
            first = False

    def _batches_one_by_one(self, chunk: int, *, keys_only: bool) -> Iterator[tuple[bytes, bytes, int]]:
        """What _batches yields, for maps without batch lookup: a key walk (and a lookup
        per key unless ``keys_only``), grouped ``chunk`` at a time."""
        keys: list[bytes] = []
        values: list[bytes] = []
        for key in self.keys_iter():
            if not keys_only:
                value = self.get_raw(key)
                if value is None:
                    continue  # deleted meanwhile
                values.append(value)
            keys.append(key)
            if len(keys) == chunk:
                yield b"".join(keys), b"".join(values), len(keys)
                keys, values = [], []
        if keys:
            yield b"".join(keys), b"".join(values), len(keys)

    def clear(self) -> None:
        """Remove every key (arrays cannot be emptied: their values are zeroed)."""
        if self.info.type in ARRAY_TYPES:
            zero = bytes(self.full_value_size)
            for key in list(self.keys_iter()):
                self.put(key, zero)
            return
        keys = list(self.keys_iter())
        while keys:
            try:
                self.delete_batch(keys)
            except BatchError as err:
                if err.errno != errno.ENOENT:
                    raise
                # Someone else deleted a key meanwhile: retry with what is left.
            keys = list(self.keys_iter())

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"id={self.info.id}"
        return f"<Map {self.name!r} {state} {self.type_name}>"


"""The rates of limit rules: the ``limits`` array, where a limit rule names its rate by
index (its class), and the ``buckets`` of each class.

Equal limits share a class; index 0 is never used (a bucket of class 0 is the default
action's). A class is written before any rule names it, and a class given out deletes
any bucket left of its index first, so it starts with no debt of a rate it had before.
Classes no rule names any more are collected when the table is full.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from pingkiller import abi
from pingkiller.bpf import Map
from pingkiller.model.errors import RuleTableFull
from pingkiller.model.limits import Limit

_NO_LIMIT = abi.LIMIT.pack(0, 0, 0, 0)


def encode(limit: Limit) -> bytes:
    """A ``struct pk_limit`` of the limits map."""
    return abi.LIMIT.pack(*abi.encode_limit(limit))


def decode(raw: bytes) -> Limit | None:
    return abi.decode_limit(*abi.LIMIT.unpack_from(raw))


class LimitTable:
    """The limits map of one attachment (and, to collect classes, its buckets)."""

    def __init__(self, limits: Map, buckets: Map | None = None) -> None:
        self.limits = limits
        self.buckets = buckets

    def classes(self) -> dict[int, Limit]:
        """Every class written, with its limit (one batch read of the array)."""
        found = {}
        for key, raw in self.limits.items_batch(chunk=abi.MAX_LIMITS):
            limit = decode(raw)
            if limit is not None:
                found[abi.U32_KEY.unpack(key)[0]] = limit
        return found

    def index_of(self, limit: Limit, in_use: Callable[[], Iterable[int]], *,
                 undo: list[Callable[[], None]] | None = None) -> int:
        """The class of ``limit``: an equal one, else a new one, written now (``undo``:
        a call that takes a new one back is appended). ``in_use`` tells the classes the
        rules name, should the table need collecting."""
        classes = self.classes()
        for index, known in classes.items():
            if known == limit:
                return index
        free = self._free(classes)
        if free is None:
            self.collect(set(in_use()), undo=undo)
            free = self._free(self.classes())
        if free is None:
            raise RuleTableFull(f"at most {abi.MAX_LIMITS - 1} different rates fit in limit "
                                "rules; nothing was changed (give rules the same rate)")
        self.drop_buckets({free})
        key = abi.u32_key(free)
        self.limits[key] = encode(limit)
        if undo is not None:
            undo.append(lambda: self.limits.put(key, _NO_LIMIT))
        return free

    @staticmethod
    def _free(classes: Mapping[int, Limit]) -> int | None:
        return next((index for index in range(1, abi.MAX_LIMITS) if index not in classes), None)

    def collect(self, referenced: set[int], *,
                undo: list[Callable[[], None]] | None = None) -> int:
        """Free every class no rule names; returns how many. With ``undo``, a call that
        writes them back is appended (a change undone may name them again)."""
        unused = {index: limit for index, limit in self.classes().items()
                  if index not in referenced}
        for index in unused:
            self.limits[abi.u32_key(index)] = _NO_LIMIT
        if undo is not None:
            def put_back() -> None:
                for index, limit in unused.items():
                    self.limits[abi.u32_key(index)] = encode(limit)
            undo.append(put_back)
        return len(unused)

    def drop_buckets(self, classes: set[int]) -> None:
        """Delete every bucket of ``classes`` (a walk of the buckets map)."""
        if self.buckets is None or not classes:
            return
        stale = [key for key, _ in self.buckets.items_batch()
                 if abi.BUCKET_KEY.unpack_from(key)[0] in classes]
        for key in stale:
            self.buckets.discard(key)

    def copy_from(self, old: Map) -> None:
        """Every class of the limits map ``old`` into this one (empty), at its index."""
        for key, raw in old.items_batch(chunk=abi.MAX_LIMITS):
            if raw != _NO_LIMIT:
                self.limits[key] = raw

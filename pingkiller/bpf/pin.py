"""Reopening what is pinned on bpffs, asking the kernel for no more access than needed.

``bpf_obj_get`` asks for read and write permission on the pin. With ``read_only``
(BPF_F_RDONLY) it asks only for read permission, so a reader also works where the
pin is not writable (a read-only bpffs, a pin only readable by the caller); a map
then comes back as a read-only fd: lookups work, updates fail with EPERM. Link pins
open only read-write: the kernel refuses BPF_F_RDONLY for them with EINVAL.

What a pin holds is checked by the caller (:func:`pingkiller.bpf.fd.adopt`): a pin is
only a name, and any kind of object can be pinned under any name.
"""

from __future__ import annotations

import os

from pingkiller.bpf._ffi import ffi, lib
from pingkiller.bpf.errors import check
from pingkiller.bpf.fd import FD


def open_pinned(path: str | os.PathLike[str], what: str, *, read_only: bool = False) -> FD:
    """A new fd for the object pinned at ``path`` (read-only if asked); ``what`` is the
    kind asked for, for messages (``map``, ``program``, ``link``)."""
    opts = ffi.new("struct bpf_obj_get_opts *")
    opts.sz = ffi.sizeof("struct bpf_obj_get_opts")
    opts.file_flags = lib.BPF_F_RDONLY if read_only else 0
    raw = check(lib.bpf_obj_get_opts(os.fsencode(path), opts), f"opening pinned {what}",
                str(path))
    return FD(raw, f"{what} pinned at {os.fspath(path)}")

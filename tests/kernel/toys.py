"""Small BPF programs the tests compile themselves (another tool's programs, as far as
pingkiller is concerned): built with clang from the repository's headers, loaded twice
so two copies can run on one hook with counters apart."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pingkiller.bpf import Object

ROOT = Path(__file__).resolve().parents[2]
# What every toy starts with: the license and its ``seen`` counter (see :func:`seen`).
PREAMBLE = r"""
#include "uapi.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} seen SEC(".maps");
"""


def compile_toy(source: str, where: Path, stem: str) -> Path:
    """The object file of the C ``source``, built in ``where``."""
    source_path, elf = where / f"{stem}.bpf.c", where / f"{stem}.bpf.o"
    source_path.write_text(source)
    subprocess.run(["clang", "-g", "-O2", "-target", "bpf", f"-I{ROOT / 'kern'}", "-c",
                    str(source_path), "-o", str(elf)], check=True, capture_output=True)
    return elf


@contextmanager
def loaded_twice(elf: Path) -> Iterator[tuple[Object, Object]]:
    """Two loaded copies of ``elf``: each program twice, counters apart."""
    with Object.from_file(elf) as first, Object.from_file(elf) as second:
        first.load()
        second.load()
        yield first, second


def seen(obj: Object) -> int:
    """The toy's ``seen`` counter (a per-CPU array of one u64), summed."""
    return obj.maps["seen"].sum(bytes(4), "=Q")[0]

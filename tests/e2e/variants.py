"""Other builds of pingkiller for the upgrade tests: a variant of this tree (another
program, or another ABI version) and a past release built from the repository's history."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from pingkiller import abi

ROOT = Path(__file__).resolve().parents[2]


def _bpf_cflags() -> list[str]:
    printed = subprocess.run(
        ["make", "-s", "--no-print-directory", "-C", str(ROOT), "--eval",
         "print-bpf-cflags: ; @echo $(BPF_CFLAGS)", "print-bpf-cflags"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    return [flag for flag in printed if not flag.startswith("-ffile-prefix-map")]


def make_variant(where: Path, *, abi_version: int | None = None) -> list[str]:
    """Build a variant of this pingkiller in ``where``; returns its CLI command."""
    shutil.copytree(ROOT / "pingkiller", where / "pingkiller",
                    ignore=shutil.ignore_patterns("__pycache__", "*.o", "*.c"))
    elf = where / "variant.bpf.o"
    subprocess.run(
        ["clang", *_bpf_cflags(), f"-ffile-prefix-map={ROOT}=variant-{where.name}",
         "-c", str(ROOT / "kern" / "pingkiller.bpf.c"), "-o", str(elf)],
        cwd=ROOT, check=True, capture_output=True,
    )
    data = where / "pingkiller" / "datapath" / "program.py"
    text = data.read_text()
    text = text.replace('def elf_bytes() -> bytes:\n',
                        f'def elf_bytes() -> bytes:\n    return open({str(elf)!r}, "rb").read()\n', 1)
    data.write_text(text)
    if abi_version is not None:
        module = where / "pingkiller" / "abi.py"
        text = re.sub(r"^ABI_VERSION = \d+$", f"ABI_VERSION = {abi_version}",
                      module.read_text(), count=1, flags=re.M)
        text = re.sub(r"^ADOPTABLE_ABI_VERSIONS = .*$",
                      f"ADOPTABLE_ABI_VERSIONS = frozenset({{{abi.ABI_VERSION}, {abi_version}}})",
                      text, count=1, flags=re.M)
        module.write_text(text)
    return ["env", f"PYTHONPATH={where}", sys.executable, "-P", "-m", "pingkiller"]


# The last commit of ABI 2 (shared rule maps, hits counted with atomic adds): the
# release before the per-CPU rule maps, whose pins `upgrade` converts.
ABI_2_RELEASE = "b5d411aba89c9775707c61f49243ce7c94e394cb"
# The last commit of ABI 4 (settings of 24 bytes, 10 counter slots, no limiter): the
# release before the limit action, whose pins `upgrade` converts.
ABI_4_RELEASE = "824d4ca3707214e17dc906c8a6894c986282151a"


_DATAPATH_OF_A_RELEASE = """\
# The release's ABI from its own kern/pingkiller.h, in cffi's ABI mode (nothing compiled).
from pathlib import Path

import cffi

from cffi_src import datapath as _cdefs

ffi = cffi.FFI()
ffi.cdef(_cdefs.TYPES_CDEF + _cdefs.abi_cdef(Path(__file__).parents[1] / "kern" / "pingkiller.h"))
lib = ffi.dlopen(None)
"""


def make_release(where: Path, commit: str) -> list[str]:
    """Build the pingkiller of ``commit`` (this repository's history) in ``where``, as
    it was released: its BPF object from its kern/, its libbpf extension from its
    cffi_src/ (its build.py), its Python package and its ABI (the one extension not
    compiled: its ABI is read from its header in cffi's ABI mode). Returns its CLI."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "pingkiller", "kern",
                              "cffi_src", "build.py"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    subprocess.run([sys.executable, "-P", "-c", "import build; build.compile_in_place(build.libbpf_ffi)"],
                   cwd=where, env={**os.environ, "PYTHONPATH": str(where)}, check=True,
                   capture_output=True)
    (where / "pingkiller" / "_datapath.py").write_text(_DATAPATH_OF_A_RELEASE)
    elf = where / "release.bpf.o"
    subprocess.run(
        ["clang", *_bpf_cflags(), f"-I{where / 'kern'}", f"-ffile-prefix-map={where}=release",
         "-c", str(where / "kern" / "pingkiller.bpf.c"), "-o", str(elf)],
        check=True, capture_output=True,
    )
    data = where / "pingkiller" / "datapath.py"  # until the product layer's redesign
    if not data.exists():
        data = where / "pingkiller" / "datapath" / "program.py"
    text = data.read_text()
    text = text.replace('def elf_bytes() -> bytes:\n',
                        f'def elf_bytes() -> bytes:\n    return open({str(elf)!r}, "rb").read()\n', 1)
    data.write_text(text)
    return ["env", f"PYTHONPATH={where}", sys.executable, "-P", "-m", "pingkiller"]


def run_cli(command: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=60)


def hits_by_rule(shown: dict[str, Any]) -> dict[str, int]:
    """Each rule's hits in one attachment of ``status --json``."""
    return {rule["address"]: rule["hits"] for rule in shown["rules"]}

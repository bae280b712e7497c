"""cffi build script: the two extensions, the pyca way (declarations in cffi_src/).

- ``pingkiller.bpf._libbpf``: the generic binding's libbpf subset, one cdef module per
  libbpf header it wraps (cffi_src/linux_bpf_h.py, bpf_h.py, libbpf_h.py) and the C
  shims in a real C file (cffi_src/shims.c). It knows nothing of pingkiller.
- ``pingkiller._datapath``: pingkiller's ABI (kern/pingkiller.h) and the bpftool
  skeleton, so the compiled BPF object travels inside it and nothing is read from
  disk at run time.

``make build`` runs this file as a script (in place); ``pip install .`` and
``make wheel`` load it through setup.py (``cffi_modules``). Importing it only describes
the extensions; the BPF object and its skeleton (``make skeleton``: kern/*.c -> object ->
skeleton) are built just before the C compile, by :func:`build_skeleton`, so an sdist or
wheel's metadata can be computed on a machine with no clang, bpftool or kernel at all.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from cffi_src import bpf_h, datapath, libbpf_h, linux_bpf_h, shims  # noqa: E402

BPF_BUILD_DIR = ROOT / "build" / "bpf"
ABI_HEADER = ROOT / "kern" / "pingkiller.h"
SKELETON = BPF_BUILD_DIR / "pingkiller.skel.h"
EXTENSIONS = ("pingkiller.bpf._libbpf", "pingkiller._datapath")

# tool or file -> the Debian package that provides it
REQUIREMENTS = {
    "make": "make",
    "clang": "clang",
    "bpftool": "bpftool",
    "/usr/include/bpf/libbpf.h": "libbpf-dev",
    "/usr/include/gelf.h": "libelf-dev",
}
# No DWARF: it would carry the build machine's paths into the wheel.
_LINK_ARGS = ["-Wl,--strip-debug"]


def _found(need: str) -> bool:
    if not need.startswith("/"):
        return shutil.which(need) is not None
    if Path(need).exists():
        return True
    # A library installed elsewhere (/usr/local, a prefix) is found by pkg-config.
    module = {"/usr/include/bpf/libbpf.h": "libbpf", "/usr/include/gelf.h": "libelf"}[need]
    if shutil.which("pkg-config") is None:
        return False
    return subprocess.run(["pkg-config", "--exists", module], capture_output=True).returncode == 0


def check_requirements() -> None:
    """Stop with one line naming the missing package, before anything cryptic can fail."""
    for need, package in REQUIREMENTS.items():
        if not _found(need):
            sys.exit(f"error: {need} not found: install it with `apt-get install {package}`")


def build_skeleton() -> None:
    """kern/pingkiller.bpf.c -> BPF object -> skeleton header, by the Makefile's rules."""
    check_requirements()
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "skeleton"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        sys.exit("error: building the BPF object failed (see above)")


def make_libbpf_ffi() -> FFI:
    """pingkiller.bpf._libbpf: libbpf's API as the generic binding uses it, and the shims."""
    headers = (linux_bpf_h, bpf_h, libbpf_h, shims)
    builder = FFI()
    builder.cdef("".join(h.CDEF for h in headers))
    builder.set_source(
        "pingkiller.bpf._libbpf",
        "".join(h.INCLUDES for h in headers),
        sources=shims.SOURCES,
        include_dirs=shims.INCLUDE_DIRS,
        libraries=["bpf"],
        extra_compile_args=["-O2"],
        extra_link_args=_LINK_ARGS,
    )
    return builder


def make_datapath_ffi() -> FFI:
    """pingkiller._datapath: the ABI and the embedded ELF (the skeleton must exist to compile)."""
    builder = FFI()
    builder.cdef(datapath.TYPES_CDEF + datapath.abi_cdef(ABI_HEADER) + datapath.SKELETON_CDEF)
    builder.set_source(
        "pingkiller._datapath",
        datapath.INCLUDES,
        include_dirs=[str(BPF_BUILD_DIR), str(ROOT / "kern")],
        # The skeleton's unused open/load/destroy helpers: they are never called here.
        extra_compile_args=["-O2", "-Wno-unused-function"],
        extra_link_args=_LINK_ARGS,
    )
    return builder


libbpf_ffi = make_libbpf_ffi()
datapath_ffi = make_datapath_ffi()


def compile_in_place(builder: FFI) -> Path:
    """Compile next to the sources as the one abi3 file a wheel would hold.

    cffi names an in-place build for this interpreter, but the code is Py_LIMITED_API:
    one abi3 file, so no stale build can shadow it.
    """
    built = Path(builder.compile(tmpdir=str(ROOT), verbose=False))
    stem = built.name.split(".", 1)[0]
    for stale in built.parent.glob(f"{stem}.*.so"):
        if stale != built:
            stale.unlink()
    return built.rename(built.parent / f"{stem}.abi3.so")


if __name__ == "__main__":
    build_skeleton()
    for ffibuilder in (libbpf_ffi, datapath_ffi):
        compile_in_place(ffibuilder)

"""setuptools glue that pyproject.toml cannot spell: the cffi extension, the BPF build
step before it, the abi3 wheel tag, and the man pages as data files."""

from __future__ import annotations

import importlib.util
from glob import glob
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class BuildExtWithBpf(build_ext):
    """Build the BPF object and its skeleton just before compiling the extension."""

    def run(self) -> None:
        # Loaded by path: the name `build` is PyPA's build frontend on sys.path.
        spec = importlib.util.spec_from_file_location("pingkiller_build", ROOT / "build.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.build_skeleton()
        super().run()

    def build_extensions(self) -> None:
        # The interpreter's link flags may hold an rpath to its own lib directory (pyenv
        # does): an abi3 extension links no libpython, and a wheel must name no build path.
        linker = self.compiler.linker_so
        self.compiler.linker_so = [arg for arg in linker if not arg.startswith("-Wl,-rpath")]
        super().build_extensions()


setup(
    cffi_modules=["build.py:libbpf_ffi", "build.py:datapath_ffi"],
    cmdclass={"build_ext": BuildExtWithBpf},
    # The extension uses only the stable ABI (cffi builds it with Py_LIMITED_API).
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
    data_files=[("share/man/man1", sorted(glob("docs/man/*.1")))],
)

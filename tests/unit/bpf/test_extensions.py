"""The two cffi extensions: one generic (libbpf), one pingkiller's own (ABI + ELF), each
typed by a stub generated from it, and the binding's C shims held to -Wall -Wextra -Werror."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
from cffi_src import stubs  # noqa: E402

STUBS = {
    "pingkiller.bpf._libbpf": REPO / "pingkiller" / "bpf" / "_libbpf.pyi",
    "pingkiller._datapath": REPO / "pingkiller" / "_datapath.pyi",
}


@pytest.mark.parametrize("module", sorted(STUBS))
def test_committed_stub_is_what_the_built_extension_makes(module: str) -> None:
    assert STUBS[module].read_text() == stubs.render(module), (
        f"{STUBS[module].name} is stale: run `make build stubs` and commit it"
    )


def test_the_generic_extension_holds_nothing_of_pingkiller() -> None:
    from pingkiller.bpf import _libbpf

    names = dir(_libbpf.lib)
    assert "bpf_object__open_mem" in names and "pk_ring_buffer_new" in names
    assert not [n for n in names if n.startswith(("PK_", "pingkiller"))]


def test_the_product_extension_holds_the_abi_and_the_elf_only() -> None:
    from pingkiller import _datapath

    functions = [n for n in dir(_datapath.lib) if not n.isupper()]
    assert functions == ["pingkiller_bpf__elf_bytes"]
    assert _datapath.ffi.sizeof("struct pk_event") == 64


def test_generic_binding_imports_without_the_product() -> None:
    code = ("import sys\n"
            "sys.modules['pingkiller._datapath'] = None\n"
            "import pingkiller.bpf\n"
            "print(sorted(m for m in sys.modules if m.startswith('pingkiller')"
            " and not m.startswith('pingkiller.bpf')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # the blocked entry, and the base of the error tree (a module that imports nothing)
    assert done.stdout.strip() == ("['pingkiller', 'pingkiller._datapath', 'pingkiller.model', "
                                   "'pingkiller.model.errors']")


def test_mypy_checks_calls_across_the_ffi_boundary(tmp_path: Path) -> None:
    """With the stubs in force, a wrong call into either extension is a type error."""
    snippet = tmp_path / "wrong.py"
    snippet.write_text(
        "from pingkiller.bpf._libbpf import lib\n"
        "from pingkiller._datapath import lib as datapath\n"
        "lib.bpf_map_lookup_elem('not an fd')\n"
        "lib.libbpf_major_version() + 'x'\n"
        "datapath.PK_NO_SUCH_CONSTANT\n"
    )
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(snippet)],
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    out = result.stdout
    assert result.returncode == 1, out
    assert 'Too few arguments for "bpf_map_lookup_elem"' in out
    assert 'Argument 1 to "bpf_map_lookup_elem" of "_Lib" has incompatible type "str"' in out
    assert 'Unsupported operand types for + ("int" and "str")' in out
    assert '"_Lib" has no attribute "PK_NO_SUCH_CONSTANT"' in out


def test_shims_compile_clean_with_every_warning_an_error() -> None:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler (apt-get install gcc)")
    result = subprocess.run(
        [compiler, "-Wall", "-Wextra", "-Werror", "-fsyntax-only", "-I", str(REPO / "cffi_src"),
         str(REPO / "cffi_src" / "shims.c")], capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert '#pragma GCC diagnostic error "-Wextra"' in (REPO / "cffi_src" / "shims.c").read_text()

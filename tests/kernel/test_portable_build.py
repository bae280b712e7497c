"""The BPF build reads nothing of the build host's kernel, and its object needs no kernel BTF.

Both run with /sys/kernel/btf hidden under a tmpfs in a private mount namespace: the
build in a copy of kern/ and the Makefile, the load in a fresh interpreter that runs a
ping and a non-ping through the object with BPF_PROG_RUN.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from frames import echo4, echo6, non_ip

from pingkiller import abi, doctor
from pingkiller.datapath import program as datapath

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
IN_TREE_OBJECT = REPO / "build" / "bpf" / "pingkiller.bpf.o"
# In the new mount namespace: cover /sys/kernel/btf, prove it is empty, then run "$@".
_WITHOUT_BTF = (
    "mount -t tmpfs -o size=64k pk-no-btf /sys/kernel/btf && "
    "test -z \"$(ls -A /sys/kernel/btf)\" && exec \"$@\""
)

_LOAD_AND_RUN = """
import json, sys
from pingkiller import abi, bpf
from pingkiller.model import enums
with bpf.Object.from_file(sys.argv[1]) as obj:
    obj.load()
    settings = abi.Config(default_action=enums.DefaultAction.DROP).encode()
    obj.maps[abi.SETTINGS_MAP][abi.u32_key(0)] = settings
    program = obj.programs[abi.PROGRAM_NAME]
    print(json.dumps([program.test_run(bytes.fromhex(frame)).retval for frame in sys.argv[2:]]))
"""


def without_kernel_btf(command: list[str], *, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", _WITHOUT_BTF, "sh", *command],
        capture_output=True, text=True, timeout=300, cwd=cwd,
    )


@pytest.fixture(scope="module")
def blind_object(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """kern/ built by the Makefile's own rule in a copy of the tree, with no kernel BTF."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is missing: apt-get install util-linux")
    source = tmp_path_factory.mktemp("blind") / "src"
    shutil.copytree(REPO / "kern", source / "kern")
    shutil.copy(REPO / "Makefile", source / "Makefile")
    result = without_kernel_btf(["make", "--no-print-directory", "-C", str(source), "skeleton"])
    assert result.returncode == 0, result.stdout + result.stderr
    return source / "build" / "bpf" / "pingkiller.bpf.o"


def test_build_without_kernel_btf_makes_the_same_object(blind_object: Path) -> None:
    built = blind_object.read_bytes()
    assert (blind_object.parent / "pingkiller.skel.h").stat().st_size > len(built)
    # Byte for byte what the extension embeds, so every kernel test ran this very object.
    assert built == datapath.elf_bytes()
    if IN_TREE_OBJECT.exists():
        assert built == IN_TREE_OBJECT.read_bytes()
    assert str(blind_object.parents[2]).encode() not in built  # no build-directory path


def test_object_carries_btf_and_needs_no_relocation(blind_object: Path) -> None:
    report = doctor.inspect_object(blind_object.read_bytes())
    assert report.has_btf and report.has_btf_ext  # maps' BTF, line and function info
    assert report.core_relocations == 0  # UAPI types only: nothing to relocate
    assert report.programs == {abi.PROGRAM_NAME: "xdp", abi.TC_IN_PROGRAM_NAME: "tc",
                               abi.TC_OUT_PROGRAM_NAME: "tc"}


def test_object_loads_and_judges_without_kernel_btf(blind_object: Path) -> None:
    frames = [echo4().data, echo6().data, non_ip().data]
    result = without_kernel_btf(
        [sys.executable, "-c", _LOAD_AND_RUN, str(blind_object), *(f.hex() for f in frames)],
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    xdp_drop, xdp_pass = 1, 2
    assert json.loads(result.stdout) == [xdp_drop, xdp_drop, xdp_pass]

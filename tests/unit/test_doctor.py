"""`pingkiller doctor`: the embedded object read with pyelftools, each check, the output format."""

from __future__ import annotations

import json
import os
import socket
import struct
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pingkiller import abi, doctor
from pingkiller.bpf import XdpLink, xdp_query
from pingkiller.cli import app
from pingkiller.datapath import program as datapath
from pingkiller.demo.sandbox import Sandbox
from pingkiller.doctor import FAIL, OK, SKIP, WARN, Check
from pingkiller.store.bpffs import MountNamespace
from pingkiller.system import capabilities

# The object's programs and their types: XDP, and tc for each direction.
PROGRAMS = {abi.PROGRAM_NAME: "xdp", abi.TC_IN_PROGRAM_NAME: "tc", abi.TC_OUT_PROGRAM_NAME: "tc"}

def test_embedded_object_inspected_with_pyelftools() -> None:
    report = doctor.inspect_object(datapath.elf_bytes())
    assert report.programs == PROGRAMS
    for name in (abi.SETTINGS_MAP, abi.COUNTERS_MAP, abi.TIMING_MAP, abi.EVENTS_MAP,
                 abi.RULES_V4_MAP, abi.RULES_V6_MAP, abi.PREFIXES_V4_MAP, abi.PREFIXES_V6_MAP,
                 abi.PREFIX_TRIE_V4_MAP, abi.PREFIX_TRIE_V6_MAP):
        assert name in report.maps
    assert report.license == "GPL"
    assert report.has_btf and report.has_btf_ext
    assert report.core_relocations == 0  # kern/uapi.h: UAPI types only, nothing to relocate
    assert {"xdp", "license", ".maps", ".BTF", ".BTF.ext"} <= set(report.sections)
    assert report.machine == "EM_BPF"
    assert doctor.check_object(report).status == OK


def _btf_ext(records_per_section: list[int], record_size: int = 16) -> bytes:
    core = struct.pack("<I", record_size)
    for count in records_per_section:
        core += struct.pack("<II", 7, count) + bytes(count * record_size)
    header = struct.pack("<HBBIIIIIII", 0xEB9F, 1, 0, 32, 0, 0, 0, 0, 0, len(core))
    return header + core


def test_core_relocations_counted_from_btf_ext() -> None:
    assert doctor._core_relocations(_btf_ext([3, 4]), little_endian=True) == 7
    assert doctor._core_relocations(_btf_ext([]), little_endian=True) == 0
    short_header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 0, 0, 0)  # no CO-RE part
    assert doctor._core_relocations(short_header, little_endian=True) == 0
    assert doctor._core_relocations(b"\0" * 40, little_endian=True) == 0  # bad magic


def test_object_without_btf_fails_with_the_fix() -> None:
    report = doctor.ObjectReport(sections=["xdp", "license"], programs={"p": "xdp"}, maps=[],
                                 license="GPL", has_btf=False, has_btf_ext=False,
                                 core_relocations=0)
    check = doctor.check_object(report)
    assert check.status == FAIL and "make build" in check.fix


@pytest.mark.parametrize(
    ("release", "status"),
    [("6.1.0-18-amd64", OK), ("5.18.0", OK), ("5.15.0-91-generic", FAIL), ("5.11.0", FAIL),
     ("5.10.209", FAIL), ("5.8.18", FAIL), ("4.19.0-20-amd64", FAIL), ("weird", WARN)],
)
def test_kernel_version(release: str, status: str) -> None:
    check = doctor.check_kernel(release)
    assert check.status == status
    assert release in check.detail
    if status == FAIL:
        assert "5.18" in check.fix


def test_btf_needed_only_for_relocations(tmp_path: Path) -> None:
    absent = tmp_path / "vmlinux"
    check = doctor.check_btf(0, absent)
    assert check.status == OK and "not needed" in check.detail
    check = doctor.check_btf(3, absent)
    assert check.status == FAIL and "CONFIG_DEBUG_INFO_BTF" in check.fix
    absent.write_bytes(b"\0" * 4096)
    assert doctor.check_btf(3, absent).status == OK


MOUNTS = "sysfs /sys sysfs rw 0 0\nbpf /sys/fs/bpf bpf rw,nosuid 0 0\n"


def test_bpffs_checks() -> None:
    assert doctor.check_bpffs(MOUNTS, Path("/sys/fs/bpf/pingkiller")).status == OK
    no_bpffs = "sysfs /sys sysfs rw 0 0\n"
    host = MountNamespace(True, "the same as PID 1's")
    mountable = doctor.check_bpffs(no_bpffs, Path("/sys/fs/bpf/pingkiller"), host)
    assert mountable.status == OK and "the first attach mounts it" in mountable.detail  # as it does
    private = MountNamespace(False, "which is not the host's (PID 1 lives in another)")
    lost = doctor.check_bpffs(no_bpffs, Path("/sys/fs/bpf/pingkiller"), private)
    assert lost.status == FAIL and "nsenter" in lost.fix
    elsewhere = doctor.check_bpffs(MOUNTS, Path("/tmp/pins"))
    assert elsewhere.status == FAIL and "PINGKILLER_PIN_ROOT" in elsewhere.fix
    assert doctor.check_bpffs(no_bpffs, Path("/tmp/pins"), host).status == FAIL


def _caps(*names: str) -> int:
    return sum(1 << capabilities.CAPABILITIES[name] for name in names)


def test_capabilities() -> None:
    assert doctor.check_capabilities(_caps("CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON")).status == OK
    assert doctor.check_capabilities(_caps("CAP_SYS_ADMIN", "CAP_NET_ADMIN")).status == OK
    for caps, lacking in ((0, "CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON"),
                          (_caps("CAP_BPF"), "CAP_NET_ADMIN, CAP_PERFMON"),
                          (_caps("CAP_NET_ADMIN", "CAP_PERFMON"), "CAP_BPF"),
                          (_caps("CAP_BPF", "CAP_NET_ADMIN"), "CAP_PERFMON")):
        check = doctor.check_capabilities(caps)
        assert check.status == FAIL and "root" in check.fix
        assert check.detail.endswith(f"attach lacks {lacking}")


def test_libbpf_version_is_read_from_the_extension() -> None:
    from pingkiller.bpf._libbpf import lib

    check = doctor.check_libbpf()
    assert check.detail == f"{lib.libbpf_major_version()}.{lib.libbpf_minor_version()}"
    assert check.status == OK  # the project needs libbpf >= 1.0 and builds against it


def test_line_format_puts_the_fix_on_the_same_line() -> None:
    line = Check("bpffs", FAIL, "not mounted", "mount -t bpf bpf /sys/fs/bpf").line()
    assert line == "[FAIL] bpffs: not mounted - fix: mount -t bpf bpf /sys/fs/bpf"
    assert Check("libbpf", OK, "1.1").line() == "[ ok ] libbpf: 1.1"
    assert doctor.healthy([Check("a", OK, ""), Check("b", WARN, ""), Check("c", SKIP, "")])
    assert not doctor.healthy([Check("a", OK, ""), Check("b", FAIL, "", "x")])


def test_cli_json_lists_every_check_and_exit_code_matches() -> None:
    result = CliRunner().invoke(app, ["doctor", "--json"])
    data = json.loads(result.stdout)
    names = [check["name"] for check in data["checks"]]
    assert names == ["kernel", "kernel BTF", "bpffs", "capabilities", "libbpf", "BPF object",
                     "tcx", "XDP native mode"]
    assert data["checks"][-1]["status"] == SKIP  # only tried on an interface the user names
    assert data["object"]["programs"] == PROGRAMS
    assert result.exit_code == (0 if data["ok"] else 1)
    assert data["ok"] == all(check["status"] != FAIL for check in data["checks"])


def test_cli_human_output_is_a_checklist() -> None:
    result = CliRunner().invoke(app, ["doctor"])
    lines = result.stdout.splitlines()
    assert lines[0].startswith(("[ ok ] kernel:", "[FAIL] kernel:", "[warn] kernel:"))
    for line in lines:
        if line.startswith("[FAIL]"):
            assert " - fix: " in line
    healthy = not any(line.startswith("[FAIL]") for line in lines)
    assert lines[-1] == ("All needed pieces are there." if healthy
                         else "Something needed is missing: see the fixes above.")
    assert result.exit_code == (0 if healthy else 1)


@pytest.mark.root
def test_native_mode_tried_on_a_sandbox_veth_and_left_clean(
    sandbox: Sandbox, pin_root: Path
) -> None:
    peer = sandbox.add_peer()
    ifindex = socket.if_nametoindex(peer.host_ifname)
    result = CliRunner().invoke(app, ["doctor", "--json", "--interface", peer.host_ifname])
    data = json.loads(result.stdout)
    check = data["checks"][-1]
    assert check["name"] == f"XDP native mode on {peer.host_ifname}"
    assert check["status"] == OK and "native mode in effect" in check["detail"]  # veth has it
    assert result.exit_code == 0
    assert xdp_query(ifindex).attached_ids == []

    with datapath.load() as obj, XdpLink.attach(obj.programs[abi.PROGRAM_NAME], ifindex):
        before = xdp_query(ifindex).attached_ids
        busy = doctor.check_xdp_native(peer.host_ifname)
        assert busy.status == SKIP and "not disturbed" in busy.detail
        assert xdp_query(ifindex).attached_ids == before


RELOCATED_C = r"""
#include "uapi.h"
#include <bpf/bpf_helpers.h>
struct task_struct { int pid; int tgid; } __attribute__((preserve_access_index));
SEC("raw_tp/sys_enter")
int relocated(void *ctx)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	int pid = 0, tgid = 0;

	bpf_probe_read_kernel(&pid, sizeof(pid), &task->pid);
	bpf_probe_read_kernel(&tgid, sizeof(tgid), &task->tgid);
	return pid == tgid;
}
char LICENSE[] SEC("license") = "GPL";
"""


@pytest.mark.root
def test_core_relocation_count_matches_libbpf(tmp_path: Path) -> None:
    """pingkiller's object has no relocation; one that has them is counted as libbpf counts."""
    import re
    import subprocess

    from pingkiller.bpf import Object
    from pingkiller.bpf._ffi import capture_libbpf_log

    source, built = tmp_path / "relocated.bpf.c", tmp_path / "relocated.bpf.o"
    source.write_text(RELOCATED_C)
    kern = Path(__file__).resolve().parents[2] / "kern"
    subprocess.run(["clang", "-g", "-O2", "-target", "bpf", f"-I{kern}", "-c", str(source), "-o",
                    str(built)], check=True)
    for elf, path in ((datapath.elf_bytes(), None), (built.read_bytes(), built)):
        with capture_libbpf_log() as lines:
            obj = Object.from_file(path) if path else datapath.open_object()
            with obj:
                obj.load()
        found = [re.search(r"found (\d+) CO-RE relocations", line) for line in lines]
        counted = sum(int(m.group(1)) for m in found if m)
        assert doctor.inspect_object(elf).core_relocations == counted
        assert counted == (2 if path else 0)


def test_tcx_is_reported() -> None:
    # This machine's kernel (6.18) has tcx; as root the query answers.
    check = doctor.check_tcx()
    if os.geteuid() != 0:
        assert check.status == SKIP
        return
    assert (check.name, check.status) == ("tcx", OK)
    assert "ingress and egress" in check.detail

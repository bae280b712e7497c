"""What the binding hands out it owns: closed handles refuse (even once their fd number
belongs to someone else), pins reopen only as what they are, attach checks the program,
and the verifier log is the binding's own buffer.

The XDP link lives on a sandbox veth (pingkiller.demo.sandbox), never on a real interface.
"""

from __future__ import annotations

import errno
import platform
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from frames import echo4

from pingkiller import abi
from pingkiller.bpf import (
    LINK_TYPE_XDP,
    MAP_TYPE_ARRAY,
    PROG_TYPE_XDP,
    XDP_DROP,
    XDP_PASS,
    BpfError,
    Link,
    Map,
    Object,
    ObjectKind,
    Program,
    VerifierError,
    WrongObjectType,
    XdpLink,
    attach_raw_tracepoint,
)
from pingkiller.bpf.fd import fd_kind
from pingkiller.datapath import program as datapath
from pingkiller.model import enums

pytestmark = pytest.mark.root

EXAMPLES = Path(__file__).resolve().parents[2] / "build" / "examples"
KERNEL = tuple(int(part) for part in re.findall(r"\d+", platform.release())[:2])
ARP = bytes(12) + b"\x08\x06" + bytes(28)


def example(name: str) -> Path:
    path = EXAMPLES / f"{name}.bpf.o"
    if not path.exists():  # built by the Makefile's rule, as test_examples does
        subprocess.run(["make", "-s", "-C", str(EXAMPLES.parents[1]), "examples"], check=True,
                       capture_output=True, timeout=120)
    return path


def assert_closed(call: object, *args: object) -> None:
    with pytest.raises(BpfError) as caught:
        call(*args)  # type: ignore[operator]
    assert caught.value.errno == errno.EBADF
    assert "closed" in str(caught.value)


# Closed handles


def test_closed_handles_refuse_and_close_is_idempotent():
    with datapath.load() as obj:
        program, counters = obj.programs[abi.PROGRAM_NAME], obj.maps[abi.COUNTERS_MAP]
        program.close()
        program.close()
        counters.close()
        counters.close()
        assert program.closed and counters.closed
        assert_closed(program.test_run, ARP)
        assert_closed(program.info)
        assert_closed(lambda: program.fd)
        assert_closed(counters.get_raw, abi.u32_key(0))
        assert_closed(len, counters)
        assert "closed" in repr(program) and "closed" in repr(counters)
    assert_closed(obj.set_max_entries, abi.COUNTERS_MAP, 1)


def test_object_close_invalidates_what_it_handed_out_even_after_fd_reuse():
    """After close, the handles' old fd numbers go to a new object: the stale handles
    must refuse, not run the new program or read the new map."""
    obj = datapath.load()
    stale_program = obj.programs[abi.PROGRAM_NAME]
    stale_map = obj.maps[abi.SETTINGS_MAP]
    numbers = {stale_program.fd, stale_map.fd}
    obj.close()
    assert stale_program.closed and stale_map.closed

    # Take fd numbers until the stale ones are reused (the kernel gives the lowest free).
    taken: list[Map] = []
    try:
        while not numbers <= {m.fd for m in taken}:
            taken.append(Map.create(MAP_TYPE_ARRAY, "pk_reuse", 4, 4, 1))
            assert taken[-1].fd <= max(numbers) + 64, "the stale numbers were never reused"
        for reused in taken:
            assert fd_kind(reused.fd) is ObjectKind.MAP
        assert_closed(stale_program.test_run, ARP)
        assert_closed(stale_map.get_raw, abi.u32_key(0))
        assert_closed(stale_map.put, abi.u32_key(0), bytes(abi.CONFIG.size))
        # and the new owners are untouched
        assert all(m.get_raw(abi.u32_key(0)) == bytes(4) for m in taken)
    finally:
        for bpf_map in taken:
            bpf_map.close()


def test_a_program_from_a_new_object_is_not_reached_by_a_stale_handle():
    """The defect this replaces: a stale Program ran the new object's program."""
    drop_pings = abi.Config(default_action=enums.DefaultAction.DROP)
    with datapath.load() as first:
        stale = first.programs[abi.PROGRAM_NAME]
    with datapath.load(drop_pings) as second:
        fresh = second.programs[abi.PROGRAM_NAME]
        assert_closed(stale.test_run, ARP)
        assert fresh.test_run(echo4().data).retval == XDP_DROP  # the new object's policy


def test_dup_outlives_its_object():
    with datapath.load() as obj:
        kept = obj.programs[abi.PROGRAM_NAME].dup()
        kept_map = obj.maps[abi.SETTINGS_MAP].dup()
        prog_id = obj.programs[abi.PROGRAM_NAME].info().id
    with kept, kept_map:
        assert kept.fd != kept_map.fd
        assert kept.info().id == prog_id
        assert kept.test_run(ARP).retval == XDP_PASS
        assert kept_map.get_raw(abi.u32_key(0)) is not None
    assert kept.closed and kept_map.closed


def test_handles_opened_by_id_own_their_fd():
    with datapath.load() as obj:
        prog_id = obj.programs[abi.PROGRAM_NAME].info().id
        map_id = obj.maps[abi.SETTINGS_MAP].info.id
        with Program.from_id(prog_id, prog_type=PROG_TYPE_XDP) as program:
            assert program.name == abi.PROGRAM_NAME and program.type_name == "xdp"
        assert program.closed
        with Map.from_id(map_id, map_type=MAP_TYPE_ARRAY) as settings:
            assert settings.name == abi.SETTINGS_MAP
        with pytest.raises(WrongObjectType, match="is a program \\(xdp\\)"):
            Program.from_id(prog_id, prog_type=PROG_TYPE_XDP + 1)
        with pytest.raises(WrongObjectType, match="percpu_array"):
            Map.from_id(obj.maps[abi.COUNTERS_MAP].info.id, map_type=MAP_TYPE_ARRAY)


# Typed reopen


@pytest.fixture
def xdp_link_pin(sandbox, bpffs_dir):
    """A pinned XDP link on a sandbox veth (and the object whose program it runs)."""
    peer = sandbox.add_peer()
    assert peer.host_ifname.startswith("pk"), "only sandbox interfaces may carry test XDP"
    with datapath.load() as obj:
        link = XdpLink.attach(obj.programs[abi.PROGRAM_NAME], socket.if_nametoindex(peer.host_ifname))
        with link:
            link.pin(bpffs_dir / "link")
            yield obj, bpffs_dir / "link"
            link.detach()


def test_each_pin_reopens_only_as_what_it_is(xdp_link_pin, bpffs_dir):
    obj, link_pin = xdp_link_pin
    map_pin, program_pin = bpffs_dir / "counters", bpffs_dir / "program"
    obj.maps[abi.COUNTERS_MAP].pin(map_pin)
    obj.programs[abi.PROGRAM_NAME].pin(program_pin)

    with Map.from_pin(map_pin) as counters, Program.from_pin(program_pin) as program, \
            XdpLink.from_pin(link_pin) as link, Link.from_pin(link_pin) as any_link:
        assert counters.name == abi.COUNTERS_MAP
        assert program.name == abi.PROGRAM_NAME
        assert link.info().type == any_link.info().type == LINK_TYPE_XDP
        assert link.info().prog_id == program.info().id
        assert any_link.type_name == "xdp"

    wrong = {
        (XdpLink.from_pin, map_pin): "a map (percpu_array), not a link (xdp)",
        (Link.from_pin, map_pin): "a map (percpu_array), not a link",
        (XdpLink.from_pin, program_pin): "a program (xdp), not a link (xdp)",
        (Map.from_pin, program_pin): "a program (xdp), not a map",
        (Map.from_pin, link_pin): "a link (xdp), not a map",
        (Program.from_pin, map_pin): "a map (percpu_array), not a program",
        (Program.from_pin, link_pin): "a link (xdp), not a program",
    }
    for (opener, pin), says in wrong.items():
        with pytest.raises(WrongObjectType) as caught:
            opener(pin)
        assert caught.value.errno == errno.EINVAL
        assert f"{pin} is {says}" in str(caught.value), (opener, pin)
    with pytest.raises(WrongObjectType, match="not a map \\(hash\\)"):
        Map.from_pin(map_pin, map_type=0 + 1)  # BPF_MAP_TYPE_HASH
    with pytest.raises(WrongObjectType, match="not a program \\(socket_filter\\)"):
        Program.from_pin(program_pin, read_only=True, prog_type=1)  # SOCKET_FILTER


def test_read_only_reopen_still_checks_the_kind(bpffs_dir):
    with datapath.load() as obj:
        obj.maps[abi.SETTINGS_MAP].pin(bpffs_dir / "settings")
        obj.programs[abi.PROGRAM_NAME].pin(bpffs_dir / "program")
    with Map.from_pin(bpffs_dir / "settings", read_only=True) as settings:
        assert settings.get_raw(abi.u32_key(0)) is not None
    with pytest.raises(WrongObjectType, match="is a map \\(array\\), not a program"):
        Program.from_pin(bpffs_dir / "settings", read_only=True)
    with pytest.raises(WrongObjectType, match="is a program \\(xdp\\), not a map"):
        Map.from_pin(bpffs_dir / "program", read_only=True)


def test_raw_tracepoint_link_reopens_as_a_link_not_as_xdp(bpffs_dir):
    with Object.from_file(example("hello")).load() as obj:
        program = obj.programs["hello"]
        assert program.type_name == "raw_tracepoint"
        with attach_raw_tracepoint(program, "sched_process_exec") as link:
            link.pin(bpffs_dir / "tp")
        with Link.from_pin(bpffs_dir / "tp") as reopened:
            assert reopened.type_name == "raw_tracepoint"
            assert reopened.info().prog_id == program.info().id
        with pytest.raises(WrongObjectType, match="is a link \\(raw_tracepoint\\), not a link \\(xdp\\)"):
            XdpLink.from_pin(bpffs_dir / "tp")
        (bpffs_dir / "tp").unlink()


def test_xdp_attach_checks_the_program_type_first():
    with Object.from_file(example("hello")).load() as obj:
        with pytest.raises(WrongObjectType) as caught:
            XdpLink.attach(obj.programs["hello"], 0)  # checked before any interface
        assert "program 'hello' is a program (raw_tracepoint), not a program (xdp)" in str(
            caught.value)
        assert caught.value.operation == "attaching XDP program"


# The verifier log, in the binding's own buffer


def test_verifier_error_of_the_unchecked_example():
    with Object.from_file(example("unchecked")) as bad, pytest.raises(VerifierError) as caught:
        bad.load()
    err = caught.value
    assert err.errno == errno.EACCES and not err.truncated
    assert err.program == "unchecked"
    assert err.cause == "R1 offset is outside of the packet"
    assert err.summary.startswith("invalid access to packet, off=12")
    assert err.summary.endswith(": R1 offset is outside of the packet")
    assert "unchecked.bpf.c:17" in err.log and err.log.rstrip().splitlines()[-1].startswith(
        "processed ")
    assert str(err).startswith("loading program 'unchecked': ")
    assert err.summary in str(err)


def test_verifier_log_grows_from_a_tiny_buffer():
    with Object.from_file(example("unchecked")) as bad, pytest.raises(VerifierError) as caught:
        bad.load(log_size=128)
    err = caught.value
    assert err.errno == errno.EACCES and not err.truncated
    assert err.cause == "R1 offset is outside of the packet"
    assert "unchecked.bpf.c:14" in err.log  # the whole log, from its first line


def test_verifier_log_truncated_at_the_limit():
    with Object.from_file(example("unchecked")) as bad, pytest.raises(VerifierError) as caught:
        bad.load(log_limit=256)
    err = caught.value
    assert err.truncated
    assert err.errno == errno.ENOSPC
    assert len(err.log) < 256
    if KERNEL >= (6, 4):  # a full buffer keeps the end of the log, where the reason is
        assert err.cause == "R1 offset is outside of the packet"
    else:  # older kernels keep its beginning
        assert err.cause and err.cause in err.log
    assert "truncated" in str(err)
    with pytest.raises(ValueError, match="at least 128"):
        Object.from_file(example("unchecked")).load(log_limit=64)


def test_a_small_log_buffer_does_not_get_in_the_way_of_a_good_load():
    """libbpf asks the kernel for a log only after a failed load, so a good object loads
    with the smallest buffer, and what was set up before the load holds."""
    with datapath.open_object() as obj:
        obj.set_max_entries(abi.RULES_V4_MAP, 17)
        obj.load(log_size=128)
        assert obj.maps[abi.RULES_V4_MAP].info.max_entries == 17


# The binding alone


def test_generic_binding_loads_a_foreign_object_in_a_fresh_interpreter():
    code = (
        "import sys\n"
        "sys.modules['pingkiller._datapath'] = None  # pingkiller's own ELF and ABI: not needed\n"
        "import pingkiller.bpf as bpf\n"
        f"with bpf.Object.from_file({str(example('syscount'))!r}).load() as obj:\n"
        "    print(sorted(obj.programs), sorted(obj.maps), obj.programs['count_syscalls'].type_name)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.strip() == "['count_syscalls'] ['syscalls'] raw_tracepoint"


def test_kind_of_an_fd(tmp_path):
    from pingkiller.bpf.fd import _fdinfo_kind

    with datapath.load() as obj, open(tmp_path / "plain", "w") as plain:
        program, settings = obj.programs[abi.PROGRAM_NAME], obj.maps[abi.SETTINGS_MAP]
        assert fd_kind(program.fd) is ObjectKind.PROGRAM
        assert fd_kind(settings.fd) is ObjectKind.MAP
        assert _fdinfo_kind(program.fd) is ObjectKind.PROGRAM  # the fallback agrees
        assert _fdinfo_kind(settings.fd) is ObjectKind.MAP
        assert fd_kind(plain.fileno()) is ObjectKind.NOT_BPF

"""The compiled BPF object, on disk and as the extension embeds it (no root needed)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

from pingkiller import abi
from pingkiller.datapath import program as datapath

OBJECT_PATH = Path(__file__).resolve().parents[2] / "build" / "bpf" / "pingkiller.bpf.o"
EXPECTED_MAPS = {
    abi.SETTINGS_MAP,
    abi.COUNTERS_MAP,
    abi.TIMING_MAP,
    "event_budget",
    abi.LIMITS_MAP,
    abi.BUCKETS_MAP,
    abi.RATE_TOTAL_MAP,
    abi.RULES_V4_MAP,
    abi.RULES_V6_MAP,
    abi.PREFIXES_V4_MAP,
    abi.PREFIXES_V6_MAP,
    abi.PREFIX_TRIE_V4_MAP,
    abi.PREFIX_TRIE_V6_MAP,
    abi.EVENTS_MAP,
}
BPF_CALL = 0x85  # BPF_JMP | BPF_CALL
PRINTK_HELPERS = {6, 177}  # bpf_trace_printk, bpf_trace_vprintk


def _on_disk() -> bytes:
    if not OBJECT_PATH.exists():
        pytest.skip(f"{OBJECT_PATH} is missing: run `python3 build.py`")
    return OBJECT_PATH.read_bytes()


@pytest.fixture(params=["file", "embedded"])
def elf(request: pytest.FixtureRequest) -> ELFFile:
    data = _on_disk() if request.param == "file" else datapath.elf_bytes()
    return ELFFile(io.BytesIO(data))


def test_is_a_64_bit_bpf_object(elf):
    assert elf.header["e_machine"] == "EM_BPF"
    assert elf.elfclass == 64
    assert elf.header["e_type"] == "ET_REL"


def test_xdp_section_holds_the_program(elf):
    section = elf.get_section_by_name("xdp")
    assert section is not None, "no 'xdp' section"
    assert section["sh_flags"] & SH_FLAGS.SHF_EXECINSTR
    assert section.data_size > 0 and section.data_size % 8 == 0
    index = next(i for i, s in enumerate(elf.iter_sections()) if s.name == "xdp")
    functions = [
        sym.name
        for sym in elf.get_section_by_name(".symtab").iter_symbols()
        if sym["st_shndx"] == index and sym["st_info"]["type"] == "STT_FUNC"
    ]
    assert functions == [abi.PROGRAM_NAME]


def test_license_is_gpl(elf):
    section = elf.get_section_by_name("license")
    assert section is not None
    assert section.data().rstrip(b"\0") == b"GPL"


def test_maps_section_names_every_map(elf):
    index = next(i for i, s in enumerate(elf.iter_sections()) if s.name == ".maps")
    names = {
        sym.name
        for sym in elf.get_section_by_name(".symtab").iter_symbols()
        if sym["st_shndx"] == index
    }
    assert names == EXPECTED_MAPS


@pytest.mark.parametrize("name", [".BTF", ".BTF.ext"])
def test_btf_sections_present(elf, name):
    section = elf.get_section_by_name(name)
    assert section is not None, f"{name} missing: CO-RE needs it (build with -g)"
    (magic,) = struct.unpack_from("=H", section.data())  # -target bpf: host order
    assert magic == 0xEB9F


def test_hot_path_has_no_printk(elf):
    code = elf.get_section_by_name("xdp").data()
    helpers = {
        imm
        for opcode, regs, _off, imm in struct.iter_unpack("=BBhi", code)
        if opcode == BPF_CALL and regs >> 4 == 0  # src_reg 0: a helper call
    }
    assert helpers, "the program calls no helper at all?"
    assert not helpers & PRINTK_HELPERS


BPF_ATOMIC_DW = 0xDB  # BPF_STX | BPF_ATOMIC | BPF_DW
BPF_CMPXCHG = 0xF1  # BPF_CMPXCHG | BPF_FETCH


@pytest.mark.parametrize("section", ["xdp", "tc"])
def test_the_limiter_uses_64_bit_compare_and_swap_only(elf, section):
    # Built at clang's default CPU (v1): 64-bit atomics are there, 32-bit ones need alu32.
    # The limiter moves a bucket on with cmpxchg and nothing else: no atomic add, no
    # exchange, no 32-bit form (those a v1 build cannot even emit).
    code = elf.get_section_by_name(section).data()
    atomics = [(opcode, imm) for opcode, _regs, _off, imm in struct.iter_unpack("=BBhi", code)
               if opcode & 0xE7 == 0xC3]  # BPF_STX | BPF_ATOMIC, any size
    assert atomics, "no atomic instruction: where is the limiter's compare-and-swap?"
    assert set(atomics) == {(BPF_ATOMIC_DW, BPF_CMPXCHG)}


def test_extension_embeds_the_object_on_disk():
    assert datapath.elf_bytes() == _on_disk(), (
        "the extension's embedded object is stale: run `python3 build.py`"
    )


def test_libbpf_opens_it_without_loading():
    """Opening (not loading) needs no privileges: libbpf sees the program and the maps."""
    with datapath.open_object() as obj:
        assert obj.name == "pingkiller"
        assert set(obj.map_names()) == EXPECTED_MAPS
        assert not obj.loaded

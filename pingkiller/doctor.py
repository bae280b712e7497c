"""``pingkiller doctor``: can this machine run pingkiller? A checklist with a fix per problem.

Checks the kernel (version; BTF only if the object needs relocating), bpffs, the
process's capabilities, libbpf, the embedded BPF object (read with pyelftools), and,
for an interface the user names, whether XDP native (driver) mode is available there.
"""

from __future__ import annotations

import enum
import errno
import io
import platform
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from pingkiller.system import capabilities

if TYPE_CHECKING:
    from pingkiller.store.bpffs import MountNamespace


class Status(enum.StrEnum):
    """How a check came out (its word in ``--json`` output)."""

    OK = "ok"
    WARN = "warn"  # works, but not as well as it could
    FAIL = "fail"  # something needed is missing
    SKIP = "skip"  # not checked


OK, WARN, FAIL, SKIP = Status.OK, Status.WARN, Status.FAIL, Status.SKIP
MIN_KERNEL = (5, 18)  # XDP links (5.9), coarse clock (5.11), bpf_loop (5.17), bpf_xdp_load_bytes (5.18)
MIN_LIBBPF = (1, 0)  # errors as -errno, bpf_xdp_query
VMLINUX_BTF = Path("/sys/kernel/btf/vmlinux")
_BTF_EXT_MAGIC = 0xEB9F
_LABELS = {OK: "[ ok ]", WARN: "[warn]", FAIL: "[FAIL]", SKIP: "[skip]"}


@dataclass(frozen=True)
class Check:
    """One line of the checklist; ``fix`` says what to do when the status is fail or warn."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{_LABELS[self.status]} {self.name}: {self.detail}"
        return f"{text} - fix: {self.fix}" if self.fix else text



@dataclass(frozen=True)
class ObjectReport:
    """What a BPF ELF object holds, as pyelftools reads it."""

    sections: list[str]
    programs: dict[str, str]  # program (function) name -> section
    maps: list[str]
    license: str
    has_btf: bool
    has_btf_ext: bool
    core_relocations: int
    machine: str = field(default="")



def _core_relocations(btf_ext: bytes, little_endian: bool) -> int:
    """CO-RE relocation records in a .BTF.ext section (0 if it has no CO-RE part)."""
    order = "<" if little_endian else ">"
    if len(btf_ext) < 24:
        return 0
    magic, _version, _flags, header_len = struct.unpack_from(f"{order}HBBI", btf_ext)
    if magic != _BTF_EXT_MAGIC or header_len < 32:
        return 0
    core_off, core_len = struct.unpack_from(f"{order}II", btf_ext, 24)
    data = btf_ext[header_len + core_off : header_len + core_off + core_len]
    if len(data) < 4:
        return 0
    (record_size,) = struct.unpack_from(f"{order}I", data)
    total, at = 0, 4
    while at + 8 <= len(data):
        _name_off, count = struct.unpack_from(f"{order}II", data, at)
        total += count
        at += 8 + count * record_size
    return total


def inspect_object(elf: bytes) -> ObjectReport:
    """Sections, programs, maps, license and BTF of a BPF ELF object."""
    reader = ELFFile(io.BytesIO(elf))
    sections = [s.name for s in reader.iter_sections() if s.name]
    programs: dict[str, str] = {}
    maps: list[str] = []
    symbols = reader.get_section_by_name(".symtab")
    if isinstance(symbols, SymbolTableSection):
        for symbol in symbols.iter_symbols():
            index = symbol["st_shndx"]
            if not isinstance(index, int) or not symbol.name:
                continue
            section = reader.get_section(index).name
            if symbol["st_info"]["type"] == "STT_FUNC" and section != ".text":
                programs[symbol.name] = section
            elif symbol["st_info"]["type"] == "STT_OBJECT" and section == ".maps":
                maps.append(symbol.name)
    license_section = reader.get_section_by_name("license")
    license_text = license_section.data().split(b"\0", 1)[0].decode() if license_section else ""
    btf_ext = reader.get_section_by_name(".BTF.ext")
    relocations = _core_relocations(btf_ext.data(), reader.little_endian) if btf_ext else 0
    return ObjectReport(
        sections=sections,
        programs=programs,
        maps=sorted(maps),
        license=license_text,
        has_btf=reader.get_section_by_name(".BTF") is not None,
        has_btf_ext=btf_ext is not None,
        core_relocations=relocations,
        machine=str(reader["e_machine"]),
    )


def check_kernel(release: str | None = None) -> Check:
    """The kernel must have XDP links (5.9), the coarse clock (5.11), bpf_loop (5.17) and
    bpf_xdp_load_bytes (5.18): the last two walk deep VLAN tag stacks."""
    release = release or platform.release()
    match = re.match(r"(\d+)\.(\d+)", release)
    if not match:
        return Check("kernel", WARN, f"cannot read the version from {release!r}")
    version = (int(match.group(1)), int(match.group(2)))
    if version < MIN_KERNEL:
        return Check("kernel", FAIL,
                     f"{release} is too old (needs >= 5.18: XDP links, bpf_loop, bpf_xdp_load_bytes)",
                     "boot a kernel >= 5.18 (see docs/troubleshooting.md)")
    return Check("kernel", OK, f"{release} (pingkiller needs >= 5.18)")


def check_btf(core_relocations: int, path: Path = VMLINUX_BTF) -> Check:
    """Kernel BTF: needed at load only to relocate CO-RE accesses (never to build).

    pingkiller's object uses UAPI types only, so it has no relocation and runs on kernels
    built without CONFIG_DEBUG_INFO_BTF; an object with relocations needs it.
    """
    present = path.is_file()
    where = f"{path} ({path.stat().st_size // 1024} KiB)" if present else f"{path} absent"
    if core_relocations == 0:
        return Check("kernel BTF", OK, f"not needed (the object has no CO-RE relocations); {where}")
    if present:
        return Check("kernel BTF", OK, f"{where}, for {core_relocations} CO-RE relocations")
    return Check("kernel BTF", FAIL, f"{where}; the object has {core_relocations} CO-RE relocations",
                 "use a kernel built with CONFIG_DEBUG_INFO_BTF=y")


def check_bpffs(mounts: str | None = None, pin_root: Path | None = None,
                namespace: MountNamespace | None = None) -> Check:
    """bpffs must be mounted where pingkiller pins (PINGKILLER_PIN_ROOT or /sys/fs/bpf),
    or mountable there by the first attach: /sys/fs/bpf in the host's mount namespace,
    as the writers decide it (``namespace``: their answer, asked when not given)."""
    from pingkiller.store import bpffs
    from pingkiller.store.layout import default_root

    pin_root = pin_root or default_root()
    points = bpffs.mount_points(mounts)
    covering = [p for p in points if pin_root == Path(p) or Path(p) in pin_root.parents]
    if covering:
        return Check("bpffs", OK, f"mounted at {max(covering, key=len)} (pins under {pin_root})")
    if bpffs.BPFFS not in pin_root.parents:
        return Check("bpffs", FAIL, f"pins go to {pin_root}, which is on no bpffs mount",
                     "point PINGKILLER_PIN_ROOT into a bpffs mount")
    if points:  # bpffs elsewhere; /sys/fs/bpf is not one
        return Check("bpffs", FAIL, f"mounted at {', '.join(points)} but pins go to {pin_root}",
                     "point PINGKILLER_PIN_ROOT into a bpffs mount")
    namespace = namespace or bpffs.this_mount_namespace()
    if namespace.hosts:
        return Check("bpffs", OK, f"not mounted yet: the first attach mounts it at {bpffs.BPFFS} "
                                  f"(root only, mode 0700), in this mount namespace, "
                                  f"{namespace.evidence}")
    return Check("bpffs", FAIL, f"not mounted, and this mount namespace, {namespace.evidence}, "
                                "would lose a mount made here",
                 "run in the host's mount namespace (nsenter --net=/run/netns/NS pingkiller ...)")


def check_capabilities(cap_eff: int | None = None) -> Check:
    """What attach needs: CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON (CAP_SYS_ADMIN covers two)."""
    caps = capabilities.effective() if cap_eff is None else cap_eff
    held = capabilities.held(caps)
    detail = ", ".join(held) if held else "none of " + ", ".join(capabilities.CAPABILITIES)
    lacking = capabilities.missing(caps, load=True)
    if lacking:
        return Check("capabilities", FAIL, f"{detail}; attach lacks {', '.join(lacking)}",
                     "run as root (sudo), or grant CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON")
    return Check("capabilities", OK, detail)


def check_libbpf() -> Check:
    """The libbpf the extension is linked with must be 1.0 or newer."""
    from pingkiller.bpf._libbpf import lib

    version = (int(lib.libbpf_major_version()), int(lib.libbpf_minor_version()))
    text = f"{version[0]}.{version[1]}"
    if version < MIN_LIBBPF:
        return Check("libbpf", FAIL, f"{text} is too old (needs >= 1.0)",
                     "install libbpf >= 1.0 (Debian 12: apt-get install libbpf-dev) and rebuild "
                     "with `make build`")
    return Check("libbpf", OK, text)


def check_object(report: ObjectReport) -> Check:
    """The embedded object must hold an XDP program, a GPL-compatible license and BTF."""
    summary = (f"{len(report.programs)} program(s) {', '.join(report.programs.values())}, "
               f"{len(report.maps)} maps, license {report.license or '?'}, "
               f"{'.BTF' if report.has_btf else 'no .BTF'}, "
               f"{'.BTF.ext' if report.has_btf_ext else 'no .BTF.ext'}, "
               f"{report.core_relocations} CO-RE relocations")
    if "xdp" not in report.programs.values() or not report.license or not report.has_btf:
        return Check("BPF object", FAIL, summary, "rebuild it with `make build`")
    return Check("BPF object", OK, summary)


def check_xdp_native(ifname: str) -> Check:
    """Attach the (pass-everything) data path in native mode to ``ifname`` and detach again."""
    from pingkiller import abi
    from pingkiller.bpf import BpfError, NotSupportedError, XdpLink, XdpMode, xdp_query
    from pingkiller.datapath import program as datapath
    from pingkiller.model.errors import PermissionDenied, PingkillerError
    from pingkiller.system.interfaces import interface_index

    name = f"XDP native mode on {ifname}"
    try:
        capabilities.require()
    except PermissionDenied:
        return Check(name, SKIP, "needs the capabilities above")
    try:
        ifindex = interface_index(ifname)
    except PingkillerError as err:
        return Check(name, FAIL, str(err).split(": ")[0], "list interfaces with `ip link`")
    state = xdp_query(ifindex)
    if state.attached_ids:
        return Check(name, SKIP, f"{ifname} already carries XDP program "
                     f"{state.attached_ids[0]} ({state.mode.value} mode); not disturbed")
    with datapath.load() as obj:
        try:
            with XdpLink.attach(obj.programs[abi.PROGRAM_NAME], ifindex, XdpMode.NATIVE) as link:
                mode = link.mode
                link.detach()
        except NotSupportedError:
            return Check(name, WARN, "not supported by this driver: generic mode will be used "
                         "(slower)", f"nothing to do, or `pingkiller attach {ifname} --mode generic`")
        except BpfError as err:
            return Check(name, FAIL, str(err), "see docs/troubleshooting.md")
    return Check(name, OK, f"available ({mode.value} mode in effect while tested)")


def check_tcx() -> Check:
    """Whether the kernel has tcx hooks (Linux 6.6): link-based tc programs, several per
    hook, which the tc entry points of the object attach to. Asks loopback's ingress."""
    from pingkiller.bpf import BpfError, TcDirection, tcx_query

    try:
        tcx_query(1, TcDirection.INGRESS)
    except BpfError as err:
        if err.errno in (errno.EPERM, errno.EACCES):
            return Check("tcx", SKIP, "needs the capabilities above")
        if err.errno == errno.EINVAL:
            return Check("tcx", WARN, "not available (needs Linux 6.6): --hook tc attaches a "
                         "filter on the clsact qdisc instead (not link-based)",
                         "nothing to do; see docs/troubleshooting.md (tc hook)")
        return Check("tcx", FAIL, str(err), "see docs/troubleshooting.md")
    return Check("tcx", OK, "available: tc ingress and egress hooks with several programs each")


def run(interface: str | None = None) -> tuple[list[Check], ObjectReport]:
    """Every check, in order; the XDP mode is tried only on ``interface`` when given."""
    from pingkiller.datapath.program import elf_bytes

    report = inspect_object(elf_bytes())
    checks = [check_kernel(), check_btf(report.core_relocations), check_bpffs(),
              check_capabilities(), check_libbpf(), check_object(report), check_tcx()]
    if interface is None:
        checks.append(Check("XDP native mode", SKIP, "name an interface with --interface IF to "
                                                     "try it (attaches and detaches at once)"))
    else:
        checks.append(check_xdp_native(interface))
    return checks, report


def healthy(checks: list[Check]) -> bool:
    """No needed thing is missing."""
    return all(check.status != FAIL for check in checks)

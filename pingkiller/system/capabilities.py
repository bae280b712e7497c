"""The privileges pingkiller needs: Linux capabilities (from this process's CapEff),
access to the pins, and what a refusal by the kernel means.

CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON, as it does in the kernel.
"""

from __future__ import annotations

import errno
from pathlib import Path

from pingkiller.model.errors import PermissionDenied

CAPABILITIES = {"CAP_NET_ADMIN": 12, "CAP_SYS_ADMIN": 21, "CAP_PERFMON": 38, "CAP_BPF": 39}


def proc_status(pid: int | str = "self") -> dict[str, list[str]]:
    """The fields of /proc/PID/status, each split into words."""
    fields: dict[str, list[str]] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.split()
    return fields


def effective() -> int:
    """CapEff of this process (a bit per capability)."""
    return int(proc_status().get("CapEff", ["0"])[0], 16)


def held(caps: int) -> list[str]:
    """Names of the capabilities above that ``caps`` holds."""
    return [name for name, bit in CAPABILITIES.items() if caps & (1 << bit)]


def missing(caps: int, *, load: bool, write: bool = True) -> list[str]:
    """What ``caps`` lacks to change the pins (and, with ``load``, to load the XDP program:
    the verifier needs CAP_PERFMON for it); with ``write=False``, to read them.

    Reading needs CAP_BPF only: kernels before 5.19 refuse every bpf() call without it
    while kernel.unprivileged_bpf_disabled is set (Debian's and Ubuntu's default).
    """
    names = set(held(caps))
    admin = "CAP_SYS_ADMIN" in names
    lacking = [] if "CAP_BPF" in names or admin else ["CAP_BPF"]
    if not write:
        return lacking
    if "CAP_NET_ADMIN" not in names:
        lacking.append("CAP_NET_ADMIN")
    if load and not ("CAP_PERFMON" in names or admin):
        lacking.append("CAP_PERFMON")
    return lacking


def seccomp_filtered() -> bool:
    """Whether a seccomp filter applies to this process (as in most containers): one may
    refuse bpf() with EPERM whatever the capabilities."""
    return proc_status().get("Seccomp", ["0"])[0] == "2"


NEEDS_ROOT = "needs root (CAP_BPF + CAP_NET_ADMIN): run it with sudo"
NEEDS_ROOT_TO_READ = "needs root (CAP_BPF): run it with sudo"
SECCOMP_REFUSED = (
    "the kernel refused bpf() (EPERM) although this process has CAP_BPF, and a seccomp "
    "filter applies to it: a container runtime's default seccomp profile may allow bpf() "
    "only with CAP_SYS_ADMIN; run it with seccomp unconfined (docs/operations.md)"
)


def require(*, write: bool = True, load: bool = False) -> None:
    """Raise PermissionDenied unless this process holds what changing pingkiller's pins
    needs (CAP_BPF + CAP_NET_ADMIN; with ``load``, also CAP_PERFMON, which the verifier
    needs to load the program), or with ``write=False``, what reading them needs (CAP_BPF).
    Access to the pins themselves is the store's to check."""
    lacking = missing(effective(), load=load, write=write)
    if not write and lacking:
        raise PermissionDenied(NEEDS_ROOT_TO_READ)
    if lacking == ["CAP_PERFMON"]:
        raise PermissionDenied(f"{NEEDS_ROOT} (loading its program also needs CAP_PERFMON)")
    if lacking:
        raise PermissionDenied(NEEDS_ROOT)


def seccomp_refused(err: OSError) -> bool:
    """Whether a seccomp filter is the likely cause of an EPERM from bpf() (a BpfError):
    the capabilities are there."""
    held_all = not missing(effective(), load=False, write=False)
    return err.errno == errno.EPERM and held_all and seccomp_filtered()


def refused(err: OSError, needs: str) -> PermissionDenied:
    """What to say when bpf() refuses to open pins with EPERM or EACCES."""
    return PermissionDenied(SECCOMP_REFUSED if seccomp_refused(err)
                            else f"reading pingkiller's pins {needs}")

"""The Linux capabilities pingkiller needs, read from this process's CapEff.

CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON, as it does in the kernel.
"""

from __future__ import annotations

from pathlib import Path

CAPABILITIES = {"CAP_NET_ADMIN": 12, "CAP_SYS_ADMIN": 21, "CAP_PERFMON": 38, "CAP_BPF": 39}


def effective() -> int:
    """CapEff of this process (a bit per capability)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


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
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Seccomp:"):
            return line.split()[1] == "2"
    return False

"""The checks a writer makes of the pin root before it trusts it (pure Python, no root)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pingkiller.model.errors import PermissionDenied
from pingkiller.store import bpffs, root


def test_bpffs_is_told_from_other_file_systems(tmp_path: Path) -> None:
    assert bpffs.filesystem_type(Path("/proc")) == 0x9FA0  # PROC_SUPER_MAGIC
    assert bpffs.filesystem_type(tmp_path / "missing") is None
    with pytest.raises(PermissionDenied, match=r"is not on bpffs \(.* type 0x[0-9a-f]+\)"):
        root.check_on_bpffs(tmp_path, tmp_path / "pins")
    root.check_on_bpffs(tmp_path / "missing", tmp_path / "pins")  # unknown: mkdir reports it


# /proc/self/mountinfo as seen on the host (PID 1 out of sight) and under `ip netns exec`
HOST_MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
45 27 254:0 /run/netns /run/netns rw,relatime shared:1 - ext4 /dev/vda rw
"""
NETNS_EXEC_MOUNTINFO = """\
52 51 254:0 / / rw,relatime - ext4 /dev/vda rw
54 52 0:21 / /proc rw,relatime - proc proc rw
74 52 254:0 /run/netns /run/netns rw,relatime master:1 - ext4 /dev/vda rw
55 52 0:41 / /sys rw,relatime - sysfs pk-ns1 rw
"""


def fake_process(tmp_path: Path, pid: str, *, name: str, parent: int, same_as: Path | None) -> Path:
    """/proc/PID with a status and, where ``same_as`` is given, ns/mnt (else unreadable)."""
    process = tmp_path / pid
    (process / "ns").mkdir(parents=True)
    (process / "status").write_text(f"Name:\t{name}\nPPid:\t{parent}\n")
    if same_as is not None:
        (process / "ns" / "mnt").symlink_to(same_as)
    return process


def test_the_hosts_mount_namespace_is_told_without_pid_1(tmp_path: Path) -> None:
    own = tmp_path / "own-ns"
    own.touch()
    other = tmp_path / "other-ns"
    other.touch()
    hidden = (fake_process(tmp_path, "2", name="bash", parent=1, same_as=None),
              fake_process(tmp_path, "1", name="init", parent=0, same_as=None))

    def decide(processes: tuple[Path, ...], mountinfo: str) -> bpffs.MountNamespace:
        return bpffs.this_mount_namespace(own, processes, mountinfo)

    # Nothing to compare with (a platform's PID 1, no kthreadd in sight): the mounts decide,
    # and only a sign of a private namespace refuses.
    assert decide(hidden, HOST_MOUNTINFO).hosts
    refused = decide(hidden, NETNS_EXEC_MOUNTINFO)
    assert not refused.hosts and "a private sysfs named 'pk-ns1'" in refused.evidence
    # The kernel's threads are in the initial namespace: they decide where /proc shows them.
    kthreadd = fake_process(tmp_path / "k", "2", name="kthreadd", parent=0, same_as=own)
    assert decide((kthreadd, *hidden), NETNS_EXEC_MOUNTINFO).hosts
    elsewhere = fake_process(tmp_path / "e", "2", name="kthreadd", parent=0, same_as=other)
    answer = decide((elsewhere, *hidden), HOST_MOUNTINFO)
    assert not answer.hosts and "the kernel's threads live in another" in answer.evidence
    # PID 1 where it can be read and kthreadd cannot.
    init = fake_process(tmp_path / "i", "1", name="systemd", parent=0, same_as=other)
    assert not decide((hidden[0], init), HOST_MOUNTINFO).hosts


def test_the_initial_mount_namespace_is_known_by_its_inode() -> None:
    own = Path("/proc/self/ns/mnt")
    if os.stat(own).st_ino != bpffs.INIT_MOUNT_NS_INODE:
        pytest.skip("this process is not in the initial mount namespace of a Linux 6.x kernel")
    assert bpffs.this_mount_namespace(own, (), NETNS_EXEC_MOUNTINFO).hosts


def test_a_private_mount_refusal_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bpffs, "mount_points", lambda: [])
    monkeypatch.setattr(bpffs, "this_mount_namespace",
                        lambda: bpffs.MountNamespace(False, "which is not the host's (test)"))
    monkeypatch.setenv("PINGKILLER_PIN_ROOT", "/sys/fs/bpf/pktest-unit")
    with pytest.raises(PermissionDenied) as caught:
        root.ensure_root(Path("/sys/fs/bpf/pktest-unit"))
    message = str(caught.value)
    assert message.startswith("/sys/fs/bpf is not mounted in this mount namespace, which is not "
                              "the host's (test): pins made here would vanish")
    assert "nsenter --net=/run/netns/NS" in message and "mount -t bpf -o mode=0700" in message


def test_entries_of_the_root_must_be_real_private_directories(tmp_path: Path) -> None:
    (tmp_path / "eth0").mkdir(mode=0o700)
    (tmp_path / "=del-1-eth1").mkdir(mode=0o700)
    root.check_entries(tmp_path)
    (tmp_path / "=tmp-2-eth2").symlink_to(tmp_path / "eth0")
    with pytest.raises(PermissionDenied, match=r"=tmp-2-eth2 in the pin root is a symlink"):
        root.check_entries(tmp_path)
    (tmp_path / "=tmp-2-eth2").unlink()
    (tmp_path / "eth0").chmod(0o720)
    with pytest.raises(PermissionDenied, match=r"eth0 in the pin root is writable by others"):
        root.check_entries(tmp_path)
    (tmp_path / "eth0").chmod(0o700)
    (tmp_path / "stray").touch()
    with pytest.raises(PermissionDenied, match="is not a directory"):
        root.check_entries(tmp_path)


def test_a_symlinked_root_is_named_as_such(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "root").symlink_to(real)
    with pytest.raises(PermissionDenied, match="is a symlink"):
        root.check_owned(tmp_path / "root")
    root.check_owned(real)
    assert os.geteuid() == real.stat().st_uid

"""The checks a writer makes of the pin root before it trusts it (pure Python, no root)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pingkiller import pins
from pingkiller.errors import PermissionDenied


def test_bpffs_is_told_from_other_file_systems(tmp_path: Path) -> None:
    assert pins.filesystem_type(Path("/proc")) == 0x9FA0  # PROC_SUPER_MAGIC
    assert pins.filesystem_type(tmp_path / "missing") is None
    with pytest.raises(PermissionDenied, match=r"is not on bpffs \(.* type 0x[0-9a-f]+\)"):
        pins.check_on_bpffs(tmp_path, tmp_path / "pins")
    pins.check_on_bpffs(tmp_path / "missing", tmp_path / "pins")  # unknown: mkdir reports it


def test_bpffs_is_mounted_only_in_the_hosts_mount_namespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = Path("/proc/self/ns/mnt")
    monkeypatch.setattr(pins, "_INIT_MOUNT_NS", own)
    pins._refuse_private_mount()  # the host's (PID 1's) namespace: mounting is fine
    other = tmp_path / "other-ns"
    other.touch()
    monkeypatch.setattr(pins, "_INIT_MOUNT_NS", other)
    with pytest.raises(PermissionDenied, match="which is not the host's") as caught:
        pins._refuse_private_mount()
    assert "pins made here would vanish" in str(caught.value)
    assert "nsenter --net=/run/netns/NS" in str(caught.value)
    monkeypatch.setattr(pins, "_INIT_MOUNT_NS", tmp_path / "unreadable")
    with pytest.raises(PermissionDenied, match="which may not be the host's"):
        pins._refuse_private_mount()


def test_entries_of_the_root_must_be_real_private_directories(tmp_path: Path) -> None:
    (tmp_path / "eth0").mkdir(mode=0o700)
    (tmp_path / "=del-1-eth1").mkdir(mode=0o700)
    pins.check_entries(tmp_path)
    (tmp_path / "=tmp-2-eth2").symlink_to(tmp_path / "eth0")
    with pytest.raises(PermissionDenied, match=r"=tmp-2-eth2 in the pin root is a symlink"):
        pins.check_entries(tmp_path)
    (tmp_path / "=tmp-2-eth2").unlink()
    (tmp_path / "eth0").chmod(0o720)
    with pytest.raises(PermissionDenied, match=r"eth0 in the pin root is writable by others"):
        pins.check_entries(tmp_path)
    (tmp_path / "eth0").chmod(0o700)
    (tmp_path / "stray").touch()
    with pytest.raises(PermissionDenied, match="is not a directory"):
        pins.check_entries(tmp_path)


def test_a_symlinked_root_is_named_as_such(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "root").symlink_to(real)
    with pytest.raises(PermissionDenied, match="is a symlink"):
        pins.check_owned(tmp_path / "root")
    pins.check_owned(real)
    assert os.geteuid() == real.stat().st_uid

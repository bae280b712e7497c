"""A machine nobody prepared, and local users root must not trust: bpffs mounted root-only
by mount(2), no program found on PATH, no lock in /tmp, no symlink followed, and a link
detached behind pingkiller's back named for what happened.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import CLI, one_line, pk, pk_ok
from test_hostile_input import as_nobody, nobody_view

import pingkiller
from pingkiller.demo import sandbox as sandbox_module
from pingkiller.demo.sandbox import Sandbox
from pingkiller.model.errors import LockTimeout

pytestmark = pytest.mark.root

TRAPPED = ("ip", "ping", "nsenter", "sleep", "mount", "tc", "bpftool")


@pytest.fixture
def trap_path(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An environment whose PATH starts with a directory of programs named like the ones
    pingkiller runs, each of which leaves a mark and fails: a local user's planted tools."""
    traps, marks = tmp_path / "bin", tmp_path / "marks"
    traps.mkdir()
    marks.mkdir()
    for name in TRAPPED:
        trap = traps / name
        trap.write_text(f"#!/bin/sh\ntouch {marks}/{name}\nexit 1\n")
        trap.chmod(0o755)
    return {**os.environ, "PATH": f"{traps}:{os.environ['PATH']}"}, marks


def in_private_mounts(script: str, env: dict[str, str] | None = None,
                      ) -> subprocess.CompletedProcess[str]:
    """``sh -c SCRIPT`` in a mount namespace of its own (nothing it mounts reaches the host)."""
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, timeout=60, env=env)


UNMOUNT_BPFFS = 'while [ "$(stat -f -c %T /sys/fs/bpf)" = bpf_fs ]; do umount /sys/fs/bpf; done'


def test_bpffs_is_mounted_root_only_by_mount2_not_by_a_program_on_path(
    trap_path: tuple[dict[str, str], Path]
) -> None:
    """A writer that finds no bpffs mounts it 0700 itself (bpffs adds the sticky bit); a
    `mount` on PATH never runs.
    (The host-namespace decision is forced: this runs in a private mount namespace, so
    that the host's bpffs stays mounted.)"""
    env, marks = trap_path
    env = {k: v for k, v in env.items() if k != "PINGKILLER_PIN_ROOT"}
    writer = textwrap.dedent("""
        from pingkiller.store import bpffs, layout, root
        bpffs.this_mount_namespace = lambda: bpffs.MountNamespace(True, "forced by the test")
        print(root.ensure_root(layout.default_root()))
    """)
    result = in_private_mounts(
        f"{UNMOUNT_BPFFS} && {sys.executable} -c '{writer}' && stat -f -c %T /sys/fs/bpf "
        "&& stat -c '%a %u' /sys/fs/bpf /sys/fs/bpf/pingkiller", env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:4] == ["/sys/fs/bpf/pingkiller", "bpf_fs", "1700 0", "700 0"]
    assert list(marks.iterdir()) == []


def test_the_hosts_namespace_is_told_without_pid_1() -> None:
    """Where PID 1 is out of sight, the kernel's threads or the initial namespace's fixed
    inode still say this is the host's mount namespace; a private one is still refused."""
    from pingkiller.store import bpffs

    assert bpffs.this_mount_namespace(init_processes=()).hosts  # no PID 1, no kthreadd
    decision = in_private_mounts(f"{sys.executable} -c 'from pingkiller.store import bpffs; "
                                 "print(bpffs.this_mount_namespace())'")
    assert "hosts=False" in decision.stdout, decision.stdout + decision.stderr


def test_a_user_facing_a_root_only_bpffs_is_told_it_needs_root(pin_root: Path,
                                                                sandbox: Sandbox) -> None:
    """systemd and bpftool mount bpffs 0700: a user with the capabilities but not root
    gets the one "needs root" line naming the closed directory, not "Permission denied"."""
    ifname = sandbox.add_peer().host_ifname
    with nobody_view() as view:
        for verb, needs in ((["status"], "needs root (CAP_BPF)"),
                            (["stats", ifname], "needs root (CAP_BPF)"),
                            (["attach", ifname], "needs root (CAP_BPF + CAP_NET_ADMIN)"),
                            (["block", ifname, "198.19.3.4"], "needs root (CAP_BPF + CAP_NET_ADMIN)")):
            command = as_nobody([*CLI, *verb], view, caps=",+bpf,+net_admin,+perfmon")
            script = (f"{UNMOUNT_BPFFS} && mount -t bpf -o mode=0700 bpf /sys/fs/bpf && "
                      f"exec \"$@\"")
            result = subprocess.run(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                 *command], capture_output=True, text=True, timeout=60)
            assert result.returncode == 1, (verb, result.stderr)
            line = one_line(result)
            assert needs in line and "/sys/fs/bpf is closed to this user" in line, line


def test_no_program_is_found_on_path(trap_path: tuple[dict[str, str], Path]) -> None:
    """The demo runs ip, ping, nsenter and sleep as root: from /usr/sbin and /usr/bin,
    never from a directory a user put first on PATH."""
    env, marks = trap_path
    result = subprocess.run([*CLI, "demo", "--duration", "3", "--json"], capture_output=True,
                            text=True, timeout=90, env=env)
    assert result.returncode == 0, result.stderr + result.stdout
    assert json.loads(result.stdout)["ok"] is True
    assert list(marks.iterdir()) == []


def test_the_sandbox_lock_is_root_only_and_a_busy_one_names_its_holder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lock = sandbox_module.SUBNET_LOCK
    with Sandbox(tag=f"{os.getpid() % 10000}L") as box:
        box.add_peer()
    info = lock.parent.lstat()
    assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700
    assert info.st_uid == 0 and stat.S_IMODE(lock.lstat().st_mode) == 0o600
    holder = subprocess.Popen(["flock", str(lock), "sleep", "30"])
    try:
        time.sleep(0.3)
        monkeypatch.setattr(sandbox_module, "SUBNET_LOCK_TIMEOUT", 0.5)
        start = time.monotonic()
        with pytest.raises(LockTimeout) as caught, Sandbox(tag=f"{os.getpid() % 10000}M") as box:
            box.add_peer()
        assert time.monotonic() - start < 5
        assert f"pid {holder.pid} (flock {lock} sleep 30)" in str(caught.value)
        assert f"has held the sandbox lock {lock} for over 0.5 s" in str(caught.value)
    finally:
        holder.kill()
        holder.wait()


def test_a_symlink_planted_at_the_lock_is_not_followed(tmp_path: Path) -> None:
    lock = sandbox_module.SUBNET_LOCK
    target = tmp_path / "victim"
    lock.parent.mkdir(mode=0o700, exist_ok=True)
    lock.unlink(missing_ok=True)
    lock.symlink_to(target)
    try:
        with pytest.raises(pingkiller.PingkillerError, match="cannot open the lock file"), \
                Sandbox(tag=f"{os.getpid() % 10000}S") as box:
            box.add_peer()
        assert not target.exists()
    finally:
        lock.unlink()


def test_export_replaces_a_planted_symlink_and_writes_0600(pin_root: Path, sandbox: Sandbox,
                                                            tmp_path: Path) -> None:
    ifname = sandbox.add_peer().host_ifname
    pk_ok("attach", ifname, "--block", "198.19.7.7")
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o600)
    planted = tmp_path / "policy.toml"
    planted.symlink_to(victim)
    pk_ok("export", "-o", str(planted))
    assert victim.read_text() == "precious\n"  # not followed
    assert not planted.is_symlink() and "198.19.7.7" in planted.read_text()
    assert stat.S_IMODE(planted.stat().st_mode) == 0o600
    fresh = tmp_path / "fresh.toml"
    pk_ok("export", "-o", str(fresh))
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.toml", "policy.toml", "victim"]
    refused = pk("export", "-o", str(tmp_path))
    assert refused.returncode == 2 and "is a directory" in one_line(refused)


@pytest.mark.parametrize("hook", [[], ["--hook", "tc", "--direction", "in"]],
                         ids=["xdp", "tc"])
def test_a_link_detached_behind_our_back_is_named_so(pin_root: Path, sandbox: Sandbox,
                                                     hook: list[str]) -> None:
    ifname = sandbox.add_peer().host_ifname
    pk_ok("attach", ifname, *hook)
    entry = ifname if not hook else f"{ifname},tc-in"
    subprocess.run(["bpftool", "link", "detach", "pinned", str(pin_root / entry / "link")],
                   check=True, capture_output=True)
    (shown,) = json.loads(pk_ok("status", ifname, "--json"))
    assert shown["stale"] is True and shown["state"] == "detached", shown
    assert shown["problem"].startswith(f"the link was detached, but {ifname} is still here")
    assert "interface is gone" not in pk_ok("status", ifname)
    pk_ok("detach", ifname)

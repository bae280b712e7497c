"""Fixtures of the end-to-end tier: a sandbox peer, attached or not; other builds of
pingkiller (built once a session: each takes seconds)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from helpers import pk_ok
from variants import ABI_2_RELEASE, ABI_4_RELEASE, ROOT, make_release, make_variant

from pingkiller import abi
from pingkiller.demo.sandbox import Peer, Sandbox


@pytest.fixture
def peer(sandbox: Sandbox, pin_root: Path) -> Peer:
    """A sandbox peer, its host end not attached."""
    return sandbox.add_peer()


@pytest.fixture
def blocked_peer(peer: Peer) -> Peer:
    """A sandbox peer whose host end pingkiller holds (by the CLI), blocking the peer."""
    pk_ok("attach", peer.host_ifname, "--block", peer.peer_v4)
    return peer


def _release(tmp_path_factory: pytest.TempPathFactory, commit: str, abi_version: int) -> list[str]:
    """The release of ``commit`` (its ABI ``abi_version``), built from this repository's history."""
    known = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{commit}^{{commit}}"],
                           capture_output=True)
    if known.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"needs the repository's history (commit {commit[:7]}): "
                        "clone without --depth")
        pytest.skip(f"needs the repository's history (commit {commit[:7]}, the ABI "
                    f"{abi_version} release): not a git clone, or a shallow one")
    return make_release(tmp_path_factory.mktemp(f"abi{abi_version}"), commit)


@pytest.fixture(scope="session")
def abi_2(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The ABI 2 release, built from this repository's history."""
    return _release(tmp_path_factory, ABI_2_RELEASE, 2)


@pytest.fixture(scope="session")
def abi_4(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The ABI 4 release (the last before the limit action)."""
    return _release(tmp_path_factory, ABI_4_RELEASE, 4)


@pytest.fixture(scope="session")
def older(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A build of another program with this ABI: what ran before a package upgrade."""
    return make_variant(tmp_path_factory.mktemp("older"))


@pytest.fixture(scope="session")
def newer_abi(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A build whose ABI version is one past this one's (it adopts this one's maps)."""
    return make_variant(tmp_path_factory.mktemp("newer"), abi_version=abi.ABI_VERSION + 1)

"""Fixtures of the end-to-end tier: a sandbox peer, attached or not."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import pk_ok

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

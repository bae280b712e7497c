"""`stats --watch` redraws in place on a terminal and prints a block per interval when
piped (issue #14, item 6)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time

import pytest
from helpers import CLI

from pingkiller.demo.sandbox import Peer

pytestmark = pytest.mark.root

CLEAR_SCREEN = "\x1b[2J"
CURSOR_UP = "\x1b[1A"  # rich Live moves back over the block it drew, line by line



def watch_on_a_terminal(ifname: str, seconds: float) -> str:
    """What `stats IFNAME --watch --interval 0.2` writes to a terminal in ``seconds``."""
    leader, follower = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "40"}
    proc = subprocess.Popen([*CLI, "stats", ifname, "--watch", "--interval", "0.2"],
                            stdin=follower, stdout=follower, stderr=subprocess.PIPE, env=env)
    os.close(follower)
    out = b""
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.1)
            if ready:
                try:
                    out += os.read(leader, 65536)
                except OSError:  # the child closed the terminal
                    break
    finally:
        proc.kill()
        proc.wait()
        os.close(leader)
    return out.decode(errors="replace")


def test_watch_redraws_in_place_on_a_terminal(blocked_peer: Peer) -> None:
    out = watch_on_a_terminal(blocked_peer.host_ifname, 2.5)
    assert "drop_block" in out and "pps" in out, out
    assert CLEAR_SCREEN not in out
    assert out.count(CURSOR_UP) >= 10, out  # redrawn several times over its own lines


def test_watch_prints_a_block_per_interval_when_piped(blocked_peer: Peer) -> None:
    ifname = blocked_peer.host_ifname
    proc = subprocess.Popen([*CLI, "stats", ifname, "--watch", "--interval", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
    finally:
        proc.terminate()  # SIGTERM: a clean stop, like Ctrl-C
        out, err = proc.communicate(timeout=10)
    assert "Traceback" not in err, err
    assert "\x1b[" not in out  # no escape codes in a pipe
    blocks = [block for block in out.split("\n\n") if block.strip()]
    assert len(blocks) >= 3, out
    for block in blocks:
        lines = block.strip("\n").splitlines()
        assert lines[0] == ifname and "pps" in lines[1], block

"""status and block of a real attachment import neither rich nor typer (issue #22): the
status table is drawn as plain text. `make bench` section 5 times them."""

from __future__ import annotations

import subprocess
import sys

from helpers import pk_ok

from pingkiller.demo.sandbox import Peer

HEAVY = ("rich", "typer", "click", "pingkiller.declarative", "pingkiller.exporter")
CHILD = """
import sys
from pingkiller.cli import main
try:
    main(sys.argv[1:])
except SystemExit as done:
    assert not done.code, done.code
heavy = [name for name in {heavy!r} if name in sys.modules]
sys.stdout.write("heavy: " + ",".join(heavy) + "\\n")
"""


def run_child(*argv: str) -> str:
    result = subprocess.run([sys.executable, "-c", CHILD.format(heavy=HEAVY), *argv],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_status_of_an_attachment_draws_its_tables_without_rich(blocked_peer: Peer) -> None:
    out = run_child("status", blocked_peer.host_ifname)
    lines = out.splitlines()
    assert lines[-1] == "heavy: "
    header = next(line for line in lines if line.startswith("reason "))
    assert header.split() == ["reason", "┃", "packets", "┃", "bytes"]
    assert lines[lines.index(header) + 1].replace("━", "").replace("╇", "") == ""
    rule = next(line for line in lines if line.startswith(blocked_peer.peer_v4))
    assert rule.split() == [blocked_peer.peer_v4, "│", "block", "│", "0"]


def test_block_on_an_attachment_imports_no_heavy_module(blocked_peer: Peer) -> None:
    out = run_child("block", blocked_peer.host_ifname, "198.18.9.77")
    assert out.splitlines()[-1] == "heavy: "
    assert "198.18.9.77" in pk_ok("status", blocked_peer.host_ifname)

"""A handle knows when its attachment has ended, whatever ended it, and a client's inputs
and errors behave as the library documents (the defects a client of issue #22 met)."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import pingkiller
from pingkiller.demo.sandbox import IP, Sandbox, run

pytestmark = pytest.mark.root


def test_an_ipaddress_object_in_the_mapped_form_blocks_the_ipv4_peer(
    pin_root: Path, sandbox: Sandbox
) -> None:
    peer = sandbox.add_peer()
    mapped = ipaddress.IPv6Address(f"::ffff:{peer.peer_v4}")
    with pingkiller.attach(peer.host_ifname, block=[mapped]) as attachment:
        assert [rule.address for rule in attachment.rules()] == [peer.peer_v4]
        assert peer.ping(peer.host_v4, count=2, wait=0.4) == 0
        (diff,) = pingkiller.sync_rules(peer.host_ifname, block=[])  # a sync by objects too
        assert [rule.address for rule in diff.removed] == [peer.peer_v4]
        assert peer.ping(peer.host_v4) == 1


def test_watch_stats_ends_when_the_interface_is_deleted(pin_root: Path, sandbox: Sandbox) -> None:
    peer = sandbox.add_peer()
    pingkiller.attach(peer.host_ifname).close()
    with pingkiller.open(peer.host_ifname, read_only=True) as view:
        samples = view.watch_stats(0.2)
        next(samples)
        run([IP, "link", "del", peer.host_ifname])
        deleted = time.monotonic()
        with pytest.raises(pingkiller.AttachmentEnded, match="filters nothing any more"):
            for _ in samples:
                assert time.monotonic() - deleted < 5, "still watching a deleted interface"
        with pytest.raises(pingkiller.AttachmentEnded):
            view.stats()  # every read says so, not frozen counters
        assert view.info().stale  # what status shows still works
    pingkiller.detach(peer.host_ifname)


def test_events_end_when_the_link_is_detached_behind_our_back(pin_root: Path,
                                                              sandbox: Sandbox) -> None:
    peer = sandbox.add_peer()
    pingkiller.attach(peer.host_ifname).close()
    with pingkiller.open(peer.host_ifname, read_only=True) as view, \
            view.follow_events(timeout=10) as feed:
        subprocess.run(["bpftool", "link", "detach", "pinned",
                        str(pin_root / peer.host_ifname / "link")], check=True)
        start = time.monotonic()
        with pytest.raises(pingkiller.AttachmentEnded, match="the link was detached"):
            for _ in feed:
                pass
        assert time.monotonic() - start < 5
    pingkiller.detach(peer.host_ifname)


def test_a_handle_opened_before_a_replace_reads_the_new_rules(pin_root: Path,
                                                              sandbox: Sandbox) -> None:
    peer = sandbox.add_peer()
    pingkiller.attach(peer.host_ifname, block=["198.19.1.1"]).close()
    with pingkiller.open(peer.host_ifname) as writer, \
            pingkiller.open(peer.host_ifname, read_only=True) as reader:
        subprocess.run([sys.executable, "-m", "pingkiller", "attach", peer.host_ifname,
                        "--replace", "--block", "198.19.2.2"], check=True, capture_output=True)
        assert [rule.address for rule in reader.rules()] == ["198.19.2.2"]
        writer.block(["198.19.3.3"])  # goes to the maps the running program uses
        with pingkiller.open(peer.host_ifname, read_only=True) as fresh:
            assert [rule.address for rule in fresh.rules()] == ["198.19.2.2", "198.19.3.3"]
        pingkiller.detach(peer.host_ifname)
        with pytest.raises(pingkiller.AttachmentEnded, match="was detached"):
            reader.rules()
    pingkiller.attach(peer.host_ifname).close()
    view = pingkiller.open(peer.host_ifname, read_only=True)
    pingkiller.detach(peer.host_ifname)
    pingkiller.attach(peer.host_ifname, block=["198.19.4.4"]).close()
    with view, pytest.raises(pingkiller.AttachmentEnded, match="attached again"):
        view.rules()  # another attachment took its place: not this handle's to read
    pingkiller.detach(peer.host_ifname)


def test_a_closed_handle_raises_a_pingkiller_error(pin_root: Path, sandbox: Sandbox) -> None:
    peer = sandbox.add_peer()
    attachment = pingkiller.attach(peer.host_ifname, persist=False)
    attachment.close()
    for read in (attachment.stats, attachment.rules, lambda: attachment.block(["198.19.5.5"])):
        with pytest.raises(pingkiller.PingkillerError, match="was closed"):
            read()


def test_an_unclosed_private_attachment_warns_before_it_detaches(sandbox: Sandbox) -> None:
    peer = sandbox.add_peer()
    script = textwrap.dedent(f"""
        import gc, pingkiller
        pingkiller.attach({peer.host_ifname!r}, persist=False)  # not kept, not closed
        gc.collect()
    """)
    done = subprocess.run([sys.executable, "-W", "error::ResourceWarning", "-c", script],
                          capture_output=True, text=True, timeout=60)
    assert "ResourceWarning: unclosed private attachment" in done.stderr, done.stderr
    shown = run([IP, "link", "show", peer.host_ifname]).stdout
    assert "xdp" not in shown  # detached all the same

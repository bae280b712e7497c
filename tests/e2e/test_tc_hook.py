"""`--hook tc` end to end (issue #15): the real CLI attaches at tcx ingress and egress on
sandbox veths, beside another tool's XDP program and other tc programs, next to its own
XDP attachment; real pings and TCP show what is stopped, status what runs where, and
detach what goes. kill -9 at every state-changing call of a tc attach leaves a state
status explains and detach cleans."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest
from helpers import (
    CLI,
    attach_foreign_program,
    limited,
    one_line,
    our_filters,
    pins_left,
    pk,
    pk_json,
    pk_ok,
    tc_ids,
    xdp_ids,
)

import pingkiller
from pingkiller.bpf import Object, TcDirection, TcxLink, tcx_supported
from pingkiller.demo.sandbox import PING, Peer, Sandbox
from pingkiller.hooks.clsact import CLSACT_PRIORITY
from pingkiller.system.interfaces import interface_index
from tests.kernel.test_tcx_link import _compile
from tests.kernel.toys import seen

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not tcx_supported(), reason="this kernel has no tcx (Linux 6.6+)"),
]


def host_pings(destination: str, count: int = 2) -> int:
    """Echo replies the host gets for its own pings to ``destination``."""
    result = subprocess.run([PING, "-n", "-c", str(count), "-i", "0.2", "-W", "1", destination],
                            capture_output=True, text=True)
    return result.stdout.count("bytes from")


def echo_requests_seen(peer: Peer) -> int:
    """ICMP echo requests the peer's namespace has received (its IPv4 SNMP counter)."""
    lines = peer.run(["cat", "/proc/net/snmp"]).stdout.splitlines()
    names, values = [line.split() for line in lines if line.startswith("Icmp:")][:2]
    return int(values[names.index("InEchos")])


def tcp_works(peer: Peer) -> bool:
    """A TCP connection from the host to a listener in the peer's namespace."""
    server = subprocess.Popen(["ip", "netns", "exec", peer.netns, "python3", "-c",
                               "import socket; s = socket.socket(); "
                               "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
                               f"s.bind(('{peer.peer_v4}', 7777)); s.listen(); print(flush=True); "
                               "c, _ = s.accept(); c.sendall(b'ok')"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        server.stdout.readline()  # listening
        with socket.create_connection((peer.peer_v4, 7777), timeout=3) as conn:
            return conn.recv(2) == b"ok"
    except OSError:
        return False
    finally:
        server.kill()
        server.wait()


@pytest.fixture(scope="module")
def toy_elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another tool's tc programs: ``pass_on`` counts what it sees and hands it on."""
    return _compile(tmp_path_factory.mktemp("foreign-tc"))


def test_tc_ingress_kills_pings_beside_a_foreign_xdp_program(
    pin_root: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    peer = sandbox.add_peer()
    ifname = peer.host_ifname
    foreign = attach_foreign_program(ifname, tmp_path)
    refused = pk("attach", ifname, "--block", peer.peer_v4)
    assert refused.returncode == 1 and "--hook tc" in one_line(refused)
    pk_ok("attach", ifname, "--hook", "tc", "--block", peer.peer_v4)
    assert xdp_ids(ifname) == [foreign]  # theirs stays
    assert peer.ping(peer.host_v4) == 0
    assert peer.ping(peer.host_v6) == 1  # only the listed address is blocked
    (info,) = pk_json("status", ifname)
    assert (info["hook"], info["direction"], info["mode"]) == ("tc", "in", "tcx")
    assert info["stats"]["packets"]["drop_block"] >= 1
    pk_ok("detach", ifname)
    assert xdp_ids(ifname) == [foreign]
    assert peer.ping(peer.host_v4) == 1


def test_tc_egress_stops_the_host_s_own_pings_to_a_blocked_address(
    pin_root: Path, sandbox: Sandbox
) -> None:
    blocked, other = sandbox.add_peer(), sandbox.add_peer()
    for peer in (blocked, other):
        pk_ok("attach", peer.host_ifname, "--hook", "tc", "--direction", "out",
              "--block", blocked.peer_v4)
    before = echo_requests_seen(blocked)
    assert host_pings(blocked.peer_v4) == 0
    assert echo_requests_seen(blocked) == before  # not one request left the host
    assert host_pings(other.peer_v4) == 2
    assert tcp_works(blocked)  # only pings are stopped
    (info,) = pk_json("status", blocked.host_ifname)
    assert info["direction"] == "out" and info["stats"]["packets"]["drop_block"] >= 2
    pk_ok("detach", blocked.host_ifname)
    assert host_pings(blocked.peer_v4) == 2


def test_both_hooks_on_one_interface_and_detach_of_each(pin_root: Path, sandbox: Sandbox) -> None:
    peer = sandbox.add_peer()
    ifname = peer.host_ifname
    pk_ok("attach", ifname, "--block", peer.peer_v4)
    pk_ok("attach", ifname, "--hook", "tc", "--direction", "both", "--block", peer.peer_v4)
    shown = pk_json("status", ifname)
    assert [(i["hook"], i["direction"]) for i in shown] == [("xdp", "in"), ("tc", "in"),
                                                          ("tc", "out")]
    assert len({i["program_id"] for i in shown}) == 3
    assert sorted(p.name for p in pin_root.iterdir()) == [ifname, f"{ifname},tc-in",
                                                          f"{ifname},tc-out"]
    assert peer.ping(peer.host_v4) == 0
    assert host_pings(peer.peer_v4) == 0  # stopped at tc egress
    by_hook = {(i["hook"], i["direction"]): i["stats"]["packets"] for i in pk_json("status", ifname)}
    assert by_hook[("xdp", "in")]["drop_block"] >= 1  # XDP runs first: tc in never sees them
    assert by_hook[("tc", "out")]["drop_block"] >= 2

    changed = pk_json("block", ifname, "192.0.2.7")
    assert [a["changed"] for a in changed["attachments"]] == [1, 1, 1]
    only_tc = pk_json("unblock", ifname, "192.0.2.7", "--hook", "tc")
    assert [(a["hook"], a["direction"]) for a in only_tc["attachments"]] == [("tc", "in"),
                                                                           ("tc", "out")]

    ambiguous = pk("stats", ifname)
    assert ambiguous.returncode == 2 and "--hook" in one_line(ambiguous)
    assert pk_json("stats", ifname, "--hook", "xdp")["packets"]["drop_block"] >= 1

    done = pk_json("detach", ifname, "--hook", "tc", "--direction", "out")
    assert [(d["hook"], d["direction"]) for d in done] == [("tc", "out")]
    requests = echo_requests_seen(peer)
    host_pings(peer.peer_v4)  # requests leave now (XDP still drops the replies: from a blocked address)
    assert echo_requests_seen(peer) == requests + 2 and peer.ping(peer.host_v4) == 0
    assert tc_ids(ifname, TcDirection.EGRESS) == []
    pk_ok("detach", ifname, "--hook", "xdp")
    assert xdp_ids(ifname) == []
    assert peer.ping(peer.host_v4) == 0  # tc in stops them now
    missing = pk("detach", ifname, "--hook", "xdp")
    assert missing.returncode == 2 and "tc in" in one_line(missing)
    pk_ok("detach", ifname)
    assert tc_ids(ifname, TcDirection.INGRESS) == [] and pins_left(pin_root) == []
    assert peer.ping(peer.host_v4) == 1


def test_foreign_tc_programs_before_and_after_keep_running_in_order(
    pin_root: Path, sandbox: Sandbox, toy_elf: Path
) -> None:
    peer = sandbox.add_peer()
    ifname = peer.host_ifname
    ifindex = interface_index(ifname)
    with Object.from_file(toy_elf) as before, Object.from_file(toy_elf) as after:
        before.load()
        after.load()
        first = TcxLink.attach(before.programs["pass_on"], ifindex, TcDirection.INGRESS)
        pk_ok("attach", ifname, "--hook", "tc", "--block", peer.peer_v4)
        last = TcxLink.attach(after.programs["pass_on"], ifindex, TcDirection.INGRESS)
        with first, last:
            (info,) = pk_json("status", ifname)
            ours = info["program_id"]
            theirs = [first.info().prog_id, last.info().prog_id]
            assert info["chain"] == [theirs[0], ours, theirs[1]]
            human = pk_ok("status", ifname, "--max-rules", "0")
            assert f"program 2 of 3 on its hook (others: {theirs[0]}, {theirs[1]})" in human
            seen_before = seen(before)
            assert peer.ping(peer.host_v4, count=3) == 0
            assert seen(before) - seen_before >= 3  # it runs first, and sees them
            after_blocked = seen(after)
            assert peer.ping(peer.host_v6) == 1
            assert seen(after) > after_blocked  # what pingkiller passes goes on to it
            pk_ok("detach", ifname)
            assert tc_ids(ifname, TcDirection.INGRESS) == theirs  # both left running
            assert peer.ping(peer.host_v4) == 1


def test_tc_attach_errors_are_one_line(pin_root: Path, sandbox: Sandbox) -> None:
    ifname = sandbox.add_peer().host_ifname
    cases = {
        ("attach", ifname, "--direction", "out"): "--hook tc",
        ("attach", ifname, "--hook", "tc", "--mode", "native"): "is a mode of the XDP hook",
        ("attach", "pkmissing0", "--hook", "tc"): "not found",
        ("detach", ifname, "--hook", "tc"): "no pingkiller attachment",
    }
    for args, words in cases.items():
        result = pk(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert words in one_line(result), args
    pk_ok("attach", ifname, "--hook", "tc", "--direction", "both")
    again = pk("attach", ifname, "--hook", "tc", "--direction", "out")
    assert again.returncode == 1 and "already holds" in one_line(again)
    assert len(pingkiller.points(ifname)) == 2  # the refused attach changed nothing


# -- the clsact fallback (kernels before 6.6), asked for with --mode clsact


def tc_text(*args: str) -> str:
    return subprocess.run(["tc", *args], capture_output=True, text=True, check=True).stdout


def test_clsact_fallback_filters_and_leaves_other_filters_alone(
    pin_root: Path, sandbox: Sandbox
) -> None:
    peer = sandbox.add_peer()
    ifname = peer.host_ifname
    pk_ok("attach", ifname, "--hook", "tc", "--mode", "clsact", "--block", peer.peer_v4)
    (info,) = pk_json("status", ifname)
    assert (info["hook"], info["mode"], info["link_id"]) == ("tc", "clsact", 0)
    assert our_filters(ifname) == [info["program_id"]]
    assert "tc (clsact, not link-based) in" in pk_ok("status", ifname)
    assert peer.ping(peer.host_v4) == 0 and peer.ping(peer.host_v6) == 1
    # --replace swaps the filter's program in place; a rule change reaches the new one
    replaced = pk_json("attach", ifname, "--hook", "tc", "--mode", "clsact", "--replace",
                       "--block", peer.peer_v4)
    assert our_filters(ifname) == [replaced["program_id"]] != [info["program_id"]]
    pk_ok("block", ifname, peer.peer_v6)
    assert peer.ping(peer.host_v6) == 0
    # another tool's filter on the same qdisc stays, and so does the qdisc
    tc_text("filter", "add", "dev", ifname, "ingress", "prio", "9", "protocol", "ip", "u32",
            "match", "u32", "0", "0")
    pk_ok("detach", ifname)
    assert our_filters(ifname) == [] and pins_left(pin_root) == []
    assert "u32" in tc_text("filter", "show", "dev", ifname, "ingress")
    assert "clsact" in tc_text("qdisc", "show", "dev", ifname)
    assert peer.ping(peer.host_v4) == 1
    tc_text("filter", "del", "dev", ifname, "ingress", "prio", "9")
    # alone on the qdisc, pingkiller's detach removes it
    pk_ok("attach", ifname, "--hook", "tc", "--mode", "clsact")
    taken = pk("attach", ifname, "--hook", "tc", "--mode", "tcx", "--replace")
    assert taken.returncode == 2 and "keeps the attach mode (clsact)" in one_line(taken)
    pk_ok("detach", ifname)
    assert "clsact" not in tc_text("qdisc", "show", "dev", ifname)


def test_a_foreign_filter_in_pingkiller_s_place_is_refused_and_kept(
    pin_root: Path, sandbox: Sandbox
) -> None:
    ifname = sandbox.add_peer().host_ifname
    tc_text("qdisc", "add", "dev", ifname, "clsact")
    tc_text("filter", "add", "dev", ifname, "ingress", "prio", str(CLSACT_PRIORITY),
            "protocol", "all", "u32", "match", "u32", "0", "0")
    refused = pk("attach", ifname, "--hook", "tc", "--mode", "clsact")
    assert refused.returncode == 1, refused.stderr
    assert f"prio {CLSACT_PRIORITY}" in one_line(refused)
    assert "u32" in tc_text("filter", "show", "dev", ifname, "ingress")
    assert pins_left(pin_root) == []


def test_a_change_one_attachment_refuses_is_made_to_none(
    pin_root: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    """block/unblock change every attachment of the interface or none: a full table in
    the tc one undoes the change already made to the XDP one, in place and from a file."""
    from pingkiller.abi import MAX_PREFIX_RULES
    from pingkiller.model.enums import RuleAction
    from pingkiller.model.rules import read_rule_file

    peer = sandbox.add_peer()
    ifname = peer.host_ifname
    pk_ok("attach", ifname, "--block", peer.peer_v4)
    pk_ok("attach", ifname, "--hook", "tc", "--block", peer.peer_v4)
    filler = tmp_path / "filler.txt"
    filler.write_text("".join(f"10.{n >> 14}.{(n >> 6) & 255}.{(n & 63) << 2}/30\n"
                              for n in range(MAX_PREFIX_RULES)))
    with pingkiller.open(ifname, hook="tc") as tc:
        tc.set_rules(read_rule_file(filler), RuleAction.BLOCK, atomic=False)

    def counts() -> list[int]:
        return [i["rule_count"] for i in pk_json("status", ifname, "--max-rules", "0")]

    assert counts() == [1, MAX_PREFIX_RULES + 1]
    full = pk("block", ifname, "192.0.2.0/24", "198.51.100.7")
    assert full.returncode == 1 and "rule table full" in one_line(full)
    one_more = tmp_path / "one-more.txt"
    one_more.write_text("192.0.2.0/24\n")
    assert pk("block", ifname, "-f", str(one_more)).returncode == 1
    assert counts() == [1, MAX_PREFIX_RULES + 1]  # the XDP attachment was not changed either
    assert peer.ping(peer.host_v4) == 0
    pk_ok("unblock", ifname, peer.peer_v4)  # removals are all or nothing too, and succeed
    assert counts() == [0, MAX_PREFIX_RULES] and peer.ping(peer.host_v4) == 1


def test_a_policy_file_asks_for_a_clsact_filter_and_export_keeps_it(
    pin_root: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    peer = sandbox.add_peer()
    ifname = peer.host_ifname
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[interfaces.{ifname}]\nhook = "tc"\nmode = "clsact"\n'
                      f'block = ["{peer.peer_v4}"]\n')
    pk_ok("apply", "-f", str(policy))
    (info,) = pk_json("status", ifname)
    assert (info["hook"], info["mode"]) == ("tc", "clsact")
    assert our_filters(ifname) == [info["program_id"]] and peer.ping(peer.host_v4) == 0
    exported = tmp_path / "exported.toml"
    exported.write_text(pk_ok("export"))
    assert 'mode = "clsact"' in exported.read_text()
    assert pk_json("apply", "-f", str(exported), "--dry-run")["changes"] == []
    policy.write_text(f'[interfaces.{ifname}]\nhook = "tc"\nmode = "tcx"\n')
    (change,) = pk_json("apply", "-f", str(policy))["changes"]
    assert change["action"] == "reattach"
    assert our_filters(ifname) == [] and pk_json("status", ifname)[0]["mode"] == "tcx"


def test_a_reader_with_cap_bpf_alone_shows_tc_attachments_as_recorded(
    pin_root: Path, sandbox: Sandbox
) -> None:
    """Querying tcx hooks needs CAP_NET_ADMIN: a reader with CAP_BPF alone cannot see
    that a tcx link runs, so it says so instead of calling the attachment defunct; a
    clsact filter it can see (a netlink dump anyone may read)."""
    peer = sandbox.add_peer()
    ifname = peer.host_ifname
    pk_ok("attach", ifname, "--hook", "tc")
    pk_ok("attach", ifname, "--hook", "tc", "--direction", "out", "--mode", "clsact")

    def shown(caps: list[str]) -> list[tuple[str, str, str | None]]:
        result = subprocess.run(limited(caps, [*CLI, "status", "--json"]), capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return [(i["direction"], i["state"], i["problem"]) for i in json.loads(result.stdout)]

    (tc_in, tc_out) = shown(["bpf"])
    assert tc_in[:2] == ("in", "filtering") and "CAP_NET_ADMIN" in (tc_in[2] or "")
    assert tc_out == ("out", "filtering", None)
    assert shown(["bpf", "net_admin"]) == [("in", "filtering", None), ("out", "filtering", None)]
    pk_ok("detach", ifname, "--hook", "tc", "--direction", "in")
    assert shown(["bpf"])[0][:2] == ("out", "filtering")

"""The limit action with real pings across sandbox veth pairs: a fast peer is answered at
its limit, an allowed one in full, IPv6 sources share a bucket per /64, and an IPv4-mapped
source counts as the IPv4 address.

Tolerance: over the T seconds from a flood's first request to its last (ping's own
``time``), a limit of R a second in bursts of B passes B + R*T requests, give or take 3:
the limiter's clock moves a tick (1/HZ, at most 10 ms) at a time, and ping's time is not
the limiter's."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import pk_json, pk_ok, status

import pingkiller
from pingkiller.demo.sandbox import IP, PING, Peer, Sandbox

pytestmark = pytest.mark.usefixtures("pin_root")

TOLERANCE = 3


def flood_args(peer: Peer, destination: str, *, count: int, interval: float,
               source: str | None = None) -> list[str]:
    family = "-6" if ":" in destination else "-4"
    return peer.exec_args([PING, family, "-n", "-q", "-c", str(count), "-i", str(interval),
                           "-W", "1", *(["-I", source] if source else []), destination])


def answered(output: str) -> tuple[int, int, float]:
    """(sent, answered, seconds from the first request to the last) from ping -q."""
    match = re.search(r"(\d+) packets transmitted, (\d+) received.*time (\d+)ms", output)
    assert match, output
    return int(match.group(1)), int(match.group(2)), int(match.group(3)) / 1000


def flood(peer: Peer, destination: str, *, count: int = 300, interval: float = 0.01,
          source: str | None = None) -> tuple[int, int, float]:
    result = subprocess.run(flood_args(peer, destination, count=count, interval=interval,
                                       source=source),
                            capture_output=True, text=True, timeout=count * interval + 30)
    return answered(result.stdout)


def floods(peer: Peer, destination: str, sources: list[str], *, count: int = 200,
           interval: float = 0.02) -> list[tuple[int, int, float]]:
    """Floods from several of the peer's addresses at once."""
    running = [subprocess.Popen(flood_args(peer, destination, count=count, interval=interval,
                                           source=source), stdout=subprocess.PIPE, text=True)
               for source in sources]
    return [answered(process.communicate(timeout=count * interval + 30)[0])
            for process in running]


def within(passed: int, burst: int, rate: float, seconds: float) -> bool:
    expected = burst + rate * seconds
    return expected - TOLERANCE <= passed <= expected + TOLERANCE


def add_address(peer: Peer, address: str) -> None:
    length = "64" if ":" in address else "24"
    args = [IP, "addr", "add", f"{address}/{length}", "dev", peer.peer_ifname]
    peer.run(args + (["nodad"] if ":" in address else []))


@pytest.mark.parametrize("family", [4, 6])
def test_a_fast_peer_is_answered_at_its_limit(peer: Peer, family: int) -> None:
    ifname = peer.host_ifname
    shown = pk_json("attach", ifname, "--limit", "10/s", "--burst", "10")
    assert shown["policy"]["default"] == "limit"
    assert shown["policy"]["limit"] == {"rate": "10/s", "burst": 10}
    sent, got, seconds = flood(peer, peer.host_v4 if family == 4 else peer.host_v6)
    assert sent == 300 and seconds > 2
    assert within(got, 10, 10, seconds), (got, seconds)
    packets = status(ifname)["stats"]["packets"]
    assert packets["pass_rate"] + packets["drop_rate"] == 300
    assert abs(packets["pass_rate"] - got) <= 1  # a reply may be late past -W
    assert "10/s per source" in pk_ok("status", ifname)


def test_an_allowed_peer_is_not_limited(peer: Peer) -> None:
    allowed = peer.peer_v4.rsplit(".", 1)[0] + ".3"
    add_address(peer, allowed)
    pk_ok("attach", peer.host_ifname, "--limit", "10/s", "--allow", allowed)
    (limited_run, allowed_run) = floods(peer, peer.host_v4, [peer.peer_v4, allowed])
    assert allowed_run[:2] == (200, 200)
    assert within(limited_run[1], 10, 10, limited_run[2]), limited_run


def test_two_addresses_of_a_64_share_a_bucket_unless_told_apart(peer: Peer) -> None:
    second = peer.peer_v6.rsplit(":", 1)[0] + ":3"
    add_address(peer, second)
    pk_ok("attach", peer.host_ifname, "--limit", "10/s", "--burst", "5")
    runs = floods(peer, peer.host_v6, [peer.peer_v6, second], count=150)
    seconds = max(run[2] for run in runs)
    assert within(sum(run[1] for run in runs), 5, 10, seconds), runs

    pk_ok("attach", peer.host_ifname, "--replace", "--limit", "10/s", "--burst", "5",
          "--limit-prefix6", "128")
    runs = floods(peer, peer.host_v6, [peer.peer_v6, second], count=150)
    for run in runs:
        assert within(run[1], 5, 10, run[2]), runs


def test_a_mapped_source_is_limited_as_its_ipv4_address(peer: Peer, tmp_path: Path) -> None:
    """ICMPv6 echo requests from ::ffff:PEER_V4 (sent raw: no stack sends them) are judged
    by PEER_V4's bucket, which its real IPv4 pings spent."""
    ifname = peer.host_ifname
    pk_ok("attach", ifname, "--limit", "1/h", "--burst", "3")
    assert peer.ping(peer.host_v4, count=5, interval=0.05) == 3
    mac = Path(f"/sys/class/net/{ifname}/address").read_text().strip()
    script = tmp_path / "mapped.py"
    script.write_text(
        "from scapy.all import Ether, IPv6, ICMPv6EchoRequest, sendp\n"
        f"sendp(Ether(dst={mac!r}) / IPv6(src='::ffff:{peer.peer_v4}', dst={peer.host_v6!r})"
        f" / ICMPv6EchoRequest(id=7, seq=1), iface={peer.peer_ifname!r}, count=10, verbose=0)\n")
    peer.run([sys.executable, str(script)], timeout=60)
    packets = status(ifname)["stats"]["packets"]
    assert packets["pass_rate"] == 3
    assert packets["drop_rate"] == 2 + 10


def test_limit_options_refuse_what_does_not_fit(peer: Peer) -> None:
    ifname = peer.host_ifname
    cases = {
        ("--default", "drop", "--limit", "10/s"): "--limit makes the default action limit",
        ("--default", "limit"): "--default limit needs a rate",
        ("--burst", "5"): "--burst is the burst of --limit",
        ("--limit", "10/fortnight"): "is not a rate",
        ("--limit", "10/s", "--burst", "0"): "--burst",
        ("--limit-total-burst", "5"): "--limit-total-burst is the burst of --limit-total",
        ("--limit", "1/d", "--burst", "1000000"): "century",
        ("--icmp", "echo,icmpv6:135"): "neighbour discovery",
        ("--icmp", "pong"): "is not an ICMP type",
    }
    for args, message in cases.items():
        result = subprocess.run([sys.executable, "-m", "pingkiller", "attach", ifname, *args],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, (args, result.stderr)
        (line,) = result.stderr.strip().splitlines()
        assert message in line, (args, line)
    assert pk_json("status") == []


def test_icmp_timestamps_can_be_killed_too(peer: Peer, sandbox: Sandbox, tmp_path: Path) -> None:
    """The host answers ICMP timestamp requests (type 13) unless they count as pings."""
    ifname = peer.host_ifname
    script = tmp_path / "timestamp.py"
    script.write_text(
        "import sys\n"
        "from scapy.all import ICMP, IP, sr\n"
        f"answered, _ = sr(IP(dst={peer.host_v4!r}) / ICMP(type=13), timeout=1, verbose=0)\n"
        "sys.exit(0 if answered else 1)\n")
    assert peer.run([sys.executable, str(script)], check=False).returncode == 0
    pk_ok("attach", ifname, "--icmp", "echo,timestamp")
    assert peer.run([sys.executable, str(script)], check=False).returncode == 1
    assert peer.ping(peer.host_v4) == 0
    shown = status(ifname)["policy"]
    assert shown["icmp"] == "echo,timestamp"
    assert shown["icmp_types"] == {"ipv4": [0, 8, 13, 14], "ipv6": [128, 129]}


def test_a_limit_rule_limits_only_its_source(peer: Peer) -> None:
    other = peer.peer_v4.rsplit(".", 1)[0] + ".3"
    add_address(peer, other)
    ifname = peer.host_ifname
    pk_ok("attach", ifname, "--default", "pass")
    done = pk_json("limit", ifname, peer.peer_v4, "--rate", "10/s", "--burst", "10")
    assert done["limit"] == {"rate": "10/s", "burst": 10} and done["changed"] == 1
    limited_run, free_run = floods(peer, peer.host_v4, [peer.peer_v4, other])
    assert free_run[:2] == (200, 200)
    assert within(limited_run[1], 10, 10, limited_run[2]), limited_run
    (rule,) = status(ifname)["rules"]
    assert rule["action"] == "limit" and rule["limit"] == {"rate": "10/s", "burst": 10}
    assert rule["hits"] == 200  # every ping it decided, passed or dropped
    assert "limit 10/s burst 10" in pk_ok("status", ifname)


def test_limit_rules_round_trip_through_export_and_apply(peer: Peer, tmp_path: Path) -> None:
    ifname = peer.host_ifname
    with pingkiller.attach(ifname, pingkiller.Policy(pingkiller.DefaultAction.DROP),
                           allow=["192.0.2.1"]) as attachment:
        assert attachment.limit(["203.0.113.0/24", "2001:db8::/48"], "600/min", 20) == 2
        assert attachment.limit(["198.51.100.7"], pingkiller.Rate(1, "s")) == 1
        shown = {rule.address: rule.limit for rule in attachment.rules()}
    assert shown == {"192.0.2.1": None,
                     "203.0.113.0/24": pingkiller.Limit.of("600/min", 20),
                     "2001:db8::/48": pingkiller.Limit.of("600/min", 20),
                     "198.51.100.7": pingkiller.Limit.of("1/s")}
    exported = pk_ok("export")
    assert "[[interfaces." in exported and 'rate = "600/min"' in exported
    policy = tmp_path / "policy.toml"
    policy.write_text(exported)
    assert pk_json("apply", "-f", str(policy), "--dry-run")["changes"] == []
    # A changed rate is an update of that rule alone.
    policy.write_text(exported.replace('rate = "600/min"', 'rate = "300/min"'))
    (change,) = pk_json("apply", "-f", str(policy))["changes"]
    assert change["action"] == "update" and len(change["add"]) == 2
    assert {rule["limit"]["rate"] for rule in status(ifname)["rules"] if rule["limit"]} == \
        {"300/min", "1/s"}
    pk_ok("unblock", ifname, "203.0.113.0/24")
    assert len(status(ifname)["rules"]) == 3


def test_stats_status_and_metrics_show_the_limiter(peer: Peer) -> None:
    from pingkiller.exporter import PingkillerCollector

    ifname = peer.host_ifname
    pk_ok("attach", ifname, "--limit", "1/h", "--burst", "2", "--limit-buckets", "1024")
    assert peer.ping(peer.host_v4, count=4, interval=0.05, wait=0.5) == 2
    shown = pk_json("stats", ifname)
    assert shown["buckets"] == {"used": 1, "size": 1024, "made": 1, "failed": 0}
    assert shown["packets"]["drop_rate"] == 2 and shown["packets"]["pass_rate"] == 2
    assert "limited sources: 1 of 1024 remembered (1 since attach)" in pk_ok("stats", ifname)
    assert status(ifname)["policy"]["limit_buckets"] == 1024
    samples = {(sample.name, sample.labels.get("reason")): sample.value
               for family in PingkillerCollector().collect() for sample in family.samples
               if sample.labels.get("interface") == ifname}
    assert samples[("pingkiller_limit_buckets", None)] == 1
    assert samples[("pingkiller_limit_buckets_size", None)] == 1024
    assert samples[("pingkiller_limit_buckets_made_total", None)] == 1
    assert samples[("pingkiller_limit_bucket_failures_total", None)] == 0
    assert samples[("pingkiller_packets_total", "drop_rate")] == 2
    # Another bucket count is a new map: set_policy refuses, a replace makes it.
    with pingkiller.open(ifname) as attachment, pytest.raises(pingkiller.InvalidInput,
                                                               match="attach with replace"):
        attachment.set_policy(pingkiller.Policy(pingkiller.DefaultAction.PASS))
    pk_ok("attach", ifname, "--replace", "--limit", "1/h", "--limit-buckets", "2048")
    assert pk_json("stats", ifname)["buckets"]["size"] == 2048


def test_a_new_rate_forgets_what_sources_owed_the_old_one(peer: Peer) -> None:
    """Under 1/min a source that pinged owes a minute; after the policy says 100/s it
    pings again at once (the buckets of the old rate are dropped with it)."""
    ifname = peer.host_ifname
    pk_ok("attach", ifname, "--limit", "1/min", "--burst", "1", "--limit-total", "1/min")
    assert peer.ping(peer.host_v4, count=2, interval=0.05, wait=0.5) == 1
    with pingkiller.open(ifname) as attachment:
        attachment.set_policy(pingkiller.Policy(
            pingkiller.DefaultAction.LIMIT, limit=pingkiller.Limit.of("100/s"),
            limit_total=pingkiller.Limit.of("1000/s")))
    assert peer.ping(peer.host_v4, count=3, interval=0.05, wait=0.5) == 3


def test_a_change_that_fails_half_way_in_place_is_undone(peer: Peer) -> None:
    """Every rate class named, a sync that adds a block rule and then a limit at yet
    another rate fails on the second edit: the first is undone with it."""
    rates = {pingkiller.Limit(pingkiller.Rate(n), 1): [f"10.3.{n // 250}.{n % 250}"]
             for n in range(1, 1024)}
    with pingkiller.attach(peer.host_ifname, pingkiller.Policy(pingkiller.DefaultAction.PASS),
                           limit=rates, persist=False) as attachment:
        before = sorted(attachment.rules())
        wanted = {**rates, pingkiller.Limit.of("7/h"): ["192.0.2.7"]}
        with pytest.raises(pingkiller.RuleTableFull, match="different rates"):
            attachment.sync_rules(block=["198.51.100.1"], limit=wanted, atomic=False)
        assert sorted(attachment.rules()) == before

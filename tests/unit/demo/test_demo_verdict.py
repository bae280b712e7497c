"""The demo's verdict without a kernel: which outcomes make `pingkiller demo` exit 1.

The state is built by hand (pings counted, echo requests the peers' namespaces saw), as
the demo's reader threads and counters would leave it.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from pingkiller.demo.pingers import Pinger
from pingkiller.demo.run import DemoPeer, DemoState
from pingkiller.demo.sandbox import Peer


def pinger(destination: str, sent: int, answered: int) -> Pinger:
    made = Pinger.__new__(Pinger)  # no ping process: only its counts
    made.destination, made.sent, made.answered = destination, sent, answered
    made.family = "ipv6" if ":" in destination else "ipv4"
    return made


def demo_peer(role: str, *, host_answered: int = 0, seen: int = 0) -> DemoPeer:
    index = 2 if role == "blocked" else 3
    peer = Peer(f"pk-1-{index}", f"pk1h{index}", f"pk1p{index}", f"198.18.{index}.1",
                f"198.18.{index}.2", f"fd00:706b:{index}::1", f"fd00:706b:{index}::2")
    answered = 0 if role == "blocked" else 10
    echoes: Any = SimpleNamespace(seen={"ipv4": seen, "ipv6": 0}, total=seen)
    return DemoPeer(
        role, peer, attachment=None,  # type: ignore[arg-type]
        pingers=[pinger(peer.host_v4, 10, answered), pinger(peer.host_v6, 10, answered)],
        host_pingers=[pinger(peer.peer_v4, 10, host_answered or answered),
                      pinger(peer.peer_v6, 10, answered)],
        echoes=echoes,
    )


def state(*peers: DemoPeer) -> DemoState:
    return DemoState(started=0.0, duration=3.0, peers=list(peers))


def test_killed_pings_both_ways_pass() -> None:
    assert state(demo_peer("blocked"), demo_peer("allowed", seen=20)).problems() == []


def test_a_host_request_that_reached_the_blocked_peer_fails_the_demo() -> None:
    problems = state(demo_peer("blocked", seen=1), demo_peer("allowed", seen=20)).problems()
    assert problems == ["1 of the host's echo requests reached the blocked peer: tc egress "
                        "should have stopped them before they left"]


def test_an_answered_host_ping_to_the_blocked_peer_fails_the_demo() -> None:
    (problem,) = state(demo_peer("blocked", host_answered=2), demo_peer("allowed")).problems()
    assert problem.startswith("host ipv4 to the blocked peer: 2 of 10 pings that pingkiller "
                              "should have killed were answered")


def test_lost_host_pings_to_the_allowed_peer_fail_the_demo() -> None:
    (problem,) = state(demo_peer("blocked"), demo_peer("allowed", host_answered=5)).problems()
    assert problem == "host ipv4 to the allowed peer: only 5 of 10 allowed pings were answered"


def limited_peer(answered: int, sent: int = 150, seconds: float = 3.0) -> DemoPeer:
    from pingkiller.demo.run import DEMO_LIMIT

    made = demo_peer("allowed")
    made.role, made.limit = "limited", DEMO_LIMIT
    for each in made.pingers:
        each.sent, each.answered = sent, answered
        each.started, each.ended = 0.0, seconds
    return made


def test_a_limited_peer_answered_at_its_limit_passes() -> None:
    # 10/s in bursts of 10 over 3 s: 40 answered, give or take 3.
    assert state(demo_peer("blocked"), demo_peer("allowed"), limited_peer(40)).problems() == []
    assert state(demo_peer("blocked"), limited_peer(37)).problems() == []


def test_a_limited_peer_answered_too_much_or_too_little_fails_the_demo() -> None:
    (problem, _) = state(limited_peer(150)).problems()
    assert problem == ("limited peer ipv4: 150 of 150 pings answered, not 37-43 (a burst of 10, "
                       "then 10/s)")
    assert len(state(limited_peer(12)).problems()) == 2

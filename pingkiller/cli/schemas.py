"""Every ``--json`` output of the CLI, in one place (docs/cli.md and the man pages
document them): the library returns values, these make them the stable JSON objects."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pingkiller.model.enums import Hook
from pingkiller.model.network import format_network
from pingkiller.model.words import DEFAULT_ACTIONS, EVENT_MODES, RULE_ACTIONS, TIMING_SLOTS

if TYPE_CHECKING:
    from pingkiller.declarative import Plan, Step
    from pingkiller.demo.pingers import Pinger
    from pingkiller.demo.run import DemoPeer, DemoState
    from pingkiller.doctor import Check, ObjectReport
    from pingkiller.model.events import Event, EventSummary, WallClock
    from pingkiller.model.limits import Limit
    from pingkiller.model.point import Point
    from pingkiller.model.policy import Policy
    from pingkiller.model.results import AttachmentInfo, Detached, RuleChange, Upgraded
    from pingkiller.model.rules import Rule
    from pingkiller.model.stats import Stats

Json = dict[str, object]


def policy(value: Policy) -> Json:
    icmp = value.icmp_types
    return {
        "default": DEFAULT_ACTIONS.word(value.default),
        "icmp": str(icmp),
        "icmp_types": {"ipv4": sorted(icmp.v4), "ipv6": sorted(icmp.v6)},
        "all_protocols": value.all_protocols,
        "events": EVENT_MODES.word(value.events),
        "event_rate": value.event_rate,
        "timing": value.timing,
        "limit": limit(value.limit),
        "limit_total": limit(value.limit_total),
        "limit_prefix6": value.limit_prefix6,
        "limit_buckets": value.limit_buckets,
    }


def limit(value: Limit | None) -> Json | None:
    return None if value is None else {"rate": str(value.rate), "burst": value.burst}


def rule(value: Rule) -> Json:
    return {"address": value.address, "action": RULE_ACTIONS.word(value.action),
            "hits": value.hits, "limit": limit(value.limit)}


def attachment(info: AttachmentInfo) -> Json:
    """An object of ``status --json`` (and of ``attach --json``)."""
    return {
        "interface": info.ifname,
        "hook": info.hook.label,
        "direction": info.direction.label,
        "ifindex": info.ifindex,
        "program_id": info.program_id,
        "link_id": info.link_id,
        "mode": info.mode.value,
        "chain": list(info.chain) if info.hook is Hook.TC else None,
        "state": info.state.value,
        "stale": info.stale,
        "problem": info.problem or None,
        "abi_version": info.abi_version,
        "program": info.program or None,
        "outdated": info.outdated,
        "policy": policy(info.policy) if info.policy else None,
        "rule_count": info.rule_count,
        "rules": [rule(each) for each in info.rules],
        "stats": stats(info.stats) if info.stats else None,
        "pin_dir": info.pin_dir,
    }


def stats(value: Stats) -> Json:
    data: Json = {
        "packets": {r.label: c.packets for r, c in value.reasons.items()},
        "bytes": {r.label: c.bytes for r, c in value.reasons.items()},
        "dropped": value.dropped,
        "passed": value.passed,
        "events": {
            "sent": value.events_sent,
            "suppressed": value.events_suppressed,
            "lost": value.events_lost,
        },
        "average_ns": {TIMING_SLOTS.word(slot): value.average_ns(slot)
                       for slot in TIMING_SLOTS.members},
        "buckets": {"used": value.buckets_used, "size": value.buckets_size,
                    "made": value.buckets_made, "failed": value.buckets_failed},
        "kernel_run_time": {
            "run_time_ns": value.run_time_ns,
            "run_count": value.run_count,
            "average_ns": value.average_run_ns,
        },
    }
    if value.per_cpu is not None:
        data["per_cpu"] = [
            {r.label: {"packets": c.packets, "bytes": c.bytes} for r, c in cpu.items()}
            for cpu in value.per_cpu
        ]
    return data


def event(value: Event, clock: WallClock, *, backlog: bool = False) -> Json:
    """A line of ``events --json``: ``time`` by ``clock``, ``backlog`` as given (buffered
    before the reader started)."""
    return {
        "time": clock.iso(value.timestamp_ns),
        "backlog": backlog,
        "timestamp_ns": value.timestamp_ns,
        "ifindex": value.ifindex,
        "length": value.length,
        "verdict": value.verdict,
        "reason": value.reason.label,
        "hook": value.hook.label,
        "direction": value.direction.label,
        "family": value.family,
        "protocol": value.protocol,
        "src": value.src,
        "dst": value.dst,
        "type": value.kind,
        "icmp_type": value.icmp_type,
        "icmp_code": value.icmp_code,
        "icmp_id": value.icmp_id,
        "icmp_seq": value.icmp_seq,
    }


def event_summary(value: EventSummary) -> Json:
    return {"received": value.received, "suppressed": value.suppressed, "lost": value.lost}


def detached(value: Detached) -> Json:
    return {"interface": value.ifname, "hook": value.hook.label,
            "direction": value.direction.label, "was_stale": value.was_stale}


def upgraded(value: Upgraded) -> Json:
    return {"interface": value.ifname, "hook": value.hook.label,
            "direction": value.direction.label, "upgraded": value.upgraded,
            "from_abi": value.from_abi, "to_abi": value.to_abi,
            "from_program": value.from_program or None, "to_program": value.to_program}


def rule_changes(ifname: str, verb: str, requested: int, done: list[RuleChange],
                 limited: Limit | None = None) -> Json:
    """What ``block``, ``allow``, ``limit`` and ``unblock --json`` print."""
    return {"interface": ifname, "action": verb, "requested": requested,
            "limit": limit(limited),
            "changed": sum(item.changed for item in done),
            "rule_count": max(item.rule_count for item in done),
            "attachments": [{"hook": item.hook.label, "direction": item.direction.label,
                             "changed": item.changed, "rule_count": item.rule_count}
                            for item in done]}


def check(value: Check) -> Json:
    return {"name": value.name, "status": value.status.value, "detail": value.detail,
            "fix": value.fix or None}


def object_report(value: ObjectReport) -> Json:
    return {
        "machine": value.machine,
        "sections": value.sections,
        "programs": value.programs,
        "maps": value.maps,
        "license": value.license,
        "btf": value.has_btf,
        "btf_ext": value.has_btf_ext,
        "core_relocations": value.core_relocations,
    }


def demo(state: DemoState) -> Json:
    """``demo --json``: whether it worked (``ok``: no problem and not interrupted), why not,
    each peer's pings both ways and what reached it, and each attachment's counters by
    interface (``stats``: at XDP, ``egress_stats``: at tc egress)."""
    problems = state.problems()
    return {
        "ok": not problems and not state.interrupted,
        "problems": problems,
        "interrupted": state.interrupted,
        "duration_s": round(state.elapsed, 3),
        "peers": [demo_peer(each) for each in state.peers],
        "stats": {name: stats(value) for name, value in state.stats.items()},
        "egress_stats": {name: stats(value) for name, value in state.egress_stats.items()},
        "events_received": state.events_received,
        "average_ns": {TIMING_SLOTS.word(slot): state.average_ns(slot)
                       for slot in TIMING_SLOTS.members},
    }


def demo_peer(value: DemoPeer) -> Json:
    """One peer of ``demo --json``: where it is, its pings both ways, what reached it."""
    peer = value.peer
    return {
        "role": value.role,
        "namespace": peer.netns,
        "interface": peer.host_ifname,
        "addresses": [peer.peer_v4, peer.peer_v6],
        "mode": value.mode.value,
        "limit": limit(value.limit),
        "pings": _pings(value.pingers),
        "host_pings": _pings(value.host_pingers),
        "echo_requests_received": dict(value.echoes.seen) if value.echoes else None,
    }


def _pings(pingers: list[Pinger]) -> dict[str, dict[str, int]]:
    return {p.family: {"sent": p.sent, "answered": p.answered} for p in pingers}


def plan(value: Plan) -> Json:
    """``apply --json`` (the CLI adds ``dry_run``)."""
    return {
        "file": value.source,
        "changes": [step(each) for each in value.steps],
        "unchanged": value.unchanged_interfaces,
        "unchanged_attachments": [point(each) for each in value.unchanged],
    }


def step(value: Step) -> Json:
    return {
        **point(value.point),
        "action": value.action.value,
        "reason": value.reason or None,
        "policy": policy(value.spec.policy) if value.spec else None,
        "mode": value.spec.mode.value if value.spec else None,
        "policy_changes": value.policy_changes,
        "add": [{"address": format_network(network), "action": RULE_ACTIONS.word(action),
                 "limit": limit(value.limit_of(network))}
                for network, action in value.add.items()],
        "remove": [format_network(network) for network in value.remove],
    }


def point(value: Point) -> Json:
    return {"interface": value.ifname, "hook": value.hook.label,
            "direction": value.direction.label}

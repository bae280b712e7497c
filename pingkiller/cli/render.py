"""Human output: an attachment's state, counters and rates, as lines of text."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pingkiller.cli.errors import options
from pingkiller.cli.table import table
from pingkiller.model.enums import Hook, LinkState, Mode, Reason
from pingkiller.model.words import RULE_ACTIONS, TIMING_SLOTS

if TYPE_CHECKING:
    from pingkiller.model.results import AttachmentInfo
    from pingkiller.model.rules import Rule
    from pingkiller.model.stats import Stats

CLSACT_PRIORITY = 0x504B  # pingkiller.hooks.clsact's, shown by status


def attached_how(info: AttachmentInfo) -> str:
    """How the program is held, in words: the XDP mode, a tcx link, or a clsact filter."""
    if info.hook is Hook.XDP:
        return f"{info.mode.value} mode"
    return "clsact filter, not link-based" if info.mode is Mode.CLSACT else "tcx link"


def position(info: AttachmentInfo) -> str:
    """Where a tc attachment runs in its hook's chain, in words."""
    where, total = info.position, len(info.chain)
    if not total:
        return "its place among the hook's programs not known"
    if not where:
        return f"not in its hook's chain of {total}"
    others = [str(i) for i in info.chain if i != info.program_id]
    if not others:
        return "the only program of its hook"
    return f"program {where} of {total} on its hook (others: {', '.join(others)})"


# What status adds to the note of an attachment that still filters but not where its
# pins say ({where}: the CLI arguments that name it).
_STATE_NOTE = {LinkState.MOVED: " (`pingkiller detach {where}` removes it)",
               LinkState.ELSEWHERE: ": manage it from that namespace"}


def status_lines(info: AttachmentInfo) -> list[str]:
    """The head lines status prints of one attachment (rich markup)."""
    point, lines = info.point, []
    if info.stale:
        lines.append(f"{point.label}: STALE - {info.problem}; "
                     f"`pingkiller detach {options(point)}` cleans it")
    elif point.hook is Hook.XDP:
        lines.append(f"{info.ifname} (ifindex {info.ifindex}): xdp, program "
                     f"{info.program_id}, link {info.link_id}, {info.mode.value} mode")
    elif info.mode is Mode.CLSACT:
        lines.append(f"{info.ifname} (ifindex {info.ifindex}): tc (clsact, not "
                     f"link-based) {point.direction.label}, program {info.program_id}, "
                     f"priority {CLSACT_PRIORITY}, {position(info)}")
    else:
        lines.append(f"{info.ifname} (ifindex {info.ifindex}): tc "
                     f"{point.direction.label}, program {info.program_id}, link "
                     f"{info.link_id}, tcx link, {position(info)}")
    if not info.stale:
        if info.problem:
            extra = _STATE_NOTE.get(info.state, "").format(where=options(point))
            lines.append(f"  note: {info.problem}{extra}; it still filters")
        if info.outdated:
            running = info.program[:12] or "unrecorded"
            lines.append(f"  outdated: it runs program {running} (ABI {info.abi_version}), not "
                         f"the installed one: `pingkiller upgrade {options(point)}`")
    if info.policy is not None:
        from pingkiller.model.words import EVENT_MODES

        policy = info.policy
        lines.append(f"  policy: {policy.describe()}")
        lines.append(f"  events: {EVENT_MODES.word(policy.events)} (at most {policy.event_rate}"
                     f"/s per CPU), timing {'on' if policy.timing else 'off'}, rules: "
                     f"{info.rule_count}")
    return lines


def rule_action_text(rule: Rule) -> str:
    """``block``, ``allow``, ``limit 10/s burst 10``."""
    word = RULE_ACTIONS.word(rule.action)
    return f"{word} {rule.limit}" if rule.limit is not None else word


def status_text(info: AttachmentInfo, rules: list[Rule]) -> list[str]:
    """What status shows of one attachment and the ``rules`` it lists."""
    lines = status_lines(info)
    if info.stats is not None:
        lines += counter_lines(info.stats, None)
    if rules:
        lines += table([("rule", False), ("action", False), ("hits", True)],
                       ([rule.address, rule_action_text(rule), str(rule.hits)]
                        for rule in rules))
    if info.rule_count > len(rules):
        lines.append(f"  ... and {info.rule_count - len(rules)} more rules (--max-rules N lists "
                     "more, --json all)")
    return lines


def counter_lines(stats: Stats, rates: dict[Reason, float] | None) -> list[str]:
    """The counters table (with packets per second when ``rates``) and its summary line."""
    columns = [("reason", False), ("packets", True), ("bytes", True)]
    rows = [[reason.label, str(counter.packets), str(counter.bytes)]
            for reason, counter in stats.reasons.items()]
    if rates is not None:
        columns.append(("pps", True))
        for row, reason in zip(rows, stats.reasons, strict=True):
            row.append(f"{rates[reason]:.1f}")
    lines = [*table(columns, rows),
             f"  dropped {stats.dropped}, passed {stats.passed}; events sent "
             f"{stats.events_sent}, suppressed {stats.events_suppressed}, lost "
             f"{stats.events_lost}"]
    if stats.buckets_made or stats.buckets_used:
        failed = f", {stats.buckets_failed} could not be" if stats.buckets_failed else ""
        lines.append(f"  limited sources: {stats.buckets_used} of {stats.buckets_size} "
                     f"remembered ({stats.buckets_made} since attach{failed})")
    return lines


def timing_lines(stats: Stats) -> list[str]:
    lines = []
    for verdict in TIMING_SLOTS.members:
        average = stats.average_ns(verdict)
        if average is not None:
            lines.append(f"  average processing time ({TIMING_SLOTS.word(verdict)}): "
                         f"{average:.0f} ns")
    run = stats.average_run_ns
    lines.append(
        f"  kernel run time: {run:.0f} ns per packet over {stats.run_count} runs" if run
        else "  kernel run time: n/a (use --watch, or `sysctl kernel.bpf_stats_enabled=1`)"
    )
    return lines


def stats_lines(ifname: str, current: Stats, rates: dict[Reason, float] | None) -> list[str]:
    """What `stats` shows of one snapshot."""
    lines = [ifname, *counter_lines(current, rates), *timing_lines(current)]
    if current.per_cpu is not None:
        for cpu, counters in enumerate(current.per_cpu):
            busy = ", ".join(f"{r.label} {c.packets}" for r, c in counters.items() if c.packets)
            lines.append(f"  cpu {cpu}: {busy or 'no packets'}")
    return lines

"""attach."""

from __future__ import annotations

from typing import Annotated

from pingkiller.cli import schemas
from pingkiller.cli.command import verb
from pingkiller.cli.options import choice, complete_interfaces, interface, json_flag, opt
from pingkiller.cli.output import echo, print_json
from pingkiller.cli.render import attached_how, position
from pingkiller.model.enums import DefaultAction, RuleAction
from pingkiller.model.errors import InvalidInput
from pingkiller.model.icmp import HELP as ICMP_HELP
from pingkiller.model.limits import Limit
from pingkiller.model.policy import (
    DEFAULT_BUCKETS,
    DEFAULT_EVENT_RATE,
    DEFAULT_PREFIX6,
    MAX_BUCKETS,
    MIN_BUCKETS,
)
from pingkiller.model.words import DEFAULT_ACTIONS, DIRECTIONS, EVENT_MODES, HOOKS, MODES


@verb()
def attach(
    ifname: Annotated[str, interface(complete_interfaces)],
    block: Annotated[
        list[str] | None,
        opt("--block", "-b", help="Drop pings from/to ADDR (repeatable).", metavar="ADDR"),
    ] = None,
    allow: Annotated[
        list[str] | None,
        opt("--allow", "-a", help="Let pings from/to ADDR pass (repeatable).", metavar="ADDR"),
    ] = None,
    default: Annotated[
        str | None,
        opt(help="Pings no rule decides: drop, pass, or limit (with --limit). [default: drop "
                 "without --block, pass with it, limit with --limit]", show_default=False,
            click_type=choice(DEFAULT_ACTIONS.words)),
    ] = None,
    limit: Annotated[
        str | None,
        opt(help="Pings no rule decides pass at most RATE per source (10/s, 600/min, 1/h; "
                 "IPv6 sources per /64), the rest are dropped (drop_rate).", metavar="RATE"),
    ] = None,
    burst: Annotated[
        int | None,
        opt(help="With --limit: bursts of up to N pings pass at once. [default: RATE's "
                 "per-second figure, at least 1]", min=1, metavar="N", show_default=False),
    ] = None,
    limit_total: Annotated[
        str | None,
        opt(help="All limited pings together at most RATE (drop_rate_total): what bounds a "
                 "flood from ever-new, spoofed sources.", metavar="RATE"),
    ] = None,
    limit_total_burst: Annotated[
        int | None,
        opt(help="With --limit-total: its burst. [default: its per-second figure]", min=1,
            metavar="N", show_default=False),
    ] = None,
    limit_prefix6: Annotated[
        int, opt(help="IPv6 sources share a limit per /N: one holder has a whole /64.",
                 min=1, max=128, metavar="N")
    ] = DEFAULT_PREFIX6,
    limit_buckets: Annotated[
        int, opt(help="Limited sources remembered at once; the least recently seen are "
                      "forgotten first (and start again with a full burst).",
                 min=MIN_BUCKETS, max=MAX_BUCKETS, metavar="N")
    ] = DEFAULT_BUCKETS,
    icmp: Annotated[
        str, opt(help="What counts as a ping: " + ICMP_HELP + ". IPv6 neighbour discovery "
                      "always passes.", metavar="TYPES")
    ] = "echo",
    all_protocols: Annotated[
        bool, opt("--all-protocols", help="Block rules drop every protocol, not only pings.")
    ] = False,
    mode: Annotated[
        str, opt(help="XDP: native or generic; tc: tcx (a link) or clsact (a filter on the "
                      "clsact qdisc, for kernels before 6.6). auto: the kernel's choice for XDP, "
                      "tcx where the kernel has it for tc.", click_type=choice(MODES.words))
    ] = "auto",
    events: Annotated[
        str, opt(help="Which packets send an event to `pingkiller events`.",
                 click_type=choice(EVENT_MODES.words))
    ] = "drops",
    event_rate: Annotated[
        int, opt(help="Events per second per CPU at most (0 = unlimited).", min=0, metavar="N")
    ] = DEFAULT_EVENT_RATE,
    timing: Annotated[
        bool, opt("--timing", help="Measure per-verdict processing time (costs 2 clock reads).")
    ] = False,
    replace: Annotated[
        bool, opt("--replace", help="Swap program and policy of an existing attachment "
                                    "atomically.")
    ] = False,
    hook: Annotated[
        str, opt(help="xdp: the driver's hook (fastest; one program per interface; arriving "
                      "packets only). tc: a tcx link that runs beside other programs, after "
                      "them, in --direction.", click_type=choice(HOOKS.words))
    ] = "xdp",
    direction: Annotated[
        str, opt(help="tc only: in (arriving), out (leaving: the host's own pings), or both "
                      "(two attachments).", click_type=choice([*DIRECTIONS.words, "both"]))
    ] = "in",
    as_json: Annotated[bool, json_flag("status")] = False,
) -> None:
    """Attach pingkiller to IFACE; it stays attached after this command exits.

    With no --block every ping is dropped; with --block only pings from or to the
    listed addresses are. --hook tc runs it beside other programs (another tool's XDP
    program, other tc programs), and --direction out stops the host's own pings to a
    blocked address before they leave. An interface can carry an XDP and tc
    attachments at once, each with its own rules and counters.

    Examples:

      pingkiller attach eth0

      pingkiller attach eth0 --block 192.168.1.78 --block 2001:db8::/32

      pingkiller attach eth0 --default drop --allow 10.0.0.0/8 --icmp all

      pingkiller attach eth0 --limit 10/s --burst 20 --limit-total 1000/s

      pingkiller attach eth0 --block 192.0.2.9 --icmp echo,timestamp

      pingkiller attach eth0 --hook tc --direction both --block 192.0.2.9
    """
    import pingkiller

    settings = pingkiller.Policy(
        default=_default(default, limit, bool(block)), icmp=icmp,
        all_protocols=all_protocols, events=EVENT_MODES.parse(events), event_rate=event_rate,
        timing=timing, limit=_limit("--limit", limit, "--burst", burst),
        limit_total=_limit("--limit-total", limit_total, "--limit-total-burst",
                           limit_total_burst),
        limit_prefix6=limit_prefix6, limit_buckets=limit_buckets)
    if direction != "in" and hook != "tc":
        raise pingkiller.InvalidInput(f"--direction {direction} needs --hook tc: XDP sees only "
                                      "packets that arrive")
    if direction == "both":
        made = pingkiller.attach_both(ifname, settings, block=block or [], allow=allow or [],
                                      mode=mode, replace=replace)
    else:
        made = [pingkiller.attach(ifname, settings, hook=hook, direction=direction,
                                  block=block or [], allow=allow or [], mode=mode,
                                  replace=replace)]
    infos = []
    for attachment in made:
        with attachment:
            infos.append(attachment.info())
    if as_json:
        found = [schemas.attachment(info) for info in infos]
        print_json(found[0] if len(found) == 1 else found)
        return
    what = "Replaced policy on" if replace else "Attached to"
    for info in infos:
        where = info.point.label + (f", {position(info)}" if info.chain else "")
        echo(f"{what} {where}: program {info.program_id}, {attached_how(info)}")
    first = infos[0]
    assert first.policy is not None
    echo(f"Policy: {first.policy.describe()}")
    counts = {action: sum(1 for rule in first.rules if rule.action == action)
              for action in RuleAction}
    limits = f", {counts[RuleAction.LIMIT]} limit" if counts[RuleAction.LIMIT] else ""
    echo(f"Rules: {counts[RuleAction.BLOCK]} block, {counts[RuleAction.ALLOW]} allow{limits}")


def _default(word: str | None, limit: str | None, blocking: bool) -> DefaultAction:
    """--default, or what it is when not given."""
    from pingkiller.model.policy import default_action

    chosen = DEFAULT_ACTIONS.parse(word) if word else None
    if limit is not None:
        if chosen not in (None, DefaultAction.LIMIT):
            raise InvalidInput(f"--limit makes the default action limit: drop --default {word}")
        return DefaultAction.LIMIT
    if chosen is DefaultAction.LIMIT:
        raise InvalidInput("--default limit needs a rate: add --limit RATE (e.g. 10/s)")
    return chosen if chosen is not None else default_action(blocking=blocking)


def _limit(rate_flag: str, rate: str | None, burst_flag: str, burst: int | None) -> Limit | None:
    """The limit of a rate option and its burst option."""
    if rate is None:
        if burst is not None:
            raise InvalidInput(f"{burst_flag} is the burst of {rate_flag}: add {rate_flag} RATE")
        return None
    return Limit.of(rate, burst)

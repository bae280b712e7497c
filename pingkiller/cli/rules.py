"""block, allow, limit and unblock."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pingkiller.cli import schemas
from pingkiller.cli.command import Fast, verb
from pingkiller.cli.options import (
    address_arguments,
    direction_filter,
    from_file_option,
    hook_filter,
    interface,
    json_flag,
    opt,
)
from pingkiller.cli.output import echo, print_json
from pingkiller.model.errors import InvalidInput
from pingkiller.model.limits import Limit

_DONE = {"block": "Blocked", "allow": "Allowed", "limit": "Limited",
         "unblock": "Removed rules for"}


def change(verb_name: str, ifname: str, networks: list[str] | None, file: Path | None,
           as_json: bool, hook: str | None, direction: str | None,
           limit: Limit | None = None) -> None:
    """What block, allow, limit and unblock do: one library call, its result rendered."""
    import pingkiller

    rules = pingkiller.RuleSet.of(networks or [])
    if file is not None:
        rules += pingkiller.read_rule_file(file)  # packed straight from the text: fast
    if not rules.requested:
        raise pingkiller.InvalidInput(f"give addresses to {verb_name}, or --from-file FILE")
    action = {"block": pingkiller.RuleAction.BLOCK, "allow": pingkiller.RuleAction.ALLOW,
              "limit": pingkiller.RuleAction.LIMIT, "unblock": None}[verb_name]
    atomic = file is not None or None  # a file: all or nothing, also under kill -9
    done = pingkiller.change_rules(ifname, rules, action, limit=limit, hook=hook,
                                   direction=direction, atomic=atomic)
    if as_json:
        print_json(schemas.rule_changes(ifname, verb_name, rules.requested, done, limit))
        return
    for item in done:
        point = item.point
        where = point.ifname if point.hook is pingkiller.Hook.XDP else \
            f"{point.ifname} at {point.hook_text}"
        how = f" to {limit.rate} per source in bursts of {limit.burst}" if limit else ""
        echo(f"{_DONE[verb_name]} {item.changed} of {rules.requested} on {where}{how} "
             f"({item.rule_count} rules now)")


@verb(fast=Fast(positional=("ifname",), variadic="addresses"))
def block(
    ifname: Annotated[str, interface()],
    addresses: Annotated[list[str] | None, address_arguments()] = None,
    from_file: Annotated[Path | None, from_file_option()] = None,
    hook: Annotated[str | None, hook_filter()] = None,
    direction: Annotated[str | None, direction_filter()] = None,
    as_json: Annotated[bool, json_flag("block")] = False,
) -> None:
    """Drop pings from/to ADDRESSES on IFACE's running attachments, at once.

    Every attachment of IFACE (XDP and tc, each with its own rule table) gets the
    change; --hook and --direction say which only.

    Examples:

      pingkiller block eth0 192.168.1.78 10.0.0.0/8

      pingkiller block eth0 --from-file blocklist.txt
    """
    change("block", ifname, addresses, from_file, as_json, hook, direction)


@verb()
def allow(
    ifname: Annotated[str, interface()],
    addresses: Annotated[list[str] | None, address_arguments()] = None,
    from_file: Annotated[Path | None, from_file_option()] = None,
    hook: Annotated[str | None, hook_filter()] = None,
    direction: Annotated[str | None, direction_filter()] = None,
    as_json: Annotated[bool, json_flag("allow")] = False,
) -> None:
    """Let pings from/to ADDRESSES pass on IFACE's running attachments (beats the default).

    Every attachment of IFACE gets the change; --hook and --direction say which only.

    Example:

      pingkiller allow eth0 192.168.1.1
    """
    change("allow", ifname, addresses, from_file, as_json, hook, direction)


@verb()
def limit(
    ifname: Annotated[str, interface()],
    addresses: Annotated[list[str] | None, address_arguments()] = None,
    rate: Annotated[
        str | None, opt(help="At most RATE pings per source: 10/s, 600/min, 1/h (IPv6 "
                             "sources per /64, see attach --limit-prefix6). Required.",
                        metavar="RATE")
    ] = None,
    burst: Annotated[
        int | None, opt(help="Bursts of up to N pings pass at once. [default: RATE's "
                             "per-second figure, at least 1]", min=1, metavar="N",
                        show_default=False)
    ] = None,
    from_file: Annotated[Path | None, from_file_option()] = None,
    hook: Annotated[str | None, hook_filter()] = None,
    direction: Annotated[str | None, direction_filter()] = None,
    as_json: Annotated[bool, json_flag("limit")] = False,
) -> None:
    """Let pings from/to ADDRESSES pass at most --rate per source on IFACE's running
    attachments; the rest are dropped (drop_rate).

    Each source gets its own allowance (an IPv6 source's /64 shares one). A limit rule
    beats allow rules and the default; block rules beat it. At tc egress the
    destination is limited: the host's own pings per remote host. Every attachment of
    IFACE gets the change; --hook and --direction say which only.

    Examples:

      pingkiller limit eth0 10.0.0.0/8 --rate 10/s --burst 20

      pingkiller limit eth0 --from-file monitoring.txt --rate 600/min
    """
    if rate is None:
        raise InvalidInput("give the rate: --rate RATE (e.g. 10/s)")
    change("limit", ifname, addresses, from_file, as_json, hook, direction,
           limit=Limit.of(rate, burst))


@verb()
def unblock(
    ifname: Annotated[str, interface()],
    addresses: Annotated[list[str] | None, address_arguments()] = None,
    from_file: Annotated[Path | None, from_file_option()] = None,
    hook: Annotated[str | None, hook_filter()] = None,
    direction: Annotated[str | None, direction_filter()] = None,
    as_json: Annotated[bool, json_flag("unblock")] = False,
) -> None:
    """Remove any rule (block, allow or limit) for ADDRESSES on IFACE's running attachments.

    Every attachment of IFACE gets the change; --hook and --direction say which only.

    Example:

      pingkiller unblock eth0 192.168.1.78
    """
    change("unblock", ifname, addresses, from_file, as_json, hook, direction)

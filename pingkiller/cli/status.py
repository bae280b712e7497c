"""status."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Annotated, Any

from pingkiller.cli import schemas
from pingkiller.cli.command import Fast, verb
from pingkiller.cli.options import arg, complete_attached, direction_filter, hook_filter, json_flag, opt
from pingkiller.cli.output import echo
from pingkiller.model.words import RULE_ACTIONS

if TYPE_CHECKING:
    from pingkiller.model.limits import Limit
    from pingkiller.model.results import AttachmentInfo
    from pingkiller.model.rules import Rule

STATUS_RULES = 50  # rules the human status lists by default


@verb(fast=Fast(optional=("ifname",)))
def status(
    ifname: Annotated[str | None, arg(help="Only this interface.", show_default=False,
                                      metavar="IFACE", autocompletion=complete_attached)] = None,
    as_json: Annotated[bool, json_flag("status")] = False,
    max_rules: Annotated[int | None, opt(
        help=f"List at most N rules of each attachment (default: {STATUS_RULES}, all with "
             "--json); rule_count still counts them all.", min=0, metavar="N",
        show_default=False)] = None,
    hook: Annotated[str | None, hook_filter()] = None,
    direction: Annotated[str | None, direction_filter()] = None,
) -> None:
    """Show every attachment: hook, program, mode, policy, counters, and rules with hit counts.

    An interface can carry several: XDP, and tc in and out, each with its own rules and
    counters. A tc attachment shows where it runs among its hook's programs.

    Rules are listed map by map (IPv4 addresses, IPv4 prefixes, IPv6 addresses, IPv6
    prefixes), each map sorted by address up to 4096 rules and in the kernel's order
    beyond; --json streams them, so a million rules take seconds and little memory.

    Examples:

      pingkiller status

      pingkiller status eth0 --json

      pingkiller status eth0 --max-rules 1000
    """
    limit = max_rules if max_rules is not None else (None if as_json else STATUS_RULES)
    views = _views(ifname, limit, hook, direction)
    if as_json:
        _write_json(views)
        return
    from pingkiller.cli import table
    from pingkiller.cli.render import status_text

    shown = False
    for info, rules in views:
        table.write(status_text(info, list(itertools.chain.from_iterable(rules))))
        shown = True
    if not shown:
        echo("No pingkiller attachments. Attach one with `pingkiller attach IFACE`.")


def _views(ifname: str | None, limit: int | None, hook: str | None, direction: str | None,
           ) -> Iterator[tuple[AttachmentInfo, Iterable[list[Rule]]]]:
    """What status shows of each attachment: its info and its first ``limit`` rules
    (all when None: then streamed, a batch at a time, while the attachment is open)."""
    import pingkiller

    if ifname is None:
        found: Iterable[pingkiller.AttachmentView] = pingkiller.each_attachment(
            hook=hook, direction=direction)
    else:  # named: pins it cannot read (another ABI version) are refused, as by every verb
        found = pingkiller.open_each(ifname, hook=hook, direction=direction, read_only=True)
    for view in found:
        with view:
            if view.unreadable is not None:
                yield view.info(with_rules=False), []
            elif limit is None:  # count, then stream
                yield view.info(with_rules=False), view.rule_entries()
            else:  # the count and the first rules in one pass
                scan = view.scan_rules(limit)
                yield view.info(with_rules=False, rule_count=scan.total), [scan.first]


_RULES_MARK = "\x00pingkiller-rules\x00"  # where the streamed rules go in an attachment's JSON


def _write_json(views: Iterator[tuple[AttachmentInfo, Iterable[list[Rule]]]]) -> None:
    """status --json, written as it is read: the text ``json.dumps(list, indent=2)``
    would give, with every attachment's rules streamed a batch at a time."""
    import json

    out = sys.stdout
    marker = f'"rules": {json.dumps(_RULES_MARK)}'
    count = 0
    for info, rules in views:
        data = schemas.attachment(info)
        data["rules"] = _RULES_MARK
        text = json.dumps([data], indent=2)[2:-2]  # the object, indented as in the list
        head, tail = text.split(marker)
        out.write(("[\n" if count == 0 else ",\n") + head + '"rules": ')
        _write_rules(out, rules)
        out.write(tail)
        count += 1
    out.write("\n]\n" if count else "[]\n")


def _write_rules(out: Any, rules: Iterable[list[Rule]]) -> None:
    import json

    words = {action: RULE_ACTIONS.word(action) for action in RULE_ACTIONS.members}
    limits: dict[Limit | None, str] = {None: "null"}
    written = 0
    for batch in rules:
        if not batch:
            continue
        for rule in batch:
            if rule.limit not in limits:
                limits[rule.limit] = json.dumps(schemas.limit(rule.limit), indent=2).replace(
                    "\n", "\n        ")
        out.write(("[\n" if written == 0 else ",\n") + ",\n".join(
            f'      {{\n        "address": "{rule.address}",\n        "action": '
            f'"{words[rule.action]}",\n        "hits": {rule.hits},\n        "limit": '
            f'{limits[rule.limit]}\n      }}' for rule in batch))
        written += len(batch)
    out.write("\n    ]" if written else "[]")

"""Rule changes over every attachment of an interface, all or nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from pingkiller.attachment import Attachment, Staged
from pingkiller.attachment.writer import Edit, check_limit, removing, setting, wanted_rules
from pingkiller.model.enums import Direction, Hook, RuleAction
from pingkiller.model.errors import Remedy, StaleAttachment
from pingkiller.model.limits import Limit
from pingkiller.model.network import NetworkLike
from pingkiller.model.point import Point
from pingkiller.model.results import RuleChange, RuleDiff
from pingkiller.model.rules import RuleSet
from pingkiller.ops.common import store_at
from pingkiller.ops.listing import PinRoot, open_each


def change_rules(ifname: str, rules: RuleSet | Iterable[NetworkLike], action: RuleAction | None,
                 *, limit: Limit | None = None, hook: Hook | str | None = None,
                 direction: Direction | str | None = None, atomic: bool | None = None,
                 pin_root: PinRoot = None) -> list[RuleChange]:
    """Give every rule of ``rules`` the ``action`` (None: remove them; LIMIT: at
    ``limit``) on every attachment of ``ifname``, or those at ``hook`` and
    ``direction``: what the CLI's block, allow, limit and unblock do. ``rules`` is a
    :class:`RuleSet` (e.g. :func:`pingkiller.read_rule_file`'s) or addresses and
    prefixes. All or nothing across the attachments: none is changed if one filters
    nothing any more, and a change one of them refuses (a full table) is undone in the
    others. ``atomic`` as for :meth:`Attachment.set_rules`."""
    wanted = rules if isinstance(rules, RuleSet) else RuleSet.of(rules)
    if action is not None:
        check_limit(action, limit)
    edit = removing(wanted) if action is None else setting(wanted, action, limit)
    return [RuleChange(point, changed, count)
            for point, changed, count in _each(ifname, hook, direction, pin_root,
                                               lambda _: (edit, len(wanted)), atomic)]


def sync_rules(ifname: str, *, block: Iterable[NetworkLike] = (),
               allow: Iterable[NetworkLike] = (),
               limit: Mapping[Limit, Iterable[NetworkLike]] | None = None,
               hook: Hook | str | None = None, direction: Direction | str | None = None,
               atomic: bool | None = None, pin_root: PinRoot = None) -> list[RuleDiff]:
    """Make the rules of every attachment of ``ifname`` (or those at ``hook`` and
    ``direction``) exactly ``block``, ``allow`` and ``limit`` (each limit's addresses):
    what differs is added or changed, the rest removed; rules that stay keep their
    hits. All or nothing across them."""
    wanted = wanted_rules(block, allow, limit)
    diffs = {}

    def plan(attachment: Attachment) -> tuple[Edit, int]:
        edits, added, removed = attachment.differences(wanted)
        diffs[attachment.point] = (tuple(added), tuple(removed))
        size = sum(len(rules) for _, _, rules in wanted) + len(removed)
        return (lambda table, undo: sum(e(table, undo) for e in edits)), size

    return [RuleDiff(point, *diffs[point], count)
            for point, _, count in _each(ifname, hook, direction, pin_root, plan, atomic)]


def _each(ifname: str, hook: Hook | str | None, direction: Direction | str | None,
          pin_root: PinRoot, plan: Callable[[Attachment], tuple[Edit, int]],
          atomic: bool | None) -> list[tuple[Point, int, int]]:
    """``plan``'s edit made on every chosen attachment, all or nothing, under one lock:
    each one's point, rules changed, and rules it has now."""
    store = store_at(pin_root)
    attachments = open_each(ifname, hook=hook, direction=direction, pin_root=store)
    try:
        with store.writer() as recovered:
            for attachment in attachments:
                attachment.recovered, recovered = list(recovered), []
                attachment.check()
                if attachment.is_stale():
                    raise StaleAttachment(
                        f"{attachment.point.label}'s attachment filters nothing "
                        f"({attachment.problem()}); nothing was changed",
                        point=attachment.point, remedy=Remedy.DETACH)
            staged: list[Staged] = []
            try:
                for attachment in attachments:
                    edit, size = plan(attachment)
                    staged.append(attachment.stage(edit, size, atomic))
            except BaseException:
                for ready in reversed(staged):
                    ready.abort()
                raise
            done = [(ready.attachment, ready.commit()) for ready in staged]
            return [(attachment.point, changed, attachment.rule_count())
                    for attachment, changed in done]
    finally:
        for attachment in attachments:
            attachment.close()

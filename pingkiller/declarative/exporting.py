"""The running attachments as a policy file: a value (:func:`from_running`), its text
(:func:`export`), or that text streamed a batch of rules at a time into a temporary
file (:func:`export_file`). Applying an export changes nothing."""

from __future__ import annotations

import shutil
import tempfile
from typing import IO, TYPE_CHECKING

from pingkiller.declarative.file import (
    HEADER,
    AttachmentSpec,
    PolicyFile,
    dump,
    limit_order,
    limit_rules_header,
    policy_file,
    settings_lines,
    table_header,
)
from pingkiller.declarative.planning import tc_mode
from pingkiller.model.enums import Hook, Mode, RuleAction
from pingkiller.model.errors import IncompatiblePins, PingkillerError
from pingkiller.model.limits import Limit
from pingkiller.model.policy import Policy
from pingkiller.model.results import AttachmentInfo

if TYPE_CHECKING:
    from pingkiller.attachment import AttachmentView
    from pingkiller.ops.listing import PinRoot


def from_running(running: list[AttachmentInfo] | None = None, *,
                 pin_root: PinRoot = None) -> PolicyFile:
    """The running attachments (read now, from ``pin_root``, unless given) as a policy
    file; stale ones are left out. Every rule is in memory (:func:`export_file` streams
    them). An attachment whose pins cannot be read raises IncompatiblePins."""
    if running is None:
        from pingkiller.ops.listing import each_attachment

        found = [_spec(view.info(), view.unreadable)
                 for view in each_attachment(pin_root=pin_root)]
    else:
        found = [_spec(info) for info in running]
    return policy_file((spec for spec in found if spec is not None), "<running>")


def _spec(info: AttachmentInfo, unreadable: PingkillerError | None = None
          ) -> AttachmentSpec | None:
    """What ``info`` is, as a spec; None for a stale attachment (left out)."""
    policy = _exported_policy(info, unreadable)
    if policy is None:
        return None
    rules = {rule.network: rule.action for rule in info.rules}
    limits = {rule.network: rule.limit for rule in info.rules if rule.limit is not None}
    return AttachmentSpec(info.ifname, policy, _exported_mode(info), rules, info.hook,
                          info.direction, limits)


def _exported_policy(info: AttachmentInfo,
                     unreadable: PingkillerError | None = None) -> Policy | None:
    """The policy to export for ``info``; None for a stale attachment (left out).
    ``unreadable``: why its maps cannot be read, when known (its remedy is kept)."""
    if info.stale:
        return None
    if unreadable is not None:
        raise IncompatiblePins(f"cannot export {info.point.label}: {unreadable.message}",
                               point=info.point, remedy=unreadable.remedy)
    if info.policy is None:  # filters, but its pins cannot be read (another ABI version)
        raise IncompatiblePins(f"cannot export {info.point.label}: {info.problem}",
                               point=info.point)
    return info.policy


def _exported_mode(info: AttachmentInfo) -> Mode:
    """The mode to export: at tc a clsact filter stays one (tcx is what auto makes); at
    XDP the mode in effect (auto for offload, or when none can be seen)."""
    if info.hook is not Hook.XDP:
        return Mode.CLSACT if tc_mode(info) is Mode.CLSACT else Mode.AUTO
    return info.mode if info.mode in (Mode.NATIVE, Mode.GENERIC) else Mode.AUTO


def export(running: list[AttachmentInfo] | None = None, *, pin_root: PinRoot = None) -> str:
    """The running state as policy-file text (round trip: applying it changes nothing)."""
    if running is not None:
        return dump(from_running(running))
    with export_file(pin_root=pin_root) as text:
        return text.read()


# Text an export keeps in memory before its temporary file goes to disk ($TMPDIR).
_SPOOL_MEMORY = 4 << 20


def _spool() -> IO[str]:
    return tempfile.SpooledTemporaryFile(_SPOOL_MEMORY, mode="w+", encoding="utf-8")


def export_file(*, pin_root: PinRoot = None) -> IO[str]:
    """:func:`export`'s text of the running state in a temporary file, rewound: built
    one batch of rules at a time (memory: a batch, and up to a few MB of text before the
    file spills to $TMPDIR), so a million rules need not fit in memory. The same text
    as :func:`~pingkiller.declarative.dump` of :func:`from_running`; an error raises before
    anything is returned (no partial text).

    Whether an interface's header is ``[interfaces.X]`` or ``[[interfaces.X]]`` depends
    on how many of its attachments are exported, known only once the last one is read,
    so each attachment's table goes to a spool of its own until then (attachments come
    by interface, :func:`pingkiller.each_attachment`'s order)."""
    from pingkiller.ops.listing import each_attachment

    text = _spool()
    try:
        text.write("\n".join(HEADER) + "\n")
        tables: list[tuple[str, IO[str]]] = []  # the current interface's: (ifname, body)
        try:
            for view in each_attachment(pin_root=pin_root):
                info = view.info(with_rules=False, rule_count=0)
                policy = _exported_policy(info, view.unreadable)
                if policy is None:
                    continue
                if tables and tables[0][0] != info.ifname:
                    _write_tables(text, tables)
                body = _spool()
                tables.append((info.ifname, body))
                spec = AttachmentSpec(info.ifname, policy, _exported_mode(info), {}, info.hook,
                                      info.direction)
                body.write("\n".join(settings_lines(spec)) + "\n")
                _write_rule_lists(body, view)
            _write_tables(text, tables)
        finally:
            for _, body in tables:
                body.close()
        text.seek(0)
    except BaseException:
        text.close()
        raise
    return text


def _write_tables(out: IO[str], tables: list[tuple[str, IO[str]]]) -> None:
    """One interface's tables, each with its header, to ``out``; closes and forgets them."""
    for ifname, body in tables:
        out.write("\n".join(table_header(ifname, len(tables) > 1)) + "\n")
        body.seek(0)
        shutil.copyfileobj(body, out)
        body.close()
    tables.clear()


def _write_rule_lists(out: IO[str], view: AttachmentView) -> None:
    """``block = [...]``, ``allow = [...]`` and a limit_rules table per limit (each only
    if it has rules) from one pass over the rules: block lines go straight to ``out``,
    allow lines and each limit's to a spool until block's list is closed."""
    limited: dict[Limit, IO[str]] = {}
    try:
        _write_lists(out, view, limited)
        for limit in sorted(limited, key=limit_order):
            out.write("\n".join(limit_rules_header(view.point.ifname, limit)) + "\n")
            limited[limit].seek(0)
            shutil.copyfileobj(limited[limit], out)
            out.write("]\n")
    finally:
        for spool in limited.values():
            spool.close()


def _write_lists(out: IO[str], view: AttachmentView, limited: dict[Limit, IO[str]]) -> None:
    with _spool() as allow:
        blocked = allowed = 0
        for batch in view.rule_entries():
            for rule in batch:
                if rule.limit is not None:
                    if rule.limit not in limited:
                        limited[rule.limit] = _spool()
                    limited[rule.limit].write(f'    "{rule.address}",\n')
            block_lines = [f'    "{rule.address}",\n' for rule in batch
                           if rule.action == RuleAction.BLOCK]
            if block_lines and not blocked:
                out.write("block = [\n")
            out.writelines(block_lines)
            blocked += len(block_lines)
            allow_lines = [f'    "{rule.address}",\n' for rule in batch
                           if rule.action == RuleAction.ALLOW]
            allow.writelines(allow_lines)
            allowed += len(allow_lines)
        if blocked:
            out.write("]\n")
        if allowed:
            out.write("allow = [\n")
            allow.seek(0)
            shutil.copyfileobj(allow, out)
            out.write("]\n")

"""Carrying out a plan (:func:`apply`), reconciling with a policy file once
(:func:`reconcile`) or whenever it changes (:func:`watch`).

Kept attachments get only the settings and rule differences, new rules first, so no kept
rule is ever missing. Steps before a failing one stay applied: reconciling again
finishes the job.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pingkiller.declarative.file import PolicyFile, load, parse, read_text
from pingkiller.declarative.planning import Plan, Step, StepAction, plan
from pingkiller.model import untrusted
from pingkiller.model.enums import RuleAction
from pingkiller.model.errors import PingkillerError, PolicyFileError
from pingkiller.model.limits import Limit
from pingkiller.model.network import Network
from pingkiller.model.rules import RuleSet

if TYPE_CHECKING:
    from pingkiller.ops.listing import PinRoot

Log = Callable[[str], None]


def apply(changes: Plan, log: Log | None = None, *, pin_root: PinRoot = None) -> None:
    """Carry out a plan, step by step (each step is logged before it runs)."""
    for step in changes.steps:
        if log is not None:
            log(step.describe())
        _apply_step(step, pin_root)


def _apply_step(step: Step, pin_root: PinRoot) -> None:
    from pingkiller.ops.attach import attach
    from pingkiller.ops.detach import detach
    from pingkiller.ops.listing import open_attachment
    from pingkiller.ops.upgrade import upgrade

    point = step.point
    if step.action is StepAction.UPGRADE:
        upgrade(point.ifname, hook=point.hook, direction=point.direction, pin_root=pin_root)
        return
    if step.action in (StepAction.DETACH, StepAction.REATTACH):
        detach(point.ifname, hook=point.hook, direction=point.direction, pin_root=pin_root)
    if step.action is StepAction.DETACH:
        return
    spec = step.spec
    assert spec is not None
    if step.action in (StepAction.ATTACH, StepAction.REATTACH):
        attach(
            spec.ifname,
            spec.policy,
            hook=spec.hook,
            direction=spec.direction,
            block=spec.networks(RuleAction.BLOCK),
            allow=spec.networks(RuleAction.ALLOW),
            limit=spec.limited(),
            mode=spec.mode,
            pin_root=pin_root,
        ).close()
        return
    with open_attachment(point.ifname, hook=point.hook, direction=point.direction,
                         pin_root=pin_root) as attachment:
        # New and changed rules first, then the settings, then stale rules go:
        # a rule that is kept is never missing.
        for action in RuleAction:
            by_limit: dict[Limit | None, list[Network]] = {}
            for network, wanted in step.add.items():
                if wanted == action:
                    by_limit.setdefault(step.limit_of(network), []).append(network)
            for limit, networks in by_limit.items():
                attachment.set_rules(RuleSet.of(networks), action, limit=limit)
        if step.policy_from is not None:
            attachment.set_policy(spec.policy)
        if step.remove:
            attachment.remove_rules(RuleSet.of(step.remove))


def reconcile(path: str | Path, *, dry_run: bool = False, log: Log | None = None,
              pin_root: PinRoot = None) -> Plan:
    """Load, plan and (unless ``dry_run``) apply a policy file; returns the plan.

    Applying is writing: what a killed writer left half done is finished first, so the
    plan starts from what the pins will hold. A dry run only reads.
    """
    from pingkiller.ops.detach import recover_interrupted

    desired = load(path)
    if not dry_run:
        recover_interrupted(pin_root=pin_root)
    changes = plan(desired, pin_root=pin_root)
    if not dry_run:
        changes = _apply_all(changes, desired, log, pin_root)
    return changes


def _apply_all(changes: Plan, desired: PolicyFile, log: Log | None, pin_root: PinRoot) -> Plan:
    """Apply a plan; after upgrades, plan again what they made readable, and apply that."""
    apply(changes, log, pin_root=pin_root)
    if not any(step.action is StepAction.UPGRADE for step in changes.steps):
        return changes
    rest = plan(desired, pin_root=pin_root)
    apply(rest, log, pin_root=pin_root)
    return Plan(changes.source, changes.steps + rest.steps, rest.unchanged)


def watch(path: str | Path, log: Log, *, interval: float = 2.0, pin_root: PinRoot = None,
          explain: Callable[[PingkillerError], str] = str) -> None:
    """Apply ``path`` now and again whenever its content changes; runs until interrupted.

    Changes are noticed by polling (inode, mtime, size, then a content hash), which also
    sees a Kubernetes ConfigMap's symlink swap. An invalid file is logged and the last
    good state stays until the next edit; a failed apply (e.g. an interface not there
    yet) is retried every interval. Errors are logged as ``explain`` words them (by
    default ``str``: what to do as Python calls).
    """
    file = Path(path)
    seen: tuple[int, int, int] | None = (-1, -1, -1)  # differs from any file, and from None
    text: str | None = None
    digest = ""
    pending = False
    last_error = ""
    while True:
        fingerprint = _fingerprint(file)
        if fingerprint != seen:
            seen = fingerprint
            try:
                current = read_text(file)
            except PolicyFileError as err:
                last_error = _log_once(log, explain(err), last_error)
            else:
                new_digest = hashlib.sha256(current.encode()).hexdigest()
                if new_digest != digest:
                    text, digest, pending = current, new_digest, True
                    log(f"{untrusted.shown_path(file)}: read (sha256 {digest[:12]})")
        if pending and text is not None:
            try:
                _apply_text(file, text, log, pin_root)
            except PolicyFileError as err:
                pending = False
                last_error = _log_once(log, explain(err), last_error)
            except PingkillerError as err:  # BpfError included
                last_error = _log_once(log, f"{explain(err)} (retrying)", last_error)
            else:
                pending = False
                last_error = ""
        time.sleep(interval)


def _fingerprint(file: Path) -> tuple[int, int, int] | None:
    try:
        stat = file.stat()
    except OSError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def _apply_text(file: Path, text: str, log: Log, pin_root: PinRoot) -> None:
    from pingkiller.ops.detach import recover_interrupted

    source = untrusted.shown_path(file)
    desired = parse(text, source=source, base=file.parent)
    for note in recover_interrupted(pin_root=pin_root):
        log(note)
    changes = plan(desired, pin_root=pin_root)
    if not changes.changed:
        log(f"{source}: running state matches ({len(changes.unchanged)} attachments)")
        return
    changes = _apply_all(changes, desired, log, pin_root)
    log(f"{source}: applied {len(changes.steps)} change(s)")


def _log_once(log: Log, message: str, last: str) -> str:
    if message != last:
        log(f"error: {message}")
    return message

"""apply and export: policy files."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

from pingkiller.cli.command import verb
from pingkiller.cli.options import json_flag, opt
from pingkiller.cli.output import echo, print_json
from pingkiller.model.untrusted import one_line


def exit_cleanly_on_sigterm() -> None:
    """Let SIGTERM (systemd stop, Kubernetes) end a long-running command like Ctrl-C does."""
    import signal

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def log_stderr(message: str) -> None:
    sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} pingkiller: {one_line(message)}\n")
    sys.stderr.flush()


@verb("apply")
def apply_policy(
    file: Annotated[
        Path, opt("--file", "-f", help="The policy file (TOML; man pingkiller-apply).",
                  dir_okay=False, show_default=False),
    ],
    dry_run: Annotated[bool, opt("--dry-run", help="Print the plan, change nothing.")] = False,
    watch: Annotated[
        bool, opt("--watch", help="Stay running; apply again whenever the file changes.")
    ] = False,
    interval: Annotated[
        float, opt(help="Seconds between checks of the file with --watch.", min=0.05, metavar="S")
    ] = 2.0,
    as_json: Annotated[bool, json_flag("apply", "docs/operations.md")] = False,
) -> None:
    """Make the running attachments match a policy file: attach, update, detach.

    Only differences are applied (new rules before stale ones go); pingkiller
    attachments the file does not list are detached, nothing else is touched. An
    invalid file is rejected whole and nothing is changed.

    Examples:

      pingkiller apply -f /etc/pingkiller/policy.toml --dry-run

      pingkiller apply -f /etc/pingkiller/policy.toml --watch
    """
    from pingkiller import declarative as policy_files

    if watch:
        if dry_run or as_json:
            from pingkiller.model.errors import InvalidInput

            raise InvalidInput("--watch cannot be combined with --dry-run or --json")
        exit_cleanly_on_sigterm()
        try:
            policy_files.watch(file, log_stderr, interval=interval)
        except KeyboardInterrupt:
            log_stderr("stopped; attachments stay as they are")
        return
    plan = policy_files.reconcile(file, dry_run=dry_run)
    if as_json:
        from pingkiller.cli import schemas

        print_json({**schemas.plan(plan), "dry_run": dry_run})
        return
    for step in plan.steps:
        echo(("would " if dry_run else "") + step.describe())
    if not plan.changed:
        echo(f"No changes: the running state matches {file}.")
    elif dry_run:
        echo(f"Dry run: {len(plan.steps)} change(s) planned, nothing changed.")
    else:
        echo(f"Applied {len(plan.steps)} change(s).")


@verb()
def export(
    output: Annotated[
        Path | None, opt("--output", "-o", help="Write to FILE instead of stdout.",
                         dir_okay=False, show_default=False),
    ] = None,
) -> None:
    """Write the running attachments as a policy file for `pingkiller apply`.

    The text is built a batch of rules at a time in a temporary file (in memory up to
    a few MB, then in $TMPDIR) and written out only once complete: on an error nothing
    is written. FILE is replaced whole (a new file beside it, renamed over it; a symlink
    there is replaced, not followed) and a new FILE is readable by its owner only (0600).

    Example:

      pingkiller export -o /etc/pingkiller/policy.toml
    """
    import shutil

    from pingkiller import declarative as policy_files

    with policy_files.export_file() as text:
        if output is None:
            shutil.copyfileobj(text, sys.stdout)
            return
        from pingkiller.system.trust import write_private

        try:
            write_private(output, lambda out: shutil.copyfileobj(text, out))
        except OSError as err:
            from pingkiller.model.errors import InvalidInput
            from pingkiller.model.untrusted import quote_path

            raise InvalidInput(f"cannot write {quote_path(output)}: {err.strerror}") from None

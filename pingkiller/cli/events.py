"""events."""

from __future__ import annotations

import sys
from typing import Annotated

from pingkiller.cli import schemas
from pingkiller.cli.command import verb
from pingkiller.cli.errors import stopped
from pingkiller.cli.options import direction_filter, hook_filter, interface, json_flag, opt
from pingkiller.cli.output import json_line


@verb()
def events(
    ifname: Annotated[str, interface()],
    count: Annotated[int | None, opt(help="Stop after N events; the ones after them stay in the "
                                          "ring for the next reader.", min=1, metavar="N")] = None,
    timeout: Annotated[float | None, opt(help="Stop after S seconds.", min=0, metavar="S")] = None,
    backlog: Annotated[bool, opt("--backlog", help="First the events buffered before it started "
                                                   "(marked backlog), which are skipped "
                                                   "otherwise.")] = False,
    hook: Annotated[str | None, hook_filter()] = None,
    direction: Annotated[str | None, direction_filter()] = None,
    as_json: Annotated[bool, json_flag("events")] = False,
) -> None:
    """Stream per-packet events from now on (one JSON object per line with --json).

    Each line starts with the packet's local time. Events the ring buffered before it
    started (nobody was reading; they may be hours old) are skipped, and counted on
    stderr at the start; --backlog shows them first, marked "backlog". Which packets send
    events is set at attach time (--events). Ctrl-C stops cleanly; the end reports how
    many events were received, suppressed and lost. It stops with exit code 1 when the
    attachment ends meanwhile (detached, its interface deleted); across `attach
    --replace` it carries on (the event ring carries over).

    Examples:

      pingkiller events eth0

      pingkiller events eth0 --json --count 10 --timeout 30

      pingkiller events eth0 --backlog --count 100
    """
    import pingkiller

    ended: pingkiller.AttachmentEnded | None = None
    with pingkiller.open(ifname, hook=hook, direction=direction, read_only=True) as attachment, \
            attachment.follow_events(count=count, timeout=timeout, backlog=backlog) as feed:
        stream = feed.stream
        _start(ifname, stream.skipped, stream.buffered, as_json)
        try:
            for batch in feed:
                for index, event in enumerate(batch):
                    old = batch.is_backlog(index)
                    if as_json:
                        json_line(schemas.event(event, stream.clock, backlog=old))
                    else:
                        sys.stdout.write(event.line(stream.clock, backlog=old) + "\n")
                sys.stdout.flush()
        except KeyboardInterrupt:
            pass
        except pingkiller.AttachmentEnded as err:
            ended = err  # said after the summary, as the one error line
        summary = feed.summary()
    if as_json:
        json_line({"summary": schemas.event_summary(summary)}, err=True)
    else:
        sys.stderr.write(f"{summary.received} events received; {summary.suppressed} suppressed "
                         f"by the rate limit, {summary.lost} lost (ring full) meanwhile\n")
    if ended is not None:
        stopped(ended)


def _start(ifname: str, skipped: int, buffered: int, as_json: bool) -> None:
    """The line on stderr that says `events` reads now, and what it skipped or reads first."""
    if as_json:
        json_line({"start": {"interface": ifname, "skipped": skipped, "backlog": buffered}},
                  err=True)
        return
    if buffered:
        sys.stderr.write(f"Events on {ifname}: first the {buffered} buffered before now (marked "
                         "backlog), then as they happen\n")
    elif skipped:
        sys.stderr.write(f"Events on {ifname} from now on: {skipped} buffered before now were "
                         "skipped (--backlog shows them)\n")
    else:
        sys.stderr.write(f"Events on {ifname} from now on\n")
    sys.stderr.flush()

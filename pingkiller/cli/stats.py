"""stats."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

from pingkiller.cli import schemas
from pingkiller.cli.command import verb
from pingkiller.cli.errors import stopped
from pingkiller.cli.options import direction_filter, hook_filter, interface, json_flag, opt
from pingkiller.cli.output import json_line

if TYPE_CHECKING:
    from pingkiller.model.enums import Reason
    from pingkiller.model.stats import Stats


@verb()
def stats(
    ifname: Annotated[str, interface()],
    watch: Annotated[bool, opt("--watch", "-w", help="Refresh until Ctrl-C.")] = False,
    interval: Annotated[float, opt(help="Seconds between refreshes.", min=0.1, metavar="S")] = 1.0,
    per_cpu: Annotated[bool, opt("--per-cpu", help="Also show each CPU's counters.")] = False,
    hook: Annotated[str | None, hook_filter()] = None,
    direction: Annotated[str | None, direction_filter()] = None,
    as_json: Annotated[bool, json_flag("stats")] = False,
) -> None:
    """Counters and rates (pps) by reason, processing time, kernel run time.

    With --watch the kernel's BPF run-time stats are switched on while it runs; it
    stops with exit code 1 when the attachment ends meanwhile (detached, its interface
    deleted), and carries on across `attach --replace` (the counters carry over).

    Examples:

      pingkiller stats eth0

      pingkiller stats eth0 --watch --interval 0.5
    """
    import pingkiller

    with pingkiller.open(ifname, hook=hook, direction=direction, read_only=True) as attachment:
        if not watch:
            _show(ifname, attachment.stats(per_cpu=per_cpu), None, as_json)
            return
        samples = attachment.watch_stats(interval, per_cpu=per_cpu)
        try:
            if not as_json and sys.stdout.isatty():
                _watch_live(ifname, samples)  # one block, redrawn in place
            for current, rates in samples:  # piped: a block (or a JSON line) per interval
                if not as_json:
                    sys.stdout.write("\n")
                _show(ifname, current, rates, as_json)
        except KeyboardInterrupt:
            pass
        except pingkiller.AttachmentEnded as ended:
            stopped(ended)
        finally:
            samples.close()


def _watch_live(ifname: str, samples: Iterator[tuple[Stats, dict[Reason, float]]]) -> None:
    """`stats --watch` on a terminal: rich Live redraws the block in place; notices on
    stderr (e.g. the program was replaced) print above it."""
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    from pingkiller.cli.render import stats_lines

    console = Console(highlight=False)
    with Live(console=console, auto_refresh=False, redirect_stderr=True) as live:
        for current, rates in samples:
            live.update(Text("\n".join(stats_lines(ifname, current, rates))), refresh=True)


def _show(ifname: str, current: Stats, rates: dict[Reason, float] | None, as_json: bool) -> None:
    if as_json:
        data = schemas.stats(current)
        data["interface"] = ifname
        if rates is not None:
            data["pps"] = {reason.label: rate for reason, rate in rates.items()}
        json_line(data)
        return
    from pingkiller.cli import table
    from pingkiller.cli.render import stats_lines

    table.write(stats_lines(ifname, current, rates))

"""demo and doctor: the sandbox that shows pingkiller at work, and the checks of this machine."""

from __future__ import annotations

import sys
from typing import Annotated

from pingkiller.cli import schemas
from pingkiller.cli.command import verb
from pingkiller.cli.options import complete_interfaces, json_flag, opt
from pingkiller.cli.output import echo, print_json


@verb()
def demo(
    duration: Annotated[float, opt(help="Seconds to run.", min=1, metavar="S")] = 10.0,
    as_json: Annotated[bool, json_flag()] = False,
) -> None:
    """Kill pings in a sandbox of its own: a blocked and an allowed peer ping this host.

    Creates two network namespaces joined to this host by veth pairs, attaches pingkiller
    to both (privately: other attachments are untouched) with a blocklist naming the
    first peer, at XDP and at tc egress, while the peers ping this host and this host
    pings them: the host's requests to the blocked peer die at tc egress before they
    leave (the peer's counters show none arrive). It shows pings, counters, drop events
    and processing time live, and removes everything at the end (also on Ctrl-C). Exits
    1 if a ping that should die was answered or reached the blocked peer, or an allowed
    one was lost.

    Examples:

      pingkiller demo

      pingkiller demo --duration 3 --json
    """
    from pingkiller import demo as sandbox_demo

    if as_json:
        state = sandbox_demo.run(duration)
        print_json(schemas.demo(state))
    else:
        state = sandbox_demo.run_live(duration, sys.stdout)
        for line in sandbox_demo.summary_lines(state):
            echo(line)
    if state.interrupted:
        raise SystemExit(130)
    if state.problems():
        raise SystemExit(1)


@verb()
def doctor(
    interface: Annotated[
        str | None,
        opt("--interface", "-i", help="Also try XDP native mode on IF (attaches a pass-all "
                                      "program and detaches it at once).",
            metavar="IF", show_default=False, autocompletion=complete_interfaces),
    ] = None,
    as_json: Annotated[bool, json_flag()] = False,
) -> None:
    """Check that this machine can run pingkiller; each problem comes with its fix.

    Kernel and BTF, bpffs, capabilities, libbpf, the embedded BPF object, and with
    --interface whether native XDP mode works there. Exits 1 if something needed is missing.

    Examples:

      pingkiller doctor

      sudo pingkiller doctor --interface eth0
    """
    from pingkiller import doctor as checks_module

    checks, report = checks_module.run(interface)
    ok = checks_module.healthy(checks)
    if as_json:
        print_json({"ok": ok, "checks": [schemas.check(c) for c in checks],
                    "object": schemas.object_report(report)})
    else:
        for check in checks:
            echo(check.line())
        echo(f"       maps: {', '.join(report.maps)}")
        shown = [s for s in report.sections if not s.startswith((".debug", ".rel"))]
        echo(f"       sections: {', '.join(shown)} (+ debug and relocation sections)")
        echo("All needed pieces are there." if ok else "Something needed is missing: see the "
             "fixes above.")
    if not ok:
        raise SystemExit(1)

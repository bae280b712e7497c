"""detach and upgrade."""

from __future__ import annotations

from typing import Annotated

from pingkiller.cli import schemas
from pingkiller.cli.command import verb
from pingkiller.cli.options import arg, complete_attached, direction_filter, hook_filter, json_flag, opt
from pingkiller.cli.output import echo, print_json


def _one_or_all(does: str, ifname: str | None, every: bool, hook: str | None,
                direction: str | None) -> None:
    """Refuse IFACE with --all, neither, and --hook/--direction with --all."""
    from pingkiller.model.errors import InvalidInput

    if every == (ifname is not None):
        raise InvalidInput("name one interface, or give --all (not both)")
    if every and (hook or direction):
        raise InvalidInput(f"--all {does} every attachment: --hook and --direction go with IFACE")


@verb()
def detach(
    ifname: Annotated[str | None, arg(help="Interface to detach from.", show_default=False,
                                      metavar="IFACE", autocompletion=complete_attached)] = None,
    detach_all: Annotated[bool, opt("--all", help="Detach every pingkiller attachment.")] = False,
    hook: Annotated[str | None, hook_filter()] = None,
    direction: Annotated[str | None, direction_filter()] = None,
    as_json: Annotated[bool, json_flag("detach")] = False,
) -> None:
    """Detach pingkiller and remove its pins (also when the interface is gone).

    Every attachment of IFACE goes (XDP and tc); --hook and --direction say which only.
    Other programs on the interface are left alone.

    Examples:

      pingkiller detach eth0

      pingkiller detach eth0 --hook tc --direction out

      pingkiller detach --all
    """
    import pingkiller

    _one_or_all("detaches", ifname, detach_all, hook, direction)
    if detach_all:
        done = pingkiller.detach_all()
    else:
        done = pingkiller.detach(ifname or "", hook=hook, direction=direction)
    if as_json:
        print_json([schemas.detached(item) for item in done])
        return
    if not done:
        echo("Nothing to detach.")
    for item in done:
        note = " (stale: its interface was gone; pins cleaned)" if item.was_stale else ""
        echo(f"Detached from {item.point.label}{note}")


@verb()
def upgrade(
    ifname: Annotated[str | None, arg(help="Interface whose attachment to upgrade.",
                                      show_default=False, metavar="IFACE",
                                      autocompletion=complete_attached)] = None,
    upgrade_all: Annotated[bool, opt("--all", help="Upgrade every attachment.")] = False,
    hook: Annotated[str | None, hook_filter()] = None,
    direction: Annotated[str | None, direction_filter()] = None,
    as_json: Annotated[bool, json_flag("upgrade")] = False,
) -> None:
    """Run the installed program on an attachment, in place, keeping its state.

    After a package or image upgrade, the attachments still run the program that made
    them (status says "outdated"). upgrade loads the installed one on the attachment's
    own maps (policy, rules and their hits, counters, events) and swaps it in with one
    atomic bpf_link_update: no packet meets no program, none passes unfiltered. All or
    nothing, also under kill -9. Attachments that run the installed program already are
    left alone; pins of an ABI this build cannot adopt are refused with one line.

    Examples:

      pingkiller upgrade eth0

      pingkiller upgrade --all --json
    """
    import pingkiller

    _one_or_all("upgrades", ifname, upgrade_all, hook, direction)
    if upgrade_all:
        done = pingkiller.upgrade_all()
    else:
        done = pingkiller.upgrade(ifname or "", hook=hook, direction=direction)
    if as_json:
        print_json([schemas.upgraded(item) for item in done])
        return
    if not done:
        echo("Nothing to upgrade: there are no attachments.")
    for item in done:
        if item.upgraded:
            echo(f"Upgraded {item.point.label}: program {item.from_program[:12] or 'unrecorded'} "
                 f"(ABI {item.from_abi}) -> {item.to_program[:12]}")
        else:
            echo(f"{item.point.label} runs the installed program ({item.to_program[:12]}) already")

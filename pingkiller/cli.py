"""The ``pingkiller`` command: parses arguments, calls the library, renders the result.

Exit codes: 0 ok, 1 runtime failure, 2 bad input or usage. Errors are one line on
stderr. ``--json`` output is documented in docs/cli.md and in the man pages, which
pingkiller.manpages makes from this module's help texts (``make man``).

Start-up time: importing typer and click, and typer making the command tree from every
verb's signature, cost several times what ``status IFACE`` itself does. So this module
imports neither: each verb is a plain function, registered by :func:`_verb`, and the
typer app (``app``, what --help, usage errors and the man pages come from) is made on
first use by :func:`_make_app`. The common ``status [IFACE]`` and ``block IFACE ADDR...``
(with or without --json and nothing else) are called directly (:func:`_fast_call`);
every other command line goes through typer. Code that only typer runs may use
``typer`` and ``click``, which :func:`_make_app` binds in this module.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TextIO, TypeVar, cast

from pingkiller import untrusted
from pingkiller.policy import DEFAULT_ACTIONS, EVENT_MODES, ICMP_SETS, RULE_ACTIONS, XDP_MODES

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from types import ModuleType

    import click
    import typer

    from pingkiller.abi import Reason
    from pingkiller.killer import Attachment, AttachmentInfo
    from pingkiller.rules import RuleEntry
    from pingkiller.stats import Stats

# What `main` exits with; the man pages' EXIT STATUS.
EXIT_STATUS = {
    0: "success",
    1: "runtime failure: the input was fine, the system said no",
    2: "bad input or usage",
    130: "interrupted (Ctrl-C)",
}

# Where a verb is documented at length in the source tree (docs/cli.md unless named here).
_DOCS = {"demo": "README.md", "doctor": "docs/troubleshooting.md", "apply": "docs/operations.md",
         "export": "docs/operations.md", "exporter": "docs/operations.md"}


def doc_path(command_path: str) -> str:
    """The document of ``pingkiller VERB ...`` in the source tree, e.g. docs/cli.md."""
    words = command_path.split()
    return _DOCS.get(words[1], "docs/cli.md") if len(words) > 1 else "docs/cli.md"


def _point_at_manual(ctx: click.Context, formatter: click.HelpFormatter) -> None:
    """End --help with the man page (installed) and the document (source tree)."""
    formatter.write_paragraph()
    page = ctx.command_path.replace(" ", "-")
    formatter.write_text(f"Manual: man {page}; {doc_path(ctx.command_path)} in the source.")


def _ascii_number(value: Any, whole: bool, kind: click.ParamType[Any], param: click.Parameter | None,
                  ctx: click.Context | None) -> Any:
    """A number typed as text in ASCII digits (int() and float() also take other
    Unicode digits, e.g. fullwidth ones)."""
    if not isinstance(value, str):
        return value  # a default
    try:
        return untrusted.parse_int(value) if whole else untrusted.parse_float(value)
    except ValueError as err:
        kind.fail(str(err), param, ctx)


def unknown_verb(name: str, verbs: list[str]) -> str:
    """``No such command 'atach'. Did you mean 'attach'?`` (one suggestion line at most)."""
    from difflib import get_close_matches

    close = [repr(verb) for verb in get_close_matches(name, verbs)]
    hint = f" Did you mean {', '.join(close[:-1])} or {close[-1]}?" if len(close) > 1 else (
        f" Did you mean {close[0]}?" if close else "")
    return f"No such command {name!r}.{hint}"


_HELP = (
    "Kill pings at the driver with XDP.\n\n"
    "Examples:\n\n"
    "  pingkiller attach eth0                       # drop every ping\n\n"
    "  pingkiller attach eth0 --block 192.168.1.78  # drop only pings from/to it\n\n"
    "  pingkiller status\n\n"
    "  pingkiller detach eth0"
)

_Function = TypeVar("_Function", bound="Callable[..., None]")
_VERBS: list[tuple[str | None, Callable[..., None]]] = []  # (name, function), in --help order


def _verb(name: str | None = None) -> Callable[[_Function], _Function]:
    """Register a verb (named after its function unless ``name``) for :func:`_make_app`."""
    def register(function: _Function) -> _Function:
        _VERBS.append((name, function))
        return function
    return register


def _make_app() -> typer.Typer:
    """The typer app of every verb. Its annotations are strings (``from __future__ import
    annotations``) that typer evaluates in this module, so ``click`` and ``typer`` are
    bound here (module globals) before it reads them."""
    global click, typer
    import click
    import typer
    from typer.core import TyperCommand, TyperGroup

    class AsciiInt(click.types.IntParamType):
        def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
            return super().convert(_ascii_number(value, True, self, param, ctx), param, ctx)

    class AsciiIntRange(click.IntRange):
        def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
            return super().convert(_ascii_number(value, True, self, param, ctx), param, ctx)

    class AsciiFloat(click.types.FloatParamType):
        def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
            return super().convert(_ascii_number(value, False, self, param, ctx), param, ctx)

    class AsciiFloatRange(click.FloatRange):
        def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
            return super().convert(_ascii_number(value, False, self, param, ctx), param, ctx)

    class QuotingChoice(click.Choice[str]):
        def get_invalid_choice_message(self, value: Any, ctx: click.Context | None) -> str:
            return f"{untrusted.quote(str(value))} is not one of {', '.join(map(repr, self.choices))}."

    def safe_type(kind: click.ParamType[Any]) -> click.ParamType[Any]:
        """The type an option gets: numbers in ASCII digits only, bad choices quoted short."""
        if isinstance(kind, click.IntRange) and not isinstance(kind, AsciiIntRange):
            return AsciiIntRange(kind.min, kind.max, kind.min_open, kind.max_open, kind.clamp)
        if isinstance(kind, click.FloatRange) and not isinstance(kind, AsciiFloatRange):
            return AsciiFloatRange(kind.min, kind.max, kind.min_open, kind.max_open, kind.clamp)
        if type(kind) is click.types.IntParamType:
            return AsciiInt()
        if type(kind) is click.types.FloatParamType:
            return AsciiFloat()
        if type(kind) is click.Choice:
            return QuotingChoice([str(choice) for choice in kind.choices], kind.case_sensitive)
        return kind

    class Verb(TyperCommand):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            for param in self.params:  # every option of every verb, whoever declares it
                param.type = safe_type(param.type)

        def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
            super().format_epilog(ctx, formatter)
            _point_at_manual(ctx, formatter)

    class Group(TyperGroup):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            for param in self.params:
                param.type = safe_type(param.type)

        def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
            super().format_epilog(ctx, formatter)
            _point_at_manual(ctx, formatter)

        def resolve_command(
            self, ctx: click.Context, args: list[str]
        ) -> tuple[str | None, click.Command | None, list[str]]:
            # click (8.2+) and typer each add their own "Did you mean"; say it once.
            name = args[0] if args else ""
            if name and not name.startswith("-") and self.get_command(ctx, name) is None:
                raise _click_errors().UsageError(unknown_verb(name, self.list_commands(ctx)), ctx)
            return super().resolve_command(ctx, args)

    made = typer.Typer(
        name="pingkiller",
        cls=Group,
        help=_HELP,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    made.callback()(_root)
    for name, function in _VERBS:
        made.command(name, cls=Verb)(function)
    return made


_APP: list[typer.Typer] = []  # made once


def _app() -> typer.Typer:
    if not _APP:
        _APP.append(_make_app())
    return _APP[0]


def __getattr__(name: str) -> Any:
    """``app``, the typer app, is made on first use (see the module's docstring)."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _app()


def _click_errors() -> ModuleType:
    """Where typer takes click's exception classes from (typer may vendor click)."""
    import typer

    return sys.modules[typer.BadParameter.__module__]


def _choice(words: list[str]) -> click.Choice[str]:
    """An option taking one of the library's words for a setting (pingkiller.policy)."""
    return click.Choice(words)


def _json(schema: str | None = None, docs: str = "docs/cli.md") -> Any:
    """--json; SCHEMA is the verb whose man page (and DOCS) describes the output."""
    where = f" (schema: man pingkiller-{schema}, {docs})" if schema else ""
    return typer.Option("--json", help=f"Machine-readable output{where}.")


def _complete_interfaces(incomplete: str) -> list[str]:
    """Shell completion: the interfaces of this network namespace (/sys/class/net)."""
    try:
        names = [entry.name for entry in Path("/sys/class/net").iterdir()]
    except OSError:
        return []
    return sorted(name for name in names if name.startswith(incomplete))


def _complete_attached(incomplete: str) -> list[str]:
    """Shell completion: the interfaces pingkiller is attached to (their pin directories:
    a listing, no BPF call). Never fails: nothing to offer is an empty list."""
    try:
        from pingkiller import pins

        names = pins.listed_interfaces()
    except Exception:
        return []
    return [name for name in names if name.startswith(incomplete)]


def _interface(complete: Callable[[str], list[str]]) -> Any:
    """IFACE, completed by ``complete`` (the interfaces here, or those attached)."""
    return typer.Argument(help="Interface name, e.g. eth0.", show_default=False, metavar="IFACE",
                          autocompletion=complete)


_HOOKS = ["xdp", "tc"]
_DIRECTIONS = ["in", "out"]


def _hook_filter() -> Any:
    """--hook for verbs that act on an interface's attachments: which hook's."""
    return typer.Option("--hook", help="Only the attachment at this hook (default: every "
                                       "attachment of IFACE).",
                        click_type=_choice(_HOOKS), show_default=False)


def _direction_filter() -> Any:
    """--direction for verbs that act on an interface's attachments: which tc direction's."""
    return typer.Option("--direction", help="Only the tc attachment of this direction "
                                            "(default: both).",
                        click_type=_choice(_DIRECTIONS), show_default=False)


def _addresses() -> Any:
    return typer.Argument(help="IPv4/IPv6 addresses or prefixes.", show_default=False)


def _from_file() -> Any:
    return typer.Option(
        "--from-file", "-f", help="Read addresses/prefixes from FILE, one per line (# comments).",
        dir_okay=False, show_default=False,
    )


def _echo(text: str) -> None:
    """click.echo(text). A line of printable ASCII (all status and block print) is written
    and flushed as click.echo would, without importing click."""
    if sys.stdout is not None and text.isascii() and text.isprintable():
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        return
    import click

    click.echo(text)


def _print_json(data: object) -> None:
    import json

    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _version(value: bool) -> None:
    if value:
        from pingkiller import __version__

        _echo(f"pingkiller {__version__}")
        raise typer.Exit()


def _seconds(text: str) -> float:
    """--lock-timeout's value: seconds as pingkiller.lock reads them (as its variable)."""
    from pingkiller import lock

    try:
        return lock.parse_seconds(text)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None


def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
    lock_timeout: Annotated[
        float | None,
        typer.Option("--lock-timeout", parser=_seconds, metavar="S", show_default=False,
                     help="Commands that change attachments wait at most S seconds for another "
                          "one's pin lock, then fail (exit 1) naming it; 0 does not wait. "
                          "Default: PINGKILLER_LOCK_TIMEOUT, else 30."),
    ] = None,
) -> None:
    """Kill pings at the driver with XDP."""
    from pingkiller import lock

    # For this process (None: the variable, checked now, or the default).
    lock.set_timeout(lock_timeout)


@_verb()
def attach(
    ifname: Annotated[str, _interface(_complete_interfaces)],
    block: Annotated[
        list[str] | None,
        typer.Option("--block", "-b", help="Drop pings from/to ADDR (repeatable).", metavar="ADDR"),
    ] = None,
    allow: Annotated[
        list[str] | None,
        typer.Option("--allow", "-a", help="Let pings from/to ADDR pass (repeatable).", metavar="ADDR"),
    ] = None,
    default: Annotated[
        str | None,
        typer.Option(help="Pings no rule decides: drop or pass. [default: drop without --block, "
                          "pass with it]", show_default=False,
                     click_type=_choice(DEFAULT_ACTIONS.words)),
    ] = None,
    icmp: Annotated[
        str, typer.Option(help="What counts as a ping: echo (request+reply), "
                               "echo-request, or all ICMP (IPv6 NDP always passes).",
                          click_type=_choice(ICMP_SETS.words))
    ] = "echo",
    all_protocols: Annotated[
        bool, typer.Option("--all-protocols", help="Block rules drop every protocol, not only pings.")
    ] = False,
    mode: Annotated[
        str, typer.Option(help="XDP: native, generic or offload; tc: tcx (a link) or clsact "
                               "(a filter on the clsact qdisc, for kernels before 6.6). auto: "
                               "the kernel's choice for XDP, tcx where the kernel has it for tc.",
                          click_type=_choice([*XDP_MODES.words, "tcx", "clsact"]))
    ] = "auto",
    events: Annotated[
        str, typer.Option(help="Which packets send an event to `pingkiller events`.",
                          click_type=_choice(EVENT_MODES.words))
    ] = "drops",
    event_rate: Annotated[
        int, typer.Option(help="Events per second per CPU at most (0 = unlimited).", min=0,
                          metavar="N")
    ] = 1000,
    timing: Annotated[
        bool, typer.Option("--timing", help="Measure per-verdict processing time (costs 2 clock reads).")
    ] = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="Swap program and policy of an existing attachment "
                                             "atomically.")
    ] = False,
    hook: Annotated[
        str, typer.Option(help="xdp: the driver's hook (fastest; one program per interface; "
                               "arriving packets only). tc: a tcx link that runs beside other "
                               "programs, after them, in --direction.",
                          click_type=_choice(_HOOKS))
    ] = "xdp",
    direction: Annotated[
        str, typer.Option(help="tc only: in (arriving), out (leaving: the host's own pings), "
                               "or both (two attachments).",
                          click_type=_choice([*_DIRECTIONS, "both"]))
    ] = "in",
    as_json: Annotated[bool, _json("status")] = False,
) -> None:
    """Attach pingkiller to IFACE; it stays attached after this command exits.

    With no --block every ping is dropped; with --block only pings from or to the
    listed addresses are. --hook tc runs it beside other programs (another tool's XDP
    program, other tc programs), and --direction out stops the host's own pings to a
    blocked address before they leave. An interface can carry an XDP and tc
    attachments at once, each with its own rules and counters.

    Examples:

      pingkiller attach eth0

      pingkiller attach eth0 --block 192.168.1.78 --block 2001:db8::/32

      pingkiller attach eth0 --default drop --allow 10.0.0.0/8 --icmp all

      pingkiller attach eth0 --hook tc --direction both --block 192.0.2.9
    """
    import pingkiller
    from pingkiller.policy import default_action

    settings = pingkiller.Policy(
        default=DEFAULT_ACTIONS.parse(default) if default else default_action(blocking=bool(block)),
        icmp=ICMP_SETS.parse(icmp),
        all_protocols=all_protocols,
        events=EVENT_MODES.parse(events),
        event_rate=event_rate,
        timing=timing,
    )
    from pingkiller.hooks import TcMode

    # The library refuses a mode or a direction the hook does not have.
    how = TcMode(mode) if mode in ("tcx", "clsact") else XDP_MODES.parse(mode)
    if direction == "both" and hook != "tc":
        raise pingkiller.InvalidInput("--direction both needs --hook tc: XDP sees only packets "
                                      "that arrive")
    if direction == "both":
        made = pingkiller.attach_both(ifname, settings, block=block or [], allow=allow or [],
                                      mode=how, replace=replace)
    else:
        made = [pingkiller.attach(ifname, settings, hook=hook, direction=direction,
                                  block=block or [], allow=allow or [], mode=how,
                                  replace=replace)]
    infos = []
    for attachment in made:
        with attachment:
            infos.append(attachment.info())
    if as_json:
        _print_json(infos[0].to_json() if len(infos) == 1 else [i.to_json() for i in infos])
        return
    verb = "Replaced policy on" if replace else "Attached to"
    for info in infos:
        assert info.policy is not None
        where = info.point.label
        if info.chain:
            where += f", {_position(info)}"
        _echo(f"{verb} {where}: program {info.program_id}, {_attached_how(info)}")
    first = infos[0]
    assert first.policy is not None
    _echo(f"Policy: {first.policy.describe()}")
    blocked = sum(1 for rule in first.rules if rule.action == pingkiller.RuleAction.BLOCK)
    _echo(f"Rules: {blocked} block, {len(first.rules) - blocked} allow")


def _attached_how(info: AttachmentInfo) -> str:
    """How the program is held, in words: the XDP mode, a tcx link, or a clsact filter."""
    from pingkiller.abi import Hook

    if info.hook is Hook.XDP:
        return f"{info.mode_text} mode"
    return "clsact filter, not link-based" if info.clsact else "tcx link"


def _position(info: AttachmentInfo) -> str:
    """Where a tc attachment runs in its hook's chain, in words."""
    where, total = info.position, len(info.chain)
    if not total:
        return "its place among the hook's programs not known"
    if not where:
        return f"not in its hook's chain of {total}"
    others = [str(i) for i in info.chain if i != info.program_id]
    if not others:
        return "the only program of its hook"
    return f"program {where} of {total} on its hook (others: {', '.join(others)})"


def _one_or_all(does: str, ifname: str | None, every: bool, hook: str | None,
                direction: str | None) -> None:
    """Refuse IFACE with --all, neither, and --hook/--direction with --all."""
    from pingkiller.errors import InvalidInput

    if every == (ifname is not None):
        raise InvalidInput("name one interface, or give --all (not both)")
    if every and (hook or direction):
        raise InvalidInput(f"--all {does} every attachment: --hook and --direction go with IFACE")


@_verb()
def detach(
    ifname: Annotated[str | None, typer.Argument(help="Interface to detach from.",
                                                 show_default=False, metavar="IFACE",
                                                 autocompletion=_complete_attached)] = None,
    detach_all: Annotated[bool, typer.Option("--all", help="Detach every pingkiller attachment.")] = False,
    hook: Annotated[str | None, _hook_filter()] = None,
    direction: Annotated[str | None, _direction_filter()] = None,
    as_json: Annotated[bool, _json("detach")] = False,
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
        _print_json([{"interface": d.ifname, "hook": d.hook.label, "direction": d.direction.label,
                      "was_stale": d.was_stale} for d in done])
        return
    if not done:
        _echo("Nothing to detach.")
    for item in done:
        note = " (stale: its interface was gone; pins cleaned)" if item.was_stale else ""
        _echo(f"Detached from {item.point.label}{note}")


@_verb()
def upgrade(
    ifname: Annotated[str | None, typer.Argument(help="Interface whose attachment to upgrade.",
                                                 show_default=False, metavar="IFACE",
                                                 autocompletion=_complete_attached)] = None,
    upgrade_all: Annotated[bool, typer.Option("--all", help="Upgrade every attachment.")] = False,
    hook: Annotated[str | None, _hook_filter()] = None,
    direction: Annotated[str | None, _direction_filter()] = None,
    as_json: Annotated[bool, _json("upgrade")] = False,
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
        _print_json([item.to_json() for item in done])
        return
    if not done:
        _echo("Nothing to upgrade: there are no attachments.")
    for item in done:
        if item.upgraded:
            _echo(f"Upgraded {item.point.label}: program "
                  f"{item.from_program[:12] or 'unrecorded'} (ABI {item.from_abi}) -> "
                  f"{item.to_program[:12]}")
        else:
            _echo(f"{item.point.label} runs the installed program ({item.to_program[:12]}) "
                  "already")


def _change_rules(
    verb: str, ifname: str, addresses: list[str] | None, from_file: Path | None, as_json: bool,
    hook: str | None = None, direction: str | None = None,
) -> None:
    import pingkiller
    from pingkiller.policy import parse_networks
    from pingkiller.rules import RuleKeys, read_rule_keys

    keys = RuleKeys.of(parse_networks(addresses or []))
    if from_file is not None:
        keys += read_rule_keys(from_file)  # packed straight from the text: fast for big lists
    if not keys.requested:
        raise pingkiller.InvalidInput(f"give addresses to {verb}, or --from-file FILE")
    action = {"block": pingkiller.RuleAction.BLOCK, "allow": pingkiller.RuleAction.ALLOW,
              "unblock": None}[verb]
    atomic = from_file is not None or None  # a file: all or nothing, also under kill -9
    done = pingkiller.change_rules(ifname, keys, action, hook=hook, direction=direction,
                                   atomic=atomic)
    if as_json:
        _print_json({"interface": ifname, "action": verb, "requested": keys.requested,
                     "changed": sum(item.changed for item in done),
                     "rule_count": max(item.rule_count for item in done),
                     "attachments": [{"hook": item.hook.label, "direction": item.direction.label,
                                      "changed": item.changed, "rule_count": item.rule_count}
                                     for item in done]})
        return
    what = {"block": "Blocked", "allow": "Allowed", "unblock": "Removed rules for"}[verb]
    for item in done:
        point = item.point
        where = point.ifname if point.hook is pingkiller.Hook.XDP else f"{point.ifname} at {point.hook_text}"
        _echo(f"{what} {item.changed} of {keys.requested} on {where} ({item.rule_count} rules now)")


@_verb()
def block(
    ifname: Annotated[str, _interface(_complete_attached)],
    addresses: Annotated[list[str] | None, _addresses()] = None,
    from_file: Annotated[Path | None, _from_file()] = None,
    hook: Annotated[str | None, _hook_filter()] = None,
    direction: Annotated[str | None, _direction_filter()] = None,
    as_json: Annotated[bool, _json("block")] = False,
) -> None:
    """Drop pings from/to ADDRESSES on IFACE's running attachments, at once.

    Every attachment of IFACE (XDP and tc, each with its own rule table) gets the
    change; --hook and --direction say which only.

    Examples:

      pingkiller block eth0 192.168.1.78 10.0.0.0/8

      pingkiller block eth0 --from-file blocklist.txt
    """
    _change_rules("block", ifname, addresses, from_file, as_json, hook, direction)


@_verb()
def allow(
    ifname: Annotated[str, _interface(_complete_attached)],
    addresses: Annotated[list[str] | None, _addresses()] = None,
    from_file: Annotated[Path | None, _from_file()] = None,
    hook: Annotated[str | None, _hook_filter()] = None,
    direction: Annotated[str | None, _direction_filter()] = None,
    as_json: Annotated[bool, _json("allow")] = False,
) -> None:
    """Let pings from/to ADDRESSES pass on IFACE's running attachments (beats the default).

    Every attachment of IFACE gets the change; --hook and --direction say which only.

    Example:

      pingkiller allow eth0 192.168.1.1
    """
    _change_rules("allow", ifname, addresses, from_file, as_json, hook, direction)


@_verb()
def unblock(
    ifname: Annotated[str, _interface(_complete_attached)],
    addresses: Annotated[list[str] | None, _addresses()] = None,
    from_file: Annotated[Path | None, _from_file()] = None,
    hook: Annotated[str | None, _hook_filter()] = None,
    direction: Annotated[str | None, _direction_filter()] = None,
    as_json: Annotated[bool, _json("unblock")] = False,
) -> None:
    """Remove any rule (block or allow) for ADDRESSES on IFACE's running attachments.

    Every attachment of IFACE gets the change; --hook and --direction say which only.

    Example:

      pingkiller unblock eth0 192.168.1.78
    """
    _change_rules("unblock", ifname, addresses, from_file, as_json, hook, direction)


_STATUS_RULES = 50  # rules the human status lists by default


@_verb()
def status(
    ifname: Annotated[str | None, typer.Argument(help="Only this interface.",
                                                 show_default=False, metavar="IFACE",
                                                 autocompletion=_complete_attached)] = None,
    as_json: Annotated[bool, _json("status")] = False,
    max_rules: Annotated[int | None, typer.Option(
        help=f"List at most N rules of each attachment (default: {_STATUS_RULES}, all with "
             "--json); rule_count still counts them all.", min=0, metavar="N",
        show_default=False)] = None,
    hook: Annotated[str | None, _hook_filter()] = None,
    direction: Annotated[str | None, _direction_filter()] = None,
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
    limit = max_rules if max_rules is not None else (None if as_json else _STATUS_RULES)
    views = _status_views(ifname, limit, hook, direction)
    if as_json:
        _write_status_json(views)
        return
    shown = False
    for info, rules in views:
        _render_status(info, list(itertools.chain.from_iterable(rules)))
        shown = True
    if not shown:
        _echo("No pingkiller attachments. Attach one with `pingkiller attach IFACE`.")


def _status_views(ifname: str | None, limit: int | None, hook: str | None = None,
                  direction: str | None = None
                  ) -> Iterator[tuple[AttachmentInfo, Iterable[list[RuleEntry]]]]:
    """What status shows of each attachment: its info and its first ``limit`` rules
    (all when None: then streamed, a batch at a time, while the attachment is open)."""
    import pingkiller

    if ifname is None:
        found: Iterable[Attachment | AttachmentInfo] = pingkiller.each_attachment(
            hook=hook, direction=direction)
    else:  # named: pins it cannot read (another ABI version) are refused, as by every verb
        found = pingkiller.open_each(ifname, hook=hook, direction=direction, read_only=True)
    for each in found:
        if isinstance(each, pingkiller.AttachmentInfo):  # its maps cannot be read
            yield each, []
            continue
        with each:
            if limit is None:  # count, then stream
                yield each.info(with_rules=False), each.rule_entries()
            else:  # the count and the first rules in one pass
                scan = each.scan_rules(limit)
                yield each.info(with_rules=False, rule_count=scan.total), [scan.first]


_RULES_MARK = "\x00pingkiller-rules\x00"  # where the streamed rules go in an attachment's JSON


def _write_status_json(views: Iterator[tuple[AttachmentInfo, Iterable[list[RuleEntry]]]]) -> None:
    """status --json, written as it is read: the text ``json.dumps(list, indent=2)``
    would give, with every attachment's rules streamed a batch at a time."""
    import json

    out = sys.stdout
    marker = f'"rules": {json.dumps(_RULES_MARK)}'
    count = 0
    for info, rules in views:
        data = info.to_json()
        data["rules"] = _RULES_MARK
        text = json.dumps([data], indent=2)[2:-2]  # the object, indented as in the list
        head, tail = text.split(marker)
        out.write(("[\n" if count == 0 else ",\n") + head + '"rules": ')
        _write_rules_json(out, rules)
        out.write(tail)
        count += 1
    out.write("\n]\n" if count else "[]\n")


def _write_rules_json(out: Any, rules: Iterable[list[RuleEntry]]) -> None:
    words = {action: RULE_ACTIONS.word(action) for action in RULE_ACTIONS.members}
    written = 0
    for batch in rules:
        if not batch:
            continue
        out.write(("[\n" if written == 0 else ",\n") + ",\n".join(
            f'      {{\n        "address": "{rule.address}",\n        "action": '
            f'"{words[rule.action]}",\n        "hits": {rule.hits}\n      }}' for rule in batch))
        written += len(batch)
    out.write("\n    ]" if written else "[]")


def _render_status(info: AttachmentInfo, rules: list[RuleEntry]) -> None:
    from rich.console import Console
    from rich.table import Table

    from pingkiller.abi import Hook

    console = Console(highlight=False, soft_wrap=True)  # a pipe must not split commands
    point = info.point
    if info.stale:
        console.print(f"[bold]{point.label}[/]: STALE - {info.problem}; "
                      f"`pingkiller detach {point.options}` cleans it")
    elif point.hook is Hook.XDP:
        console.print(f"[bold]{info.ifname}[/] (ifindex {info.ifindex}): xdp, program "
                      f"{info.program_id}, link {info.link_id}, {info.mode.value} mode")
    elif info.clsact:
        console.print(f"[bold]{info.ifname}[/] (ifindex {info.ifindex}): tc (clsact, not "
                      f"link-based) {point.direction.label}, program {info.program_id}, "
                      f"priority {_clsact_priority()}, {_position(info)}")
    else:
        console.print(f"[bold]{info.ifname}[/] (ifindex {info.ifindex}): tc "
                      f"{point.direction.label}, program {info.program_id}, link "
                      f"{info.link_id}, tcx link, {_position(info)}")
    if not info.stale:
        if info.problem:
            console.print(f"  note: {info.problem}; it still filters")
        if info.outdated:
            running = info.program[:12] or "unrecorded"
            console.print(f"  outdated: it runs program {running} (ABI {info.abi_version}), not "
                          f"the installed one: `pingkiller upgrade {point.options}`")
    if info.policy is not None:
        policy = info.policy.to_json()
        console.print(f"  policy: {info.policy.describe()}")
        console.print(f"  events: {policy['events']} (at most {policy['event_rate']}/s per CPU), "
                      f"timing {'on' if info.policy.timing else 'off'}, rules: {info.rule_count}")
    if info.stats is not None:
        _render_counters(console, info.stats, None)
    if rules:
        table = Table(title=None, show_edge=False, pad_edge=False)
        table.add_column("rule")
        table.add_column("action")
        table.add_column("hits", justify="right")
        for rule in rules:
            table.add_row(rule.address, RULE_ACTIONS.word(rule.action), str(rule.hits))
        console.print(table)
    if info.rule_count > len(rules):
        console.print(f"  ... and {info.rule_count - len(rules)} more rules (--max-rules N lists "
                      "more, --json all)")


def _clsact_priority() -> int:
    from pingkiller.hooks import CLSACT_PRIORITY

    return CLSACT_PRIORITY


def _render_counters(console: Any, stats: Stats, rates: dict[Reason, float] | None) -> None:
    for item in _counter_renderables(stats, rates):
        console.print(item)


def _counter_renderables(stats: Stats, rates: dict[Reason, float] | None) -> list[Any]:
    """The counters table and its summary line, for a console to print or a Live to show."""
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    table.add_column("reason")
    table.add_column("packets", justify="right")
    table.add_column("bytes", justify="right")
    if rates is not None:
        table.add_column("pps", justify="right")
    for reason, counter in stats.reasons.items():
        row = [reason.label, str(counter.packets), str(counter.bytes)]
        if rates is not None:
            row.append(f"{rates[reason]:.1f}")
        table.add_row(*row)
    return [table, f"  dropped {stats.dropped}, passed {stats.passed}; events sent "
                   f"{stats.events_sent}, suppressed {stats.events_suppressed}, lost {stats.events_lost}"]


def _stats_lines(stats: Stats) -> list[str]:
    from pingkiller.stats import TIMED_VERDICTS

    lines = []
    for verdict, word in TIMED_VERDICTS.items():
        average = stats.average_ns(verdict)
        if average is not None:
            lines.append(f"  average processing time ({word}): {average:.0f} ns")
    run = stats.average_run_ns
    lines.append(
        f"  kernel run time: {run:.0f} ns per packet over {stats.run_count} runs" if run
        else "  kernel run time: n/a (use --watch, or `sysctl kernel.bpf_stats_enabled=1`)"
    )
    return lines


@_verb()
def stats(
    ifname: Annotated[str, _interface(_complete_attached)],
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.", min=0.1,
                                            metavar="S")] = 1.0,
    per_cpu: Annotated[bool, typer.Option("--per-cpu", help="Also show each CPU's counters.")] = False,
    hook: Annotated[str | None, _hook_filter()] = None,
    direction: Annotated[str | None, _direction_filter()] = None,
    as_json: Annotated[bool, _json("stats")] = False,
) -> None:
    """Counters and rates (pps) by reason, processing time, kernel run time.

    With --watch the kernel's BPF run-time stats are switched on while it runs; it
    stops with exit code 1 when the attachment is detached meanwhile, and carries on
    across `attach --replace` (the counters carry over).

    Examples:

      pingkiller stats eth0

      pingkiller stats eth0 --watch --interval 0.5
    """
    import pingkiller

    with pingkiller.open(ifname, hook=hook, direction=direction, read_only=True) as attachment:
        if not watch:
            _show_stats(ifname, attachment.stats(per_cpu=per_cpu), None, as_json)
            return
        samples = attachment.watch_stats(interval, per_cpu=per_cpu)
        try:
            if not as_json and sys.stdout.isatty():
                _watch_live(ifname, samples)  # one block, redrawn in place
            for current, rates in samples:  # piped: a block (or a JSON line) per interval
                if not as_json:
                    sys.stdout.write("\n")
                _show_stats(ifname, current, rates, as_json)
        except KeyboardInterrupt:
            pass
        finally:
            samples.close()


def _watch_live(ifname: str, samples: Iterator[tuple[Stats, dict[Reason, float]]]) -> None:
    """`stats --watch` on a terminal: rich Live redraws the block in place; notices on
    stderr (e.g. the program was replaced) print above it."""
    from rich.console import Console, Group
    from rich.live import Live

    console = Console(highlight=False)
    with Live(console=console, auto_refresh=False, redirect_stderr=True) as live:
        for current, rates in samples:
            live.update(Group(*_stats_renderables(ifname, current, rates)), refresh=True)


def _show_stats(ifname: str, current: Stats, rates: dict[Reason, float] | None,
                as_json: bool) -> None:
    if as_json:
        import json

        data = current.to_json()
        data["interface"] = ifname
        if rates is not None:
            data["pps"] = {reason.label: rate for reason, rate in rates.items()}
        sys.stdout.write(json.dumps(data) + "\n")
        sys.stdout.flush()
        return
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    for item in _stats_renderables(ifname, current, rates):
        console.print(item)
    sys.stdout.flush()


def _stats_renderables(ifname: str, current: Stats, rates: dict[Reason, float] | None) -> list[Any]:
    """What `stats` shows of one snapshot, line by line (rich markup and tables)."""
    items: list[Any] = [f"[bold]{ifname}[/]", *_counter_renderables(current, rates),
                        *_stats_lines(current)]
    if current.per_cpu is not None:
        for cpu, counters in enumerate(current.per_cpu):
            busy = ", ".join(f"{r.label} {c.packets}" for r, c in counters.items() if c.packets)
            items.append(f"  cpu {cpu}: {busy or 'no packets'}")
    return items


@_verb()
def events(
    ifname: Annotated[str, _interface(_complete_attached)],
    count: Annotated[int | None, typer.Option(help="Stop after N events; the ones after them stay "
                                                   "in the ring for the next reader.",
                                              min=1, metavar="N")] = None,
    timeout: Annotated[float | None, typer.Option(help="Stop after S seconds.", min=0,
                                                  metavar="S")] = None,
    backlog: Annotated[bool, typer.Option("--backlog", help="First the events buffered before it "
                                                            "started (marked backlog), which are "
                                                            "skipped otherwise.")] = False,
    hook: Annotated[str | None, _hook_filter()] = None,
    direction: Annotated[str | None, _direction_filter()] = None,
    as_json: Annotated[bool, _json("events")] = False,
) -> None:
    """Stream per-packet events from now on (one JSON object per line with --json).

    Each line starts with the packet's local time. Events the ring buffered before it
    started (nobody was reading; they may be hours old) are skipped, and counted on
    stderr at the start; --backlog shows them first, marked "backlog". Which packets send
    events is set at attach time (--events). Ctrl-C stops cleanly; the end reports how
    many events were received, suppressed and lost. It stops with exit code 1 when the
    attachment is detached meanwhile; across `attach --replace` it carries on (the event
    ring carries over).

    Examples:

      pingkiller events eth0

      pingkiller events eth0 --json --count 10 --timeout 30

      pingkiller events eth0 --backlog --count 100
    """
    import json

    import pingkiller
    from pingkiller.killer import AttachmentEnded

    ended: AttachmentEnded | None = None
    with pingkiller.open(ifname, hook=hook, direction=direction, read_only=True) as attachment, \
            attachment.follow_events(count=count, timeout=timeout, backlog=backlog) as feed:
        stream = feed.stream
        _events_start(ifname, stream.skipped, stream.buffered, as_json)
        try:
            for batch in feed:
                for index, event in enumerate(batch):
                    old = batch.is_backlog(index)
                    if as_json:
                        sys.stdout.write(json.dumps(event.to_json(stream.clock, backlog=old)) + "\n")
                    else:
                        sys.stdout.write(event.line(stream.clock, backlog=old) + "\n")
                sys.stdout.flush()
        except KeyboardInterrupt:
            pass
        except AttachmentEnded as err:
            ended = err  # said after the summary, as the one error line
        summary = feed.summary()
    if as_json:
        sys.stderr.write(json.dumps({"summary": summary.to_json()}) + "\n")
    else:
        sys.stderr.write(f"{summary.received} events received; {summary.suppressed} suppressed "
                         f"by the rate limit, {summary.lost} lost (ring full) meanwhile\n")
    if ended is not None:
        raise ended


@_verb()
def demo(
    duration: Annotated[float, typer.Option(help="Seconds to run.", min=1, metavar="S")] = 10.0,
    as_json: Annotated[bool, _json()] = False,
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
    from pingkiller import demo as demo_module

    if as_json:
        state = demo_module.run(duration)
        _print_json(state.to_json())
    else:
        state = demo_module.run_live(duration, sys.stdout)
        for line in demo_module.summary_lines(state):
            _echo(line)
    if state.interrupted:
        raise typer.Exit(130)
    if state.problems():
        raise typer.Exit(1)


def _events_start(ifname: str, skipped: int, buffered: int, as_json: bool) -> None:
    """The line on stderr that says `events` reads now, and what it skipped or reads first."""
    if as_json:
        import json

        start = {"interface": ifname, "skipped": skipped, "backlog": buffered}
        sys.stderr.write(json.dumps({"start": start}) + "\n")
    elif buffered:
        sys.stderr.write(f"Events on {ifname}: first the {buffered} buffered before now (marked "
                         "backlog), then as they happen\n")
    elif skipped:
        sys.stderr.write(f"Events on {ifname} from now on: {skipped} buffered before now were "
                         "skipped (--backlog shows them)\n")
    else:
        sys.stderr.write(f"Events on {ifname} from now on\n")
    sys.stderr.flush()


@_verb()
def doctor(
    interface: Annotated[
        str | None,
        typer.Option("--interface", "-i", help="Also try XDP native mode on IF (attaches a "
                                               "pass-all program and detaches it at once).",
                     metavar="IF", show_default=False, autocompletion=_complete_interfaces),
    ] = None,
    as_json: Annotated[bool, _json()] = False,
) -> None:
    """Check that this machine can run pingkiller; each problem comes with its fix.

    Kernel and BTF, bpffs, capabilities, libbpf, the embedded BPF object, and with
    --interface whether native XDP mode works there. Exits 1 if something needed is missing.

    Examples:

      pingkiller doctor

      sudo pingkiller doctor --interface eth0
    """
    from pingkiller import doctor as doctor_module

    checks, report = doctor_module.run(interface)
    ok = doctor_module.healthy(checks)
    if as_json:
        _print_json({"ok": ok, "checks": [c.to_json() for c in checks], "object": report.to_json()})
    else:
        for check in checks:
            _echo(check.line())
        _echo(f"       maps: {', '.join(report.maps)}")
        shown = [s for s in report.sections if not s.startswith((".debug", ".rel"))]
        _echo(f"       sections: {', '.join(shown)} (+ debug and relocation sections)")
        _echo("All needed pieces are there." if ok else "Something needed is missing: "
                   "see the fixes above.")
    if not ok:
        raise typer.Exit(1)


def _complete_verbs(ctx: click.Context, incomplete: str) -> list[str]:
    root = ctx.find_root()
    group = root.command
    verbs = group.list_commands(root) if isinstance(group, click.Group) else []
    return [verb for verb in verbs if verb.startswith(incomplete)]


@_verb("help")
def help_verb(
    ctx: typer.Context,
    verb: Annotated[str | None, typer.Argument(help="The verb to explain.", show_default=False,
                                               metavar="VERB", autocompletion=_complete_verbs)] = None,
) -> None:
    """Show pingkiller's help, or VERB's (what `pingkiller VERB --help` shows).

    Examples:

      pingkiller help

      pingkiller help attach
    """
    root = ctx.find_root()
    group = root.command
    assert isinstance(group, click.Group)
    if verb is None:
        _echo(root.get_help())
        return
    command = group.get_command(root, verb)
    if command is None:
        raise _click_errors().UsageError(unknown_verb(verb, group.list_commands(root)), root)
    with click.Context(command, info_name=verb, parent=root, **command.context_settings) as sub:
        _echo(command.get_help(sub))


def _exit_cleanly_on_sigterm() -> None:
    """Let SIGTERM (systemd stop, Kubernetes) end a long-running command like Ctrl-C does."""
    import signal

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _log_stderr(message: str) -> None:
    sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} pingkiller: "
                     f"{untrusted.one_line(message)}\n")
    sys.stderr.flush()


@_verb("apply")
def apply_policy(
    file: Annotated[
        Path, typer.Option("--file", "-f", help="The policy file (TOML; man pingkiller-apply).",
                           dir_okay=False, show_default=False),
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan, change nothing.")] = False,
    watch: Annotated[
        bool, typer.Option("--watch", help="Stay running; apply again whenever the file changes.")
    ] = False,
    interval: Annotated[
        float, typer.Option(help="Seconds between checks of the file with --watch.", min=0.05,
                            metavar="S")
    ] = 2.0,
    as_json: Annotated[bool, _json("apply", "docs/operations.md")] = False,
) -> None:
    """Make the running attachments match a policy file: attach, update, detach.

    Only differences are applied (new rules before stale ones go); pingkiller
    attachments the file does not list are detached, nothing else is touched. An
    invalid file is rejected whole and nothing is changed.

    Examples:

      pingkiller apply -f /etc/pingkiller/policy.toml --dry-run

      pingkiller apply -f /etc/pingkiller/policy.toml --watch
    """
    from pingkiller import declarative

    if watch:
        if dry_run or as_json:
            raise typer.BadParameter("--watch cannot be combined with --dry-run or --json")
        _exit_cleanly_on_sigterm()
        try:
            declarative.watch(file, _log_stderr, interval=interval)
        except KeyboardInterrupt:
            _log_stderr("stopped; attachments stay as they are")
        return
    plan = declarative.reconcile(file, dry_run=dry_run)
    if as_json:
        _print_json({**plan.to_json(), "dry_run": dry_run})
        return
    for step in plan.steps:
        _echo(("would " if dry_run else "") + step.describe())
    if not plan.changed:
        _echo(f"No changes: the running state matches {file}.")
    elif dry_run:
        _echo(f"Dry run: {len(plan.steps)} change(s) planned, nothing changed.")
    else:
        _echo(f"Applied {len(plan.steps)} change(s).")


@_verb()
def export(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to FILE instead of stdout.",
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

    from pingkiller import declarative

    with declarative.export_file() as text:
        if output is None:
            shutil.copyfileobj(text, sys.stdout)
            return
        from pingkiller import trust

        try:
            trust.write_private(output, lambda out: shutil.copyfileobj(text, out))
        except OSError as err:
            from pingkiller.errors import InvalidInput
            from pingkiller.untrusted import quote_path

            raise InvalidInput(f"cannot write {quote_path(output)}: {err.strerror}") from None


@_verb()
def exporter(
    listen: Annotated[
        str, typer.Option(help="Serve /metrics on HOST:PORT.", metavar="HOST:PORT")
    ] = "127.0.0.1:9477",
    rule_metrics: Annotated[
        bool, typer.Option("--rule-metrics/--no-rule-metrics", help="Export per-rule hit counters.")
    ] = True,
    max_rule_series: Annotated[
        int, typer.Option(help="Skip rule hit series of attachments with more than N rules.", min=0,
                          metavar="N")
    ] = 1000,
    run_time_stats: Annotated[
        bool, typer.Option("--run-time-stats", help="Switch on the kernel's BPF run-time stats "
                                                   "while serving (costs a little per packet).")
    ] = False,
    max_scrapes: Annotated[
        int, typer.Option(help="Answer at most N scrapes at once; one more gets 503 at once.",
                          min=1, max=64, metavar="N")
    ] = 4,
) -> None:
    """Serve Prometheus metrics of every attachment until stopped.

    Only /metrics, /readyz and /livez answer (404 elsewhere). A scrape counts every
    rule (~0.35 s per million) but reads hit counters only of the series it exports.
    A client has 5 s to send its request; idle connections cost no thread.

    Example:

      pingkiller exporter --listen 127.0.0.1:9477
    """
    from contextlib import nullcontext

    from pingkiller import exporter as metrics
    from pingkiller import stats as counters

    collector = metrics.PingkillerCollector(rule_metrics=rule_metrics,
                                            max_rule_series=max_rule_series)
    server, _ = metrics.serve(listen, collector, max_scrapes=max_scrapes)
    switch = counters.run_time_stats(required=True) if run_time_stats else nullcontext(False)
    with switch:
        _exit_cleanly_on_sigterm()
        _log_stderr(f"serving metrics on http://{listen}/metrics")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            server.shutdown()


def _fail(message: str, code: int) -> NoReturn:
    sys.stderr.write(f"pingkiller: {untrusted.one_line(message)}\n")
    raise SystemExit(code)


class _NoticeHandler(logging.Handler):
    """The library's notices (``pingkiller.*`` loggers, WARNING and up, not the binding's
    libbpf log) as one ``pingkiller: ...`` line each on stderr: e.g. what a writer's
    recovery finished, or whose lock it waits for."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.addFilter(lambda record: not record.name.startswith("pingkiller.bpf"))

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(f"pingkiller: {record.getMessage()}\n")
        sys.stderr.flush()


def _show_notices() -> None:
    library = logging.getLogger("pingkiller")
    if not any(isinstance(h, _NoticeHandler) for h in library.handlers):
        library.addHandler(_NoticeHandler())


def _fast_call(args: list[str]) -> tuple[Callable[..., None], dict[str, Any]] | None:
    """The call typer would make of ``status [IFACE]`` or ``block IFACE ADDR...``, each
    with or without --json, made without importing typer. None for every other command
    line (any other word starting with "-": an option, --help, "--"; a missing or extra
    argument; shell completion): typer parses those."""
    if not args or os.environ.get("_PINGKILLER_COMPLETE"):
        return None
    verb, rest = args[0], args[1:]
    words = [word for word in rest if word != "--json"]
    if any(word.startswith("-") for word in words):
        return None
    as_json = len(words) < len(rest)
    if verb == "status" and len(words) <= 1:
        return status, {"ifname": words[0] if words else None, "as_json": as_json,
                        "max_rules": None, "hook": None, "direction": None}
    if verb == "block" and len(words) >= 2:
        return block, {"ifname": words[0], "addresses": words[1:], "from_file": None,
                       "as_json": as_json, "hook": None, "direction": None}
    return None


def _run_fast(verb: Callable[..., None], params: dict[str, Any]) -> None:
    """Run the root callback and ``verb(**params)`` as typer's main runs them."""
    try:
        _root()
        verb(**params)
    except EOFError:  # typer: click.Abort, which main reports so
        sys.stderr.write("\n")
        _fail("aborted", 130)
    except OSError as err:
        if err.errno != errno.EPIPE:
            raise
        from click.utils import PacifyFlushWrapper  # typer: exit 1, and quiet at exit

        sys.stdout = cast("TextIO", PacifyFlushWrapper(sys.stdout))
        sys.stderr = cast("TextIO", PacifyFlushWrapper(sys.stderr))
        raise SystemExit(1) from None


def _exit_on_click_error(err: Exception) -> None:
    """One line on stderr and exit for click's errors (usage: 2); returns for others."""
    import typer

    errors = _click_errors()
    if isinstance(err, errors.UsageError):
        if type(err).__name__ == "NoArgsIsHelpError":
            sys.stdout.write(err.format_message() + "\n")
            raise SystemExit(2) from None
        hint = f" (see '{err.ctx.command_path} --help')" if err.ctx else ""
        _fail(f"{err.format_message()}{hint}", 2)
    if isinstance(err, errors.ClickException):
        _fail(err.format_message(), err.exit_code)
    aborts = tuple(c for c in (getattr(errors, "Abort", None), typer.Abort) if c is not None)
    if isinstance(err, aborts):
        _fail("aborted", 130)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the verb, turning every expected error into one line and an exit code."""
    from pingkiller import BpfError
    from pingkiller.errors import PingkillerError

    _show_notices()
    fast = _fast_call(sys.argv[1:] if argv is None else argv)
    try:
        if fast is not None:
            _run_fast(*fast)
            result: Any = 0
        else:
            result = _app()(args=argv, prog_name="pingkiller", standalone_mode=False)
    except PingkillerError as err:
        _fail(str(err), err.exit_code)
    except BpfError as err:
        _fail(f"{err}", 1)
    except OSError as err:  # e.g. a file the user named cannot be read or written
        where = f" ({err.filename})" if err.filename else ""
        _fail(f"{err.strerror or err}{where}", 1)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as err:
        if fast is None:  # click's errors come from typer's parse only
            _exit_on_click_error(err)
        raise
    raise SystemExit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()

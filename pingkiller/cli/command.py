"""The verb table, the typer app made from it, and ``main``.

Start-up time: importing typer and click, and typer making the command tree from every
verb's signature, cost several times what ``status IFACE`` itself does. So verbs are
plain functions registered here by :func:`verb`, and the typer app (what --help, usage
errors and the man pages come from) is made on first use. A verb registered with a
:class:`Fast` shape (``status [IFACE]``, ``block IFACE ADDR...``) is called directly when
the command line has only that shape and its plain flags: the call typer would make,
with the function's own defaults; every other command line goes through typer.
"""

from __future__ import annotations

import errno
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO, TypeVar, cast

from pingkiller.cli.errors import describe, fail, show_notices
from pingkiller.model.untrusted import parse_float, parse_int, quote

if TYPE_CHECKING:
    import click
    import typer

HELP = (
    "Kill pings at the driver with XDP.\n\n"
    "Examples:\n\n"
    "  pingkiller attach eth0                       # drop every ping\n\n"
    "  pingkiller attach eth0 --block 192.168.1.78  # drop only pings from/to it\n\n"
    "  pingkiller status\n\n"
    "  pingkiller detach eth0"
)

# Where a verb is documented at length in the source tree (docs/cli.md unless named here).
_DOCS = {"demo": "README.md", "doctor": "docs/troubleshooting.md", "apply": "docs/operations.md",
         "export": "docs/operations.md", "exporter": "docs/operations.md",
         "exporter-broker": "docs/operations.md"}
# The modules that register verbs, in --help order; help imports typer, the others do
# not at import. The fast path imports only those with Fast verbs.
VERB_MODULES = ("attach", "lifetime", "rules", "status", "stats", "events", "machine", "help",
                "policy_files", "metrics")
FAST_MODULES = ("rules", "status")


@dataclass(frozen=True)
class Fast:
    """The command lines a verb may take without typer: ``positional`` arguments (then
    ``optional`` ones, then any number of ``variadic`` ones), and the boolean ``flags``
    (option -> parameter); anything else goes through typer."""

    positional: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    variadic: str | None = None
    flags: dict[str, str] = field(default_factory=lambda: {"--json": "as_json"})


@dataclass(frozen=True)
class Verb:
    name: str
    function: Callable[..., None]
    fast: Fast | None


VERBS: list[Verb] = []
_F = TypeVar("_F", bound=Callable[..., None])


def verb(name: str | None = None, *, fast: Fast | None = None) -> Callable[[_F], _F]:
    """Register a verb (named after its function unless ``name``)."""
    def register(function: _F) -> _F:
        VERBS.append(Verb(name or function.__name__.replace("_", "-"), function, fast))
        return function
    return register


def _registered(modules: tuple[str, ...] = VERB_MODULES) -> list[Verb]:
    """The verbs of ``modules``, in --help order."""
    import importlib

    for module in modules:
        importlib.import_module(f"pingkiller.cli.{module}")
    order = {f"pingkiller.cli.{module}": index for index, module in enumerate(VERB_MODULES)}
    return sorted((v for v in VERBS if v.function.__module__.rpartition(".")[2] in modules),
                  key=lambda v: order[v.function.__module__])


def fast_call(args: list[str]) -> tuple[Callable[..., None], dict[str, Any]] | None:
    """The call typer would make of ``args`` for a verb with a :class:`Fast` shape, or
    None (an option it does not know, --help, "--", a wrong count, shell completion)."""
    if not args or os.environ.get("_PINGKILLER_COMPLETE"):
        return None
    found = [v for v in _registered(FAST_MODULES) if v.name == args[0] and v.fast is not None]
    if not found:
        return None
    function, shape = found[0].function, found[0].fast
    assert shape is not None
    params = {name: p.default for name, p in inspect.signature(function).parameters.items()}
    words = []
    for word in args[1:]:
        if word in shape.flags:
            params[shape.flags[word]] = True
        elif word.startswith("-"):
            return None
        else:
            words.append(word)
    required, optional = len(shape.positional), len(shape.optional)
    if len(words) < required or (shape.variadic is None and len(words) > required + optional):
        return None
    for name in (*shape.positional, *shape.optional):
        if words:
            params[name] = words.pop(0)
    if shape.variadic is not None:
        if not words:
            return None
        params[shape.variadic] = words
    return function, params


def doc_path(command_path: str) -> str:
    """The document of ``pingkiller VERB ...`` in the source tree, e.g. docs/cli.md."""
    words = command_path.split()
    return _DOCS.get(words[1], "docs/cli.md") if len(words) > 1 else "docs/cli.md"


def unknown_verb(name: str, verbs: list[str]) -> str:
    """``No such command 'atach'. Did you mean 'attach'?`` (one suggestion line at most)."""
    from difflib import get_close_matches

    close = [repr(verb) for verb in get_close_matches(name, verbs)]
    hint = f" Did you mean {', '.join(close[:-1])} or {close[-1]}?" if len(close) > 1 else (
        f" Did you mean {close[0]}?" if close else "")
    return f"No such command {name!r}.{hint}"


def click_errors() -> Any:
    """Where typer takes click's exception classes from (typer may vendor click)."""
    import typer

    return sys.modules[typer.BadParameter.__module__]


def _ascii_number(value: Any, whole: bool, kind: click.ParamType[Any],
                  param: click.Parameter | None, ctx: click.Context | None) -> Any:
    """A number typed as text in ASCII digits (int() and float() also take other
    Unicode digits, e.g. fullwidth ones)."""
    if not isinstance(value, str):
        return value  # a default
    try:
        return parse_int(value) if whole else parse_float(value)
    except ValueError as err:
        kind.fail(str(err), param, ctx)


def _safe_type(kind: click.ParamType[Any]) -> click.ParamType[Any]:
    """The type an option gets: numbers in ASCII digits only, bad choices quoted short."""
    import click

    class Ascii(click.ParamType[Any]):
        """A number type that first refuses digits other than ASCII ones."""

        integer = True

        def convert(self, value: Any, param: click.Parameter | None,
                    ctx: click.Context | None) -> Any:
            return super().convert(_ascii_number(value, self.integer, self, param, ctx), param, ctx)

    class AsciiInt(Ascii, click.types.IntParamType):
        pass

    class AsciiIntRange(Ascii, click.IntRange):
        pass

    class AsciiFloat(Ascii, click.types.FloatParamType):
        integer = False

    class AsciiFloatRange(Ascii, click.FloatRange):
        integer = False

    class QuotingChoice(click.Choice[str]):
        def get_invalid_choice_message(self, value: Any, ctx: click.Context | None) -> str:
            return f"{quote(str(value))} is not one of {', '.join(map(repr, self.choices))}."

    if isinstance(kind, click.IntRange):
        return AsciiIntRange(kind.min, kind.max, kind.min_open, kind.max_open, kind.clamp)
    if isinstance(kind, click.FloatRange):
        return AsciiFloatRange(kind.min, kind.max, kind.min_open, kind.max_open, kind.clamp)
    if type(kind) is click.types.IntParamType:
        return AsciiInt()
    if type(kind) is click.types.FloatParamType:
        return AsciiFloat()
    if type(kind) is click.Choice:
        return QuotingChoice([str(choice) for choice in kind.choices], kind.case_sensitive)
    return kind


def make_app() -> typer.Typer:
    """The typer app of every verb."""
    import typer
    from typer.core import TyperCommand, TyperGroup

    def point_at_manual(ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_paragraph()
        page = ctx.command_path.replace(" ", "-")
        formatter.write_text(f"Manual: man {page}; {doc_path(ctx.command_path)} in the source.")

    class Command(TyperCommand):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            for param in self.params:  # every option of every verb, whoever declares it
                param.type = _safe_type(param.type)

        def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
            super().format_epilog(ctx, formatter)
            point_at_manual(ctx, formatter)

    class Group(TyperGroup):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            for param in self.params:
                param.type = _safe_type(param.type)

        def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
            super().format_epilog(ctx, formatter)
            point_at_manual(ctx, formatter)

        def resolve_command(
            self, ctx: click.Context, args: list[str]
        ) -> tuple[str | None, click.Command | None, list[str]]:
            # click (8.2+) and typer each add their own "Did you mean"; say it once.
            name = args[0] if args else ""
            if name and not name.startswith("-") and self.get_command(ctx, name) is None:
                raise click_errors().UsageError(unknown_verb(name, self.list_commands(ctx)), ctx)
            return super().resolve_command(ctx, args)

    from pingkiller.cli.root import root

    made = typer.Typer(name="pingkiller", cls=Group, help=HELP, no_args_is_help=True,
                       pretty_exceptions_enable=False, rich_markup_mode=None,
                       context_settings={"help_option_names": ["-h", "--help"]})
    made.callback()(root)
    for each in _registered():
        made.command(each.name, cls=Command)(each.function)
    return made


_APP: list[typer.Typer] = []  # made once


def app() -> typer.Typer:
    """The typer app (made on first use)."""
    if not _APP:
        _APP.append(make_app())
    return _APP[0]


def _run_fast(function: Callable[..., None], params: dict[str, Any]) -> None:
    """Run the root callback and the verb as typer's main runs them."""
    from pingkiller.cli.root import root

    try:
        root()
        function(**params)
    except EOFError:  # typer: click.Abort, which main reports so
        sys.stderr.write("\n")
        fail("aborted", 130)
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

    errors = click_errors()
    if isinstance(err, errors.UsageError):
        if type(err).__name__ == "NoArgsIsHelpError":
            sys.stdout.write(err.format_message() + "\n")
            raise SystemExit(2) from None
        hint = f" (see '{err.ctx.command_path} --help')" if err.ctx else ""
        fail(f"{err.format_message()}{hint}", 2)
    if isinstance(err, errors.ClickException):
        fail(err.format_message(), err.exit_code)
    aborts = tuple(c for c in (getattr(errors, "Abort", None), typer.Abort) if c is not None)
    if isinstance(err, aborts):
        fail("aborted", 130)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the verb, turning every expected error into one line and an exit code."""
    from pingkiller.model.errors import PingkillerError

    show_notices()
    fast = fast_call(sys.argv[1:] if argv is None else argv)
    try:
        if fast is not None:
            _run_fast(*fast)
            result: Any = 0
        else:
            result = app()(args=argv, prog_name="pingkiller", standalone_mode=False)
    except PingkillerError as err:
        fail(describe(err), err.exit_code)
    except OSError as err:  # e.g. a file the user named cannot be read or written
        where = f" ({err.filename})" if err.filename else ""
        fail(f"{err.strerror or err}{where}", 1)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as err:
        if fast is None:  # click's errors come from typer's parse only
            _exit_on_click_error(err)
        raise
    raise SystemExit(result if isinstance(result, int) else 0)

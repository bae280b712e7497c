"""attach: load the program with a policy and rules, then put it on a hook, pinned (it
outlives the process) or private (it lives until closed); or swap it in (replace)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pingkiller import hooks
from pingkiller.attachment import Attachment
from pingkiller.attachment.opening import open_writer
from pingkiller.attachment.tracking import pinned_in
from pingkiller.attachment.writer import Rules, wanted_rules
from pingkiller.hooks import Strategy
from pingkiller.model.enums import Direction, Hook, LinkState, Mode, RuleAction
from pingkiller.model.errors import AlreadyAttached, InvalidInput, Remedy
from pingkiller.model.limits import Limit
from pingkiller.model.network import NetworkLike
from pingkiller.model.point import Point
from pingkiller.model.policy import Policy, default_action
from pingkiller.model.words import DIRECTIONS, HOOKS
from pingkiller.ops.common import store_at
from pingkiller.ops.listing import PinRoot
from pingkiller.publish import CARRIED_MAPS, load, publish
from pingkiller.store import Store
from pingkiller.store.records import read_identity
from pingkiller.system import capabilities, interfaces


def attach(
    ifname: str,
    policy: Policy | None = None,
    *,
    hook: Hook | str = Hook.XDP,
    direction: Direction | str = Direction.IN,
    block: Iterable[NetworkLike] = (),
    allow: Iterable[NetworkLike] = (),
    limit: Mapping[Limit, Iterable[NetworkLike]] | None = None,
    mode: Mode | str = Mode.AUTO,
    replace: bool = False,
    persist: bool = True,
    pin_root: PinRoot = None,
) -> Attachment:
    """Attach pingkiller to ``ifname`` with a :class:`Policy` and rules; returns the attachment.

    ``policy`` says what happens to pings no rule decides, what counts as a ping, and what
    is reported. Without one, every setting has its default and pings no rule decides are
    dropped when no ``block`` rule is given (kill every ping), passed otherwise (kill only
    the listed pings). ``block`` and ``allow`` are addresses or prefixes, as text or
    ``ipaddress`` objects (an IPv4-mapped IPv6 address is its IPv4 address); ``limit``
    maps a :class:`Limit` to the addresses and prefixes limited to it.

    ``hook`` is ``xdp`` (the default: the driver's hook, fastest, one program per
    interface, packets that arrive only) or ``tc`` (runs beside other programs of the
    hook, after them, and sees ``direction`` ``in`` or ``out``, the host's own pings
    included; :func:`attach_both` takes both directions). ``mode`` is how to hold the
    hook: AUTO (the kernel's choice), NATIVE or GENERIC for XDP, TCX (a link) or CLSACT
    (a filter on the clsact qdisc, for kernels before 6.6) for tc. An interface can carry
    an XDP attachment and tc ones at once, each with its own maps.

    The program is loaded, configured and filled with rules before it is attached, so it
    never runs half-configured. ``replace`` swaps program and policy of an existing
    attachment atomically, keeping its counters and events. ``persist=False`` pins
    nothing: the attachment lives until closed. ``pin_root``: see :func:`pingkiller.open`.
    """
    point = Point(ifname, HOOKS.coerce(hook), DIRECTIONS.coerce(direction))
    (made,) = _attach([point], policy, wanted_rules(block, allow, limit), mode, replace, persist,
                      pin_root)
    return made


def attach_both(
    ifname: str,
    policy: Policy | None = None,
    *,
    block: Iterable[NetworkLike] = (),
    allow: Iterable[NetworkLike] = (),
    limit: Mapping[Limit, Iterable[NetworkLike]] | None = None,
    mode: Mode | str = Mode.AUTO,
    replace: bool = False,
    persist: bool = True,
    pin_root: PinRoot = None,
) -> list[Attachment]:
    """:func:`attach` at ``ifname``'s tc hook in both directions: two attachments, in
    then out, each with its own maps and the same policy and rules; all or nothing."""
    both = [Point(ifname, Hook.TC, direction) for direction in Direction]
    return _attach(both, policy, wanted_rules(block, allow, limit), mode, replace, persist,
                   pin_root)


def _attach(points: list[Point], policy: Policy | None, rules: Rules, mode: Mode | str,
            replace: bool, persist: bool, pin_root: PinRoot) -> list[Attachment]:
    blocking = any(len(networks) for action, _, networks in rules if action is RuleAction.BLOCK)
    policy = policy or Policy(default_action(blocking=blocking))
    strategies = [hooks.for_attach(point, mode) for point in points]
    capabilities.require(load=True)
    ifindex = interfaces.interface_index(points[0].ifname)
    interfaces.check_ethernet(points[0].ifname)
    if not persist:
        return _private(points, strategies, ifindex, policy, rules)
    store = store_at(pin_root)
    store.check_access(write=True)
    with store.writer() as recovered:
        made: list[Attachment] = []
        try:
            for point, (strategy, asked) in zip(points, strategies, strict=True):
                made.append(_attach_pinned(store, point, strategy, asked, ifindex, policy,
                                           rules, replace))
        except BaseException:
            for attachment in made:  # all or nothing: what this call attached goes again
                if not attachment.replaced:
                    store.detach(attachment.point)
                attachment.close()
            raise
        for attachment in made:
            attachment.recovered = list(recovered)
        return made


def _private(points: list[Point], strategies: list[tuple[Strategy, Mode]], ifindex: int,
             policy: Policy, rules: Rules) -> list[Attachment]:
    made: list[Attachment] = []
    try:
        for point, (strategy, asked) in zip(points, strategies, strict=True):
            strategy.check_free(point, ifindex, {})
            obj = load(strategy, point, policy, rules, carried={})
            try:
                link = strategy.attach(obj.programs[strategy.program_name(point)], point,
                                       ifindex, asked)
            except BaseException:
                obj.close()
                raise
            made.append(Attachment(point, None, strategy, link, dict(obj.maps), obj=obj))
    except BaseException:
        for attachment in made:
            attachment.close()
        raise
    return made


def held_programs(store: Store, like: Point) -> dict[int, Point]:
    """Program id -> point of every pinned pingkiller link on the hook (and direction)
    of ``like``."""
    held = {}
    for point in store.points():
        if (point.hook, point.direction) != (like.hook, like.direction):
            continue
        directory = store.directory(point)
        try:
            with hooks.for_pins(point, directory).open(point, directory) as link:
                held[link.info().prog_id] = point
        except Exception:
            continue
    return held


def _attach_pinned(store: Store, point: Point, strategy: Strategy, mode: Mode, ifindex: int,
                   policy: Policy, rules: Rules, replace: bool) -> Attachment:
    """Attach (or with ``replace`` swap in) at one point; call as a writer."""
    existing: Attachment | None = None
    if store.directory(point).is_dir():
        existing = open_writer(store, point)
        now = existing.health()
        if now.state.stale:
            existing.close()
            store.detach(point)
            existing = None
        elif now.state is not LinkState.FILTERING:
            existing.close()
            raise AlreadyAttached(f"pingkiller's attachment for {point.label} still filters, "
                                  f"but {now.problem}", point=point, remedy=Remedy.DETACH)
        elif not replace:
            prog_id = existing.link.info().prog_id
            existing.close()
            raise AlreadyAttached(f"pingkiller already holds {point.label} (program id "
                                  f"{prog_id})", point=point, remedy=Remedy.REPLACE)
    if existing is None:
        strategy.check_free(point, ifindex, held_programs(store, point))
    else:
        _check_same_mode(existing, strategy, mode)
    carried = {name: existing.maps[name] for name in CARRIED_MAPS} if existing else {}
    try:
        obj = load(strategy, point, policy, rules, carried)
    except BaseException:
        if existing is not None:
            existing.close()
        raise
    try:
        if existing is not None:
            link = publish(store, obj, existing.strategy, point, existing.link)
        else:
            link = publish(store, obj, strategy, point, lambda program: strategy.attach(
                program, point, ifindex, mode))
    except BaseException:
        obj.close()
        if existing is not None:
            existing.close()
        raise
    if existing is not None:
        existing.surrender_link()  # the new object holds its own copies of the carried maps
    directory = store.directory(point)
    made = Attachment(point, store, existing.strategy if existing else strategy, link,
                      dict(obj.maps), obj=obj, identity=read_identity(directory),
                      pinned=pinned_in(directory), reopen=lambda: open_writer(store, point))
    made.replaced = existing is not None
    return made


def _check_same_mode(existing: Attachment, strategy: Strategy, asked: Mode) -> None:
    """A replace keeps how the hook is held: asking for another mode is refused."""
    current, point = existing.mode, existing.point
    if asked is Mode.AUTO or (asked is current and strategy is existing.strategy):
        return
    existing.close()
    raise InvalidInput(f"replace keeps the attach mode ({current.value}); to change it to "
                       f"{asked.value}, detach first", point=point)

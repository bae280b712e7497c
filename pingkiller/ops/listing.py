"""Opening and listing attachments."""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Literal, TypeVar, overload

from pingkiller.attachment import Attachment, AttachmentView
from pingkiller.attachment.opening import open_reader, open_writer
from pingkiller.model.enums import Direction, Hook
from pingkiller.model.errors import InvalidInput, NotAttached, Remedy
from pingkiller.model.point import Point, validate_ifname
from pingkiller.model.results import AttachmentInfo
from pingkiller.model.words import DIRECTIONS, HOOKS
from pingkiller.ops.common import chosen, selected, store_at
from pingkiller.store import Store
from pingkiller.store.layout import Work
from pingkiller.system import capabilities

PinRoot = str | Path | Store | None


@overload
def open_attachment(ifname: str, *, hook: Hook | str | None = ...,
                    direction: Direction | str | None = ..., read_only: Literal[False] = ...,
                    pin_root: PinRoot = ...) -> Attachment: ...


@overload
def open_attachment(ifname: str, *, hook: Hook | str | None = ...,
                    direction: Direction | str | None = ..., read_only: Literal[True],
                    pin_root: PinRoot = ...) -> AttachmentView: ...


def open_attachment(ifname: str, *, hook: Hook | str | None = None,
                    direction: Direction | str | None = None, read_only: bool = False,
                    pin_root: PinRoot = None) -> Attachment | AttachmentView:
    """Reopen the pinned attachment on ``ifname`` (made by any process).

    ``hook`` and ``direction`` say which, where the interface has several (an XDP and a
    tc one, or tc in and out); with one, it is that one. With ``read_only`` every pin is
    opened read-only and nothing is locked or written: that needs only read access to the
    pins and CAP_BPF, and gives an :class:`AttachmentView`. Otherwise the link and maps are
    opened read-write, to change them: an :class:`Attachment`.
    """
    if read_only:
        (view,) = open_each(ifname, hook=hook, direction=direction, read_only=True,
                            pin_root=pin_root, one=True)
        return view
    (writer,) = open_each(ifname, hook=hook, direction=direction, pin_root=pin_root, one=True)
    return writer


@overload
def open_each(ifname: str, *, hook: Hook | str | None = ...,
              direction: Direction | str | None = ..., read_only: Literal[False] = ...,
              pin_root: PinRoot = ..., one: bool = ...) -> list[Attachment]: ...


@overload
def open_each(ifname: str, *, hook: Hook | str | None = ...,
              direction: Direction | str | None = ..., read_only: Literal[True],
              pin_root: PinRoot = ..., one: bool = ...) -> list[AttachmentView]: ...


def open_each(ifname: str, *, hook: Hook | str | None = None,
              direction: Direction | str | None = None, read_only: bool = False,
              pin_root: PinRoot = None, one: bool = False
              ) -> list[Attachment] | list[AttachmentView]:
    """Every pinned attachment of ``ifname`` (those at ``hook``/``direction`` only, when
    given), opened like :func:`open_attachment`; close each (or use them in ``with``).
    ``one``: refuse more than one (say which)."""
    validate_ifname(ifname)
    store = store_at(pin_root)
    check_access(write=not read_only, pin_root=store)
    found = chosen(store, ifname, hook, direction)
    if one and len(found) > 1:
        held = ", ".join(point.hook_text for point in found)
        raise InvalidInput(f"{ifname} has {len(found)} pingkiller attachments ({held})",
                           point=found[0], remedy=Remedy.CHOOSE)
    if not read_only:
        return _all_or_none([functools.partial(open_writer, store, point) for point in found])
    return _all_or_none([functools.partial(_read, store, point) for point in found])


T = TypeVar("T", bound=AttachmentView)


def _all_or_none(openers: list[Callable[[], T]]) -> list[T]:
    opened: list[T] = []
    try:
        for open_one in openers:
            opened.append(open_one())
    except BaseException:
        for view in opened:
            view.close()
        raise
    return opened


def _read(store: Store, point: Point) -> AttachmentView:
    view = open_reader(store, point)
    if view is None:
        raise NotAttached(f"{point.label} has no pingkiller attachment", point=point,
                          remedy=Remedy.ATTACH)
    if view.unreadable is not None:
        problem = view.unreadable
        view.close()
        raise problem
    return view


def points(ifname: str | None = None, *, hook: Hook | str | None = None,
           direction: Direction | str | None = None, pin_root: PinRoot = None) -> list[Point]:
    """The attachments that have pins (of ``ifname``, at ``hook`` and ``direction``, when
    given), by interface, XDP first: a listing of the pin root, no BPF call."""
    store = store_at(pin_root)
    if ifname is None:
        return [point for point in store.points()
                if (hook is None or point.hook is HOOKS.coerce(hook))
                and (direction is None or point.direction is DIRECTIONS.coerce(direction))]
    return selected(store, ifname, hook, direction)


def check_access(*, write: bool = True, pin_root: PinRoot = None) -> None:
    """Raise PermissionDenied unless this process may read the pins (``write=False``:
    CAP_BPF and read access) or change them (CAP_BPF + CAP_NET_ADMIN and write access)."""
    capabilities.require(write=write)
    store_at(pin_root).check_access(write=write)


def each_attachment(ifname: str | None = None, *, hook: Hook | str | None = None,
                    direction: Direction | str | None = None,
                    pin_root: PinRoot = None) -> Generator[AttachmentView, None, None]:
    """Every pinned attachment (of ``ifname`` only, and at ``hook`` and ``direction``
    only, when given), stale ones included, one at a time, as a read-only view open
    until the next one is asked for (then closed). One whose maps cannot be read
    (incomplete pins, another ABI version) has ``unreadable`` set; its ``info()`` tells
    its state. An ``ifname`` with no attachment there raises NotAttached.

    Only reads: no lock, nothing finished (the next writer does that), so it needs only
    read access to the pins and CAP_BPF, and works on a read-only bpffs.
    """
    store = store_at(pin_root)
    if ifname is not None:
        validate_ifname(ifname)
    check_access(write=False, pin_root=store)
    if ifname is not None:  # naming an interface without such an attachment is a mistake
        chosen(store, ifname, hook, direction)
    wanted_hook = HOOKS.coerce(hook) if hook is not None else None
    wanted_direction = DIRECTIONS.coerce(direction) if direction is not None else None
    interrupted = {left.point for left in store.leftovers()
                   if left.work in (Work.ATTACH, Work.REPLACE)}
    for point in sorted(set(store.points()) | interrupted):
        if (ifname not in (None, point.ifname) or wanted_hook not in (None, point.hook)
                or wanted_direction not in (None, point.direction)):
            continue
        view = open_reader(store, point)
        if view is None:
            continue  # detached while we looked
        with view:
            yield view


def attachments(*, with_rules: bool = True, pin_root: PinRoot = None) -> list[AttachmentInfo]:
    """What ``status`` shows of every pinned attachment, stale ones included (see
    :func:`each_attachment`)."""
    return [view.info(with_rules=with_rules) for view in each_attachment(pin_root=pin_root)]


open = open_attachment

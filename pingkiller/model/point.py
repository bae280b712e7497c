"""Where an attachment runs: an interface's XDP hook, or its tc hook in one direction."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pingkiller.model.enums import Direction, Hook
from pingkiller.model.errors import InvalidInput, InvalidInterfaceName
from pingkiller.model.untrusted import quote
from pingkiller.model.words import DIRECTIONS, HOOKS

# Linux interface names: at most 15 bytes, no '/', no whitespace, not '.' or '..'.
_IFNAME = re.compile(r"[A-Za-z0-9_.@:+-]{1,15}")


def validate_ifname(name: str) -> str:
    """Return ``name`` if it can be an interface name, else raise naming the rule broken."""
    if not name:
        raise InvalidInterfaceName("empty interface name: name one, e.g. eth0 (see `ip link`)")
    if len(name.encode(errors="surrogateescape")) > 15:  # argv that is not UTF-8 escapes
        raise InvalidInterfaceName(f"interface name {quote(name)} is longer than 15 bytes")
    if name in (".", "..") or not _IFNAME.fullmatch(name):
        raise InvalidInterfaceName(
            f"{quote(name)} is not a valid interface name (letters, digits and _ . @ : + - only)"
        )
    return name


@dataclass(frozen=True, order=True)
class Point:
    """Where an attachment runs: an interface's XDP hook (which sees only what arrives),
    or its tc hook in one direction. The name is validated when the point is made;
    ``hook`` and ``direction`` may be given as their words (``"tc"``, ``"out"``)."""

    ifname: str
    hook: Hook = Hook.XDP
    direction: Direction = Direction.IN

    def __post_init__(self) -> None:
        validate_ifname(self.ifname)
        object.__setattr__(self, "hook", HOOKS.coerce(self.hook))
        object.__setattr__(self, "direction", DIRECTIONS.coerce(self.direction))
        if self.hook is Hook.XDP and self.direction is not Direction.IN:
            raise InvalidInput("XDP sees only packets that arrive: direction out (or both) "
                               "needs the tc hook")

    @property
    def hook_text(self) -> str:
        """``xdp``, ``tc in`` or ``tc out``."""
        if self.hook is Hook.XDP:
            return "xdp"
        return f"tc {self.direction.label}"

    @property
    def label(self) -> str:
        """How messages name it: ``eth0`` for XDP (as before tc existed), ``eth0 (tc in)``."""
        return self.ifname if self.hook is Hook.XDP else f"{self.ifname} ({self.hook_text})"

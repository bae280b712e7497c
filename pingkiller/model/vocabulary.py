"""The words for an enum's members, the same everywhere: CLI options, policy files,
``--json`` output, metric labels and messages."""

from __future__ import annotations

import enum
from typing import Generic, TypeVar

from pingkiller.model.errors import InvalidInput
from pingkiller.model.untrusted import quote

E = TypeVar("E", bound=enum.Enum)


class Vocabulary(Generic[E]):
    """One enum's words. The order of the words is the order shown; a member may lack a
    word (then it is only ever reported, never typed)."""

    def __init__(self, words: dict[str, E]) -> None:
        self._members = dict(words)
        self._words = {member: word for word, member in words.items()}

    @property
    def words(self) -> list[str]:
        return list(self._members)

    @property
    def members(self) -> list[E]:
        return list(self._words)

    def word(self, member: E) -> str:
        """The word for ``member`` (KeyError for a member that has none)."""
        return self._words[member]

    def parse(self, text: str) -> E:
        """The member ``text`` names (any case); InvalidInput listing the words otherwise."""
        try:
            return self._members[text.lower()]
        except KeyError:
            raise InvalidInput(f"{quote(text)} is not one of {', '.join(self.words)}") from None

    def coerce(self, value: E | str) -> E:
        """``value`` as a member: a member as it is, a word parsed."""
        return self.parse(value) if isinstance(value, str) else value

    def __contains__(self, text: object) -> bool:
        return isinstance(text, str) and text.lower() in self._members

"""Plain text tables, drawn as rich draws its default table without edges:

    reason        ┃ packets ┃ bytes
    ━━━━━━━━━━━━━━╇━━━━━━━━━╇━━━━━━
    pass_not_ping │       3 │   294

status and stats print them without importing rich, which costs more than the rest of
a status call (rich stays for what redraws in place: stats --watch, the demo).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence

Column = tuple[str, bool]  # heading, right-justified


def table(columns: Sequence[Column], rows: Iterable[Sequence[str]]) -> list[str]:
    """The lines of a table of ``rows`` under ``columns``; box-drawing characters where
    stdout encodes them, else ASCII."""
    rows = list(rows)
    widths = [max([len(name), *(len(row[index]) for row in rows)])
              for index, (name, _right) in enumerate(columns)]
    heavy, light, rule, cross = ("┃", "│", "━", "╇") if _unicode() else ("|", "|", "-", "+")

    def line(cells: Sequence[str], bar: str) -> str:
        return f" {bar} ".join(cell.rjust(width) if right else cell.ljust(width)
                               for cell, width, (_name, right)
                               in zip(cells, widths, columns, strict=True))

    return [line([name for name, _right in columns], heavy),
            f"{rule}{cross}{rule}".join(rule * width for width in widths),
            *(line(row, light) for row in rows)]


def _unicode() -> bool:
    encoding = getattr(sys.stdout, "encoding", None) or ""
    return encoding.lower().replace("-", "").startswith("utf")


def write(lines: Iterable[str]) -> None:
    """Print ``lines`` to stdout and flush (a pipe sees each call's lines at once)."""
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    sys.stdout.flush()

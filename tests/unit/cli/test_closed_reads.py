"""No error message reads an object after it was closed (issue #14, item 6).

`attach --replace --mode generic` once ended in a traceback: ``existing.close()`` ran
before the refusal's message read ``existing.link.mode``. This walks every block of the
package: after a statement that closes NAME (``NAME.close()``, or the end of ``with ... as
NAME``), no later statement of the same block may build a message (a ``raise`` or an
f-string) that reads ``NAME.``.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[3] / "pingkiller"


def _closed_name(statement: ast.stmt) -> list[str]:
    if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call):
        func = statement.value.func
        if isinstance(func, ast.Attribute) and func.attr == "close":
            return [ast.unparse(func.value)]
    if isinstance(statement, ast.With | ast.AsyncWith):
        return [ast.unparse(item.optional_vars) for item in statement.items if item.optional_vars]
    return []


def _messages(statement: ast.stmt) -> list[ast.AST]:
    return [node for node in ast.walk(statement) if isinstance(node, ast.Raise | ast.JoinedStr)]


def reads_after_close(source: str, filename: str = "<source>") -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        for field in ("body", "orelse", "finalbody"):
            block = getattr(node, field, None)
            if not isinstance(block, list):
                continue
            for index, statement in enumerate(block):
                for name in _closed_name(statement):
                    for later in block[index + 1:]:
                        lines = {m.lineno for m in _messages(later) if f"{name}." in ast.unparse(m)}
                        found += [f"{filename}:{line}: reads {name} closed on line {statement.lineno}"
                                  for line in sorted(lines)]
    return found


def test_the_check_finds_the_replace_mode_bug() -> None:
    before_the_fix = (
        "def attach(existing, mode):\n"
        "    if mode != existing.link.mode:\n"
        "        existing.close()\n"
        "        raise InvalidInput(f'--replace keeps the attach mode ({existing.link.mode.value})')\n"
    )
    assert reads_after_close(before_the_fix) == ["<source>:4: reads existing closed on line 3"]
    with_block = (
        "with open_it() as handle:\n"
        "    pass\n"
        "raise Problem(f'{handle.name} went wrong')\n"
    )
    assert reads_after_close(with_block) == ["<source>:3: reads handle closed on line 1"]


def test_no_message_reads_a_closed_object() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += reads_after_close(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE)))
    assert found == []

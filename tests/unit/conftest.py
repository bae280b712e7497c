"""Fixtures of the unit tier (no root, no kernel)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def private_pin_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PINGKILLER_PIN_ROOT at a directory of the test's own: nothing a verb does
    under it reaches the machine's pins (a unit test has no bpffs: writers stop early)."""
    root = tmp_path / "pins"  # not made: a test may check that nothing made it
    monkeypatch.setenv("PINGKILLER_PIN_ROOT", str(root))
    return root

"""The style card's promise, checked where it can fail: ruff on every Python file of the
project and `mypy --strict` on the package, with the extensions' stubs in force."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_ruff_is_clean() -> None:
    paths = ["pingkiller", "tests", "build.py", "setup.py", "cffi_src", "bench", "docs/examples"]
    result = subprocess.run([sys.executable, "-m", "ruff", "check", *paths], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", "pingkiller"], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues found" in result.stdout

"""The CLI run in the test's own process, for unit tests of its parsing and messages."""

from __future__ import annotations

import pytest

from pingkiller.cli import main


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``pingkiller ARGV`` in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as caught:
        main(argv)
    code = caught.value.code
    assert isinstance(code, int)
    out, err = capsys.readouterr()
    return code, out, err

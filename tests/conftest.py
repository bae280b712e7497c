"""Shared fixtures: root gating, the loaded data path, and throw-away networks."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from pingkiller.demo.sandbox import Sandbox
from pingkiller.store.layout import DEFAULT_ROOT

IS_ROOT = os.geteuid() == 0
IN_CI = os.environ.get("CI") == "true"
_sandbox_numbers = itertools.count(1)


def pytest_configure(config: pytest.Config) -> None:
    """Tests stop watchers and example scripts with SIGINT, as Ctrl-C does. A suite started
    as a background job of a non-interactive shell (``(make test &)``) inherits SIGINT
    ignored, and would hand that on to every process it starts, which then cannot be
    interrupted: the suite catches it again, so what it starts gets the default."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `root` skip with a reason when not root; in CI they must run."""
    if IS_ROOT:
        return
    if IN_CI:
        raise pytest.UsageError("CI must run as root: the kernel and e2e tiers need it")
    skip = pytest.mark.skip(reason="needs root (CAP_BPF, CAP_NET_ADMIN): run as root")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def real_pins_untouched() -> Iterator[None]:
    """No test may pin under the machine's own pin root: tests use private ones (pin_root)."""

    if not IS_ROOT:  # bpffs and the pin root are 0700: nothing to see, nothing a test could pin
        yield
        return
    real = DEFAULT_ROOT
    before = sorted(p.name for p in real.iterdir()) if real.is_dir() else None
    yield
    after = sorted(p.name for p in real.iterdir()) if real.is_dir() else None
    assert after == before, f"a test changed {real}: {before} -> {after}"


@pytest.fixture
def pin_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private pin root on bpffs (PINGKILLER_PIN_ROOT) so tests never touch real attachments.

    Subprocesses inherit it. Whatever is left attached under it is detached afterwards.
    """
    path = Path(f"/sys/fs/bpf/pktest-{os.getpid()}-{next(_sandbox_numbers)}")
    monkeypatch.setenv("PINGKILLER_PIN_ROOT", str(path))
    try:
        yield path
    finally:
        if path.is_dir():
            import pingkiller

            try:
                for info in pingkiller.attachments(with_rules=False):
                    pingkiller.detach(info.ifname, hook=info.hook, direction=info.direction)
            finally:  # unpinning what is left also ends its links, even if a detach failed
                shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A Sandbox with a unique tag per test; always torn down."""
    tag = f"{os.getpid() % 10000}{next(_sandbox_numbers)}"
    box = Sandbox(tag=tag)
    try:
        yield box
    finally:
        box.close()


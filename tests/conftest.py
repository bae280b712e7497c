"""Shared fixtures: root gating, the loaded data path, and throw-away networks."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from pingkiller.sandbox import Sandbox

IS_ROOT = os.geteuid() == 0
IN_CI = os.environ.get("CI") == "true"
_sandbox_numbers = itertools.count(1)


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


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A Sandbox with a unique tag per test; always torn down."""
    tag = f"{os.getpid() % 10000}{next(_sandbox_numbers)}"
    box = Sandbox(tag=tag)
    try:
        yield box
    finally:
        box.close()


"""Concurrent writers on one attachment: no update is lost (the pin lock serializes them)."""

from __future__ import annotations

import ipaddress
import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest

import pingkiller
from pingkiller import abi
from pingkiller.demo.sandbox import Sandbox
from pingkiller.model.network import format_network

pytestmark = pytest.mark.root

WORKERS = 8
# Each worker adds 10k rules, removes 5000 and flips 2500 to allow.
RULES_PER_WORKER = 10_000
BATCH = 250
CLI_WRITERS = 2


def worker_addresses(worker: int) -> list[str]:
    """Distinct per worker: IPv4 hosts, IPv6 hosts and a few prefixes of both families."""
    found = []
    for i in range(RULES_PER_WORKER):
        kind = i % 10
        if kind == 0:
            found.append(f"10.{worker * 4 + i // 2560}.{i // 10 % 256}.0/24")
        elif kind == 2:
            found.append(f"fd00:{worker:x}:{i:x}::/48")
        elif kind < 6:
            found.append(f"10.{100 + worker}.{i // 256}.{i % 256}")
        else:
            found.append(f"fd00:1:{worker:x}::{i:x}")
    return found


def expected_rules(worker: int) -> dict[str, str]:
    """What a worker leaves: odd-numbered rules removed, every 4th kept one flipped to allow."""
    left = {}
    for i, text in enumerate(worker_addresses(worker)):
        if i % 2 == 0:
            left[format_network(ipaddress.ip_network(text))] = "allow" if i % 4 == 0 else "block"
    return left


SHARED = [f"198.19.250.{i}" for i in range(20)]  # every writer blocks these, last op is block


def run_worker(ifname: str, worker: int) -> None:
    addresses = worker_addresses(worker)
    with pingkiller.open(ifname) as attachment:
        for start in range(0, len(addresses), BATCH):
            batch = addresses[start : start + BATCH]
            attachment.block(batch)
            attachment.unblock(SHARED)
            attachment.unblock(batch[1::2])
            attachment.allow([a for i, a in enumerate(batch, start) if i % 4 == 0])
            attachment.block(SHARED)


def cli_writer(ifname: str, number: int) -> None:
    for round_ in range(5):
        hosts = [f"198.18.{200 + number}.{round_ * 10 + k}" for k in range(10)]
        for verb, args in (("block", hosts), ("unblock", hosts[5:]), ("allow", hosts[:2])):
            subprocess.run([sys.executable, "-m", "pingkiller", verb, ifname, *args],
                           check=True, capture_output=True, timeout=60)


def test_concurrent_writers_lose_nothing(pin_root: Path, sandbox: Sandbox) -> None:
    ifname = sandbox.add_peer().host_ifname
    pingkiller.attach(ifname, block=["198.19.249.1"]).close()
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=run_worker, args=(ifname, w)) for w in range(WORKERS)]
    processes += [context.Process(target=cli_writer, args=(ifname, n)) for n in range(CLI_WRITERS)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=180)
    assert [p.exitcode for p in processes] == [0] * len(processes)

    expected = {"198.19.249.1": "block"} | {a: "block" for a in SHARED}
    for worker in range(WORKERS):
        expected |= expected_rules(worker)
    for number in range(CLI_WRITERS):
        for round_ in range(5):
            for k in range(5):
                expected[f"198.18.{200 + number}.{round_ * 10 + k}"] = "allow" if k < 2 else "block"
    with pingkiller.open(ifname) as attachment:
        found = {rule.address: rule.action.name.lower() for rule in attachment.rules()}
        flags = abi.Config.decode(attachment.maps[abi.SETTINGS_MAP][abi.u32_key(0)]).flags
    assert len(found) == len(expected)
    assert found == expected
    prefix_flags = abi.ConfigFlag.PREFIXES_V4 | abi.ConfigFlag.PREFIXES_V6
    assert flags & prefix_flags == prefix_flags  # both tries hold rules: both are looked up

"""Limit rules in the rule table: the class each rate gets in the limits map, sharing,
collecting classes no rule names (with their buckets), and a full table."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable

import pytest
from conftest import Datapath

from pingkiller import abi
from pingkiller.datapath.rules import RuleTable
from pingkiller.model.enums import RuleAction
from pingkiller.model.errors import RuleTableFull
from pingkiller.model.limits import Limit, Rate

A = RuleAction


def nets(*texts: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(text) for text in texts]


def classes(table: RuleTable) -> dict[int, Limit]:
    assert table.limits is not None
    return table.limits.classes()


def test_equal_limits_share_a_class_and_rules_list_their_limit(dp: Datapath) -> None:
    table = RuleTable(dp.obj.maps)
    assert table.set(nets("192.0.2.1", "2001:db8::/48"), A.LIMIT, limit=Limit.of("10/s")) == 2
    assert table.set(nets("192.0.2.2"), A.LIMIT, limit=Limit.of("10/s")) == 1
    assert table.set(nets("192.0.2.3"), A.LIMIT, limit=Limit.of("600/min")) == 1
    assert classes(table) == {1: Limit.of("10/s"), 2: Limit.of("600/min")}
    listed = {rule.address: (rule.action, rule.limit) for rule in table.rules()}
    assert listed == {"192.0.2.1": (A.LIMIT, Limit.of("10/s")),
                      "192.0.2.2": (A.LIMIT, Limit.of("10/s")),
                      "192.0.2.3": (A.LIMIT, Limit.of("600/min")),
                      "2001:db8::/48": (A.LIMIT, Limit.of("10/s"))}
    # The same rule again changes nothing; another rate, or another action, changes it.
    assert table.set(nets("192.0.2.1"), A.LIMIT, limit=Limit.of("10/s")) == 0
    assert table.set(nets("192.0.2.1"), A.LIMIT, limit=Limit.of("10/s", 3)) == 1
    assert table.set(nets("192.0.2.2"), A.BLOCK) == 1
    assert {rule.address: rule.limit for rule in table.rules()}["192.0.2.2"] is None
    with pytest.raises(ValueError, match="limit rule needs its limit"):
        table.set(nets("192.0.2.9"), A.LIMIT)


def test_a_full_limits_map_collects_classes_no_rule_names(dp: Datapath) -> None:
    table = RuleTable(dp.obj.maps)
    rates = [Limit(Rate(n), 1) for n in range(1, abi.MAX_LIMITS)]  # 1023 classes: all of them
    for n, limit in enumerate(rates):
        table.set(nets(f"10.1.{n // 250}.{n % 250}"), A.LIMIT, limit=limit)
    assert len(classes(table)) == abi.MAX_LIMITS - 1
    # A bucket of a class that goes away must go with it (else its debt would pass on).
    stale_class = classes(table).keys() - {1}
    doomed = min(stale_class)
    buckets = dp.obj.maps[abi.BUCKETS_MAP]
    key = abi.BUCKET_KEY.pack(doomed, 4, bytes(16))
    buckets[key] = struct.pack("=Q", 1 << 62)
    kept = abi.BUCKET_KEY.pack(1, 4, bytes(16))
    buckets[kept] = struct.pack("=Q", 1 << 62)
    # Every class named: another rate does not fit, and nothing changes.
    with pytest.raises(RuleTableFull, match="different rates"):
        table.set(nets("192.0.2.1"), A.LIMIT, limit=Limit.of("7/h"))
    assert "192.0.2.1" not in {rule.address for rule in table.rules()}
    # Rules of that class removed: its class is collected and given to the new rate.
    doomed_address = next(rule.address for rule in table.rules() if rule.limit == rates[doomed - 1])
    table.remove(nets(doomed_address))
    assert table.set(nets("192.0.2.1"), A.LIMIT, limit=Limit.of("7/h")) == 1
    assert classes(table)[doomed] == Limit.of("7/h")
    assert buckets.get_raw(key) is None and buckets.get_raw(kept) is not None


def test_a_rebuilt_table_keeps_each_rules_limit(dp: Datapath) -> None:
    from pingkiller.datapath import program

    table = RuleTable(dp.obj.maps)
    table.set(nets("192.0.2.1", "fd00::/64"), A.LIMIT, limit=Limit.of("3/s", 6))
    table.set(nets("192.0.2.2"), A.ALLOW)
    with program.load() as fresh:
        copy = RuleTable(fresh.maps)
        copy.copy_from(dp.obj.maps)
        assert sorted(copy.rules()) == sorted(table.rules())
        assert classes(copy) == classes(table)


def test_a_class_given_out_starts_with_no_debt(dp: Datapath) -> None:
    # A bucket left of an index (its rate gone, or a change undone) must not judge the
    # first pings of the rate that index is given to next.
    table = RuleTable(dp.obj.maps)
    buckets = dp.obj.maps[abi.BUCKETS_MAP]
    left = abi.BUCKET_KEY.pack(1, 4, bytes(16))
    buckets[left] = struct.pack("=Q", 1 << 62)
    table.set(nets("192.0.2.1"), A.LIMIT, limit=Limit.of("5/s"))
    assert classes(table) == {1: Limit.of("5/s")}
    assert buckets.get_raw(left) is None


def test_an_undone_change_gets_back_the_classes_it_collected(dp: Datapath) -> None:
    table = RuleTable(dp.obj.maps)
    for n in range(1, abi.MAX_LIMITS):
        table.set(nets(f"10.2.{n // 250}.{n % 250}"), A.LIMIT, limit=Limit(Rate(n), 1))
    table.remove(nets("10.2.0.1"))  # class 1 is named by no rule now
    undo: list[Callable[[], None]] = []
    assert table.set(nets("10.2.0.1"), A.LIMIT, limit=Limit.of("7/h"), undo=undo) == 1
    assert classes(table)[1] == Limit.of("7/h")
    for put_back in reversed(undo):
        put_back()
    assert classes(table)[1] == Limit(Rate(1), 1)  # what a rule put back would name
    assert "10.2.0.1" not in {rule.address for rule in table.rules()}

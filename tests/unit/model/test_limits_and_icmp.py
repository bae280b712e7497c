"""Rates, limits and ICMP type sets: the values the limit action and --icmp are made of."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pingkiller.model.enums import DefaultAction, IcmpSet
from pingkiller.model.errors import InvalidInput
from pingkiller.model.icmp import ECHO, ND_TYPES, IcmpTypes
from pingkiller.model.limits import MAX_BURST, UNIT_SECONDS, Limit, Rate
from pingkiller.model.policy import Policy

# -- rates


@pytest.mark.parametrize(("text", "rate"), [
    ("10/s", Rate(10, "s")), ("600/min", Rate(600, "min")), ("20/m", Rate(20, "min")),
    ("1/h", Rate(1, "h")), ("5/day", Rate(5, "d")), ("10", Rate(10, "s")),
    (" 3 / Second ", Rate(3, "s")), ("1000000/s", Rate(1_000_000, "s")),
])
def test_rates_are_read_in_every_unit(text: str, rate: Rate) -> None:
    assert Rate.parse(text) == rate
    assert Rate.parse(str(rate)) == rate


@pytest.mark.parametrize("text", ["", "/s", "0/s", "-1/s", "1.5/s", "10/fortnight", "1e3/s",
                                  "\uff11\uff10/s", "1000001/s", "10/s/s", "5000000000/d",
                                  "9" * 5000 + "/s"])
def test_bad_rates_say_how_to_write_one(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        Rate.parse(text)
    assert "\n" not in str(caught.value)


def test_a_rate_is_an_interval() -> None:
    assert Rate(10, "s").interval_ns == 100_000_000
    assert Rate(600, "min").interval_ns == 100_000_000
    assert Rate(3, "s").interval_ns == 333_333_333
    assert Rate(1, "d").interval_ns == 86_400 * 10**9
    assert Rate(1_000_000, "s").interval_ns == 1_000


@given(st.integers(1, 10**6), st.sampled_from(sorted(UNIT_SECONDS)))
def test_rates_round_trip_through_text(count: int, unit: str) -> None:
    if count > 10**6 * UNIT_SECONDS[unit]:
        return
    rate = Rate(count, unit)
    assert Rate.parse(str(rate)) == rate
    assert rate.interval_ns >= 1000


# -- limits


def test_the_default_burst_is_a_seconds_worth() -> None:
    assert Limit.of("10/s").burst == 10
    assert Limit.of("600/min").burst == 10
    assert Limit.of("90/min").burst == 2  # 1.5 a second, rounded up
    assert Limit.of("1/h").burst == 1
    assert Limit.of(Rate(5), 20) == Limit(Rate(5), 20)


def test_the_tolerance_is_burst_less_one_intervals_and_at_least_a_tick() -> None:
    assert Limit.of("10/s", 10).tolerance_ns(4_000_000) == 900_000_000
    assert Limit.of("10/s", 1).tolerance_ns(4_000_000) == 4_000_000
    assert Limit.of("1000/s", 2).tolerance_ns(4_000_000) == 4_000_000


@pytest.mark.parametrize("burst", [0, -1, MAX_BURST + 1, True])
def test_bad_bursts_are_refused(burst: int) -> None:
    with pytest.raises(InvalidInput, match="burst"):
        Limit.of("10/s", burst)


def test_a_burst_that_spans_centuries_is_refused() -> None:
    with pytest.raises(InvalidInput, match="century"):
        Limit.of("1/d", 1_000_000)


# -- ICMP types


def test_the_shorthands_are_sets() -> None:
    assert IcmpTypes.of(IcmpSet.ECHO) == ECHO == IcmpTypes.parse("echo")
    assert ECHO.v4 == {0, 8} and ECHO.v6 == {128, 129}
    assert IcmpTypes.parse("echo-request") == IcmpTypes(frozenset({8}), frozenset({128}))
    every = IcmpTypes.parse("all")
    assert every.v4 == set(range(256)) and every.v6 == set(range(256)) - ND_TYPES
    for shorthand in (IcmpSet.ECHO, IcmpSet.ECHO_REQUEST, IcmpSet.ALL):
        assert IcmpTypes.of(shorthand).shorthand is shorthand
        assert str(IcmpTypes.of(shorthand)) in ("echo", "echo-request", "all")


def test_a_list_adds_its_words() -> None:
    types = IcmpTypes.parse("echo, Timestamp,icmp:17,icmpv6:200")
    assert types.v4 == {0, 8, 13, 14, 17} and types.v6 == {128, 129, 200}
    assert types.shorthand is IcmpSet.LIST
    assert str(types) == "echo,timestamp,icmp:17,icmpv6:200"
    assert IcmpTypes.parse(str(types)) == types


@pytest.mark.parametrize("text", ["icmpv6:135", "icmpv6:133,echo", "ping", "icmp:256",
                                  "icmp:-1", "icmp:", "", "echo,,timestamp", "icmp:" + "9" * 5000])
def test_bad_lists_and_neighbour_discovery_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        IcmpTypes.parse(text)


def test_neighbour_discovery_is_never_a_ping() -> None:
    with pytest.raises(InvalidInput, match="neighbour discovery"):
        IcmpTypes(frozenset(), frozenset({128, 136}))
    assert not IcmpTypes.parse("all").v6 & ND_TYPES


@given(st.frozensets(st.integers(0, 255)),
       st.frozensets(st.integers(0, 255).filter(lambda t: t not in ND_TYPES)))
def test_any_set_round_trips_through_words_and_bitmaps(v4: frozenset[int], v6: frozenset[int]) -> None:
    if not v4 and not v6:
        return
    types = IcmpTypes(v4, v6)
    assert IcmpTypes.parse(str(types)) == types
    assert IcmpTypes.from_bitmaps(types.bitmap(4), types.bitmap(6)) == types
    assert all(0 <= word < 2**32 for word in types.bitmap(4) + types.bitmap(6))


# -- the policy


def test_a_policy_takes_a_shorthand_text_or_types_alike() -> None:
    assert Policy(icmp=IcmpSet.ECHO) == Policy(icmp="echo") == Policy(icmp=ECHO) == Policy()
    assert Policy(icmp="echo,timestamp").icmp_types.v4 == {0, 8, 13, 14}
    assert Policy(icmp="echo,timestamp").describe() == \
        "pass ICMP echo, timestamp that no rule decides"


def test_the_default_limit_needs_its_rate_and_only_it_has_one() -> None:
    with pytest.raises(InvalidInput, match="needs a rate"):
        Policy(DefaultAction.LIMIT)
    with pytest.raises(InvalidInput, match=r"default=DefaultAction\.LIMIT"):
        Policy(DefaultAction.PASS, limit=Limit.of("1/s"))
    limited = Policy(DefaultAction.LIMIT, limit=Limit.of("10/s", 20), limit_total=Limit.of("1000/s"))
    assert limited.describe() == ("limit pings (echo request/reply) that no rule decides to "
                                  "10/s per source (burst 20); all limited pings together at "
                                  "most 1000/s")


@pytest.mark.parametrize(("field", "value"), [("limit_prefix6", 0), ("limit_prefix6", 129),
                                              ("limit_buckets", 1), ("limit_buckets", 1 << 30)])
def test_limit_sizes_are_bounded(field: str, value: int) -> None:
    with pytest.raises(InvalidInput, match="limit prefix" if "prefix" in field else "buckets"):
        Policy(**{field: value})  # type: ignore[arg-type]


def test_a_policy_refuses_what_is_no_limit_or_no_set() -> None:
    with pytest.raises(InvalidInput, match=r"limit must be a Limit"):
        Policy(DefaultAction.LIMIT, limit="10/s")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="limit_total must be a Limit"):
        Policy(limit_total=10)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="names no set"):
        Policy(icmp=IcmpSet.LIST)


def test_one_address_cannot_have_two_rules_in_a_sync() -> None:
    from pingkiller.attachment.writer import wanted_rules

    with pytest.raises(InvalidInput, match=r"192\.0\.2\.1 given two rules"):
        wanted_rules(limit={Limit.of("10/s", 5): ["192.0.2.1"],
                            Limit.of("10/s", 50): ["192.0.2.0/24", "192.0.2.1"]})
    with pytest.raises(InvalidInput, match="block and allow"):
        wanted_rules(block=["192.0.2.1"], allow=["::ffff:192.0.2.1"])
    assert len(wanted_rules(block=["192.0.2.1"], limit={Limit.of("1/s"): ["192.0.2.2"]})) == 3

"""Policy values without a kernel: address parsing, rule files, settings round trips."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pingkiller.cli import schemas
from pingkiller.model.enums import DefaultAction, EventsMode, IcmpSet, RuleAction
from pingkiller.model.errors import InvalidAddress, InvalidInput, RuleFileError
from pingkiller.model.limits import Limit
from pingkiller.model.network import format_network, parse_network, parse_networks
from pingkiller.model.policy import Policy
from pingkiller.model.rules import Rule, read_rule_file

V4 = ipaddress.IPv4Network
V6 = ipaddress.IPv6Network


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.168.1.78", V4("192.168.1.78/32")),
        ("  192.168.1.78\t", V4("192.168.1.78/32")),
        ("10.0.0.0/8", V4("10.0.0.0/8")),
        ("0.0.0.0/0", V4("0.0.0.0/0")),
        ("2001:db8::/32", V6("2001:db8::/32")),
        ("2001:DB8::7", V6("2001:db8::7/128")),
        ("::/0", V6("::/0")),
        # IPv4-mapped IPv6 is the IPv4 address or prefix it maps.
        ("::ffff:192.0.2.7", V4("192.0.2.7/32")),
        ("::ffff:c000:207", V4("192.0.2.7/32")),
        ("::ffff:10.0.0.0/104", V4("10.0.0.0/8")),
        ("::ffff:0.0.0.0/96", V4("0.0.0.0/0")),
    ],
)
def test_parse_network(text: str, expected: V4 | V6) -> None:
    assert parse_network(text) == expected


def test_mapped_prefix_wider_than_the_mapped_range_stays_ipv6() -> None:
    assert parse_network("::/80") == V6("::/80")


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [("10.0.0.1/8", "10.0.0.0/8"), ("2001:db8::1/32", "2001:db8::/32"),
     ("192.168.1.78/24", "192.168.1.0/24")],
)
def test_host_bits_set_names_the_prefix_meant(text: str, suggestion: str) -> None:
    with pytest.raises(InvalidAddress, match="host bits set") as caught:
        parse_network(text)
    assert f"did you mean {suggestion}" in str(caught.value)


@pytest.mark.parametrize(
    "text",
    ["", "   ", "foo", "300.1.1.1", "1.2.3", "1.2.3.4/33", "1.2.3.4/-1", "2001:db8::/129",
     "10.0.0.0/8/8", "1.2.3.4 5.6.7.8", "192.168.1.78/", "12345"],
)
def test_bad_text_is_invalid_address(text: str) -> None:
    with pytest.raises(InvalidAddress) as caught:
        parse_network(text)
    message = str(caught.value)
    assert "\n" not in message
    assert "e.g." in message  # names what a good value looks like


def test_invalid_address_is_bad_input() -> None:
    assert InvalidAddress.exit_code == 2
    assert issubclass(InvalidAddress, InvalidInput)


def test_parse_networks_stops_at_the_first_bad_one() -> None:
    assert parse_networks(["10.0.0.1", "::1"]) == [V4("10.0.0.1/32"), V6("::1/128")]
    with pytest.raises(InvalidAddress, match="'nope'"):
        parse_networks(["10.0.0.1", "nope", "also bad"])


@given(st.ip_addresses(v=4), st.integers(min_value=0, max_value=32))
def test_ipv4_prefixes_round_trip(address: ipaddress.IPv4Address, length: int) -> None:
    network = V4((address, length), strict=False)
    assert parse_network(str(network)) == network
    assert parse_network(format_network(network)) == network


@given(st.ip_addresses(v=4))
def test_every_v4_mapped_address_becomes_ipv4(address: ipaddress.IPv4Address) -> None:
    mapped = ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + address.packed)
    assert parse_network(str(mapped)) == V4(address)


@given(st.ip_addresses(v=6), st.integers(min_value=0, max_value=128))
def test_ipv6_prefixes_round_trip_or_map_to_ipv4(address: ipaddress.IPv6Address, length: int) -> None:
    network = V6((address, length), strict=False)
    parsed = parse_network(str(network))
    if network.subnet_of(V6("::ffff:0:0/96")):
        assert parsed.version == 4 and parsed.prefixlen == length - 96
    else:
        assert parsed == network


def test_format_network_shows_hosts_without_length() -> None:
    assert format_network(V4("192.0.2.7/32")) == "192.0.2.7"
    assert format_network(V4("10.0.0.0/8")) == "10.0.0.0/8"
    assert format_network(V6("2001:db8::7/128")) == "2001:db8::7"
    assert format_network(V6("2001:db8::/32")) == "2001:db8::/32"


def test_rule_json() -> None:
    rule = Rule.of(V4("198.18.0.0/15"), RuleAction.BLOCK, 7)
    assert rule.address == "198.18.0.0/15" and rule.network == V4("198.18.0.0/15")
    assert schemas.rule(rule) == {"address": "198.18.0.0/15", "action": "block", "hits": 7,
                                  "limit": None}
    assert schemas.rule(Rule.of(V6("::1/128"), RuleAction.ALLOW)) == {
        "address": "::1", "action": "allow", "hits": 0, "limit": None}
    limited = Rule.of(V6("2001:db8::/32"), RuleAction.LIMIT, 3, Limit.of("600/min", 4))
    assert schemas.rule(limited) == {"address": "2001:db8::/32", "action": "limit", "hits": 3,
                                     "limit": {"rate": "600/min", "burst": 4}}


def test_policy_json() -> None:
    policy = Policy(DefaultAction.DROP, IcmpSet.ALL, True, EventsMode.PINGS, 5, True)
    assert schemas.policy(policy) == {
        "default": "drop", "icmp": "all",
        "icmp_types": {"ipv4": list(range(256)), "ipv6": [*range(133), *range(138, 256)]},
        "all_protocols": True, "events": "pings", "event_rate": 5, "timing": True,
        "limit": None, "limit_total": None, "limit_prefix6": 64, "limit_buckets": 65536,
    }
    limited = Policy(DefaultAction.LIMIT, "echo,timestamp", limit=Limit.of("600/min", 5),
                     limit_total=Limit.of("1000/s"), limit_prefix6=56, limit_buckets=4096)
    shown = schemas.policy(limited)
    assert shown["icmp"] == "echo,timestamp"
    assert shown["icmp_types"] == {"ipv4": [0, 8, 13, 14], "ipv6": [128, 129]}
    assert shown["limit"] == {"rate": "600/min", "burst": 5}
    assert shown["limit_total"] == {"rate": "1000/s", "burst": 1000}
    assert (shown["limit_prefix6"], shown["limit_buckets"]) == (56, 4096)


def test_policy_describe_names_the_default() -> None:
    assert Policy(DefaultAction.DROP).describe() == "drop pings (echo request/reply) that no rule decides"
    text = Policy(DefaultAction.PASS, IcmpSet.ECHO_REQUEST, all_protocols=True).describe()
    assert text == "pass echo requests that no rule decides; block rules drop every protocol"


@pytest.mark.parametrize("rate", [-1, 1 << 32])
def test_policy_rejects_out_of_range_event_rates(rate: int) -> None:
    with pytest.raises(InvalidInput, match="event rate"):
        Policy(event_rate=rate)


# -- rule files


def _file(tmp_path: Path, text: str, name: str = "rules.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_rule_file_with_comments_blank_lines_and_extra_columns(tmp_path: Path) -> None:
    path = _file(tmp_path, (
        "# a blocklist\n"
        "; spamhaus-style comment\n"
        "\n"
        "   \n"
        "192.0.2.7\n"
        "10.0.0.0/8 ; SBL123\n"
        "  2001:db8::/32   # trailing comment\n"
        "198.51.100.0/24\tsome-name 2024-01-01\n"
        "::ffff:203.0.113.9\r\n"
        "192.0.2.7\n"
    ))
    rules = read_rule_file(path)
    assert rules.requested == 6 and len(rules) == 5  # one address twice: one rule
    assert list(rules.networks()) == [
        V4("192.0.2.7/32"), V4("203.0.113.9/32"), V4("10.0.0.0/8"), V6("2001:db8::/32"),
        V4("198.51.100.0/24"),
    ]
    assert read_rule_file(str(path)) == read_rule_file(path)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("192.0.2.7\nnot-an-address\n", 2, "not an IPv4/IPv6 address"),
        ("# header\n\n10.0.0.1/8\n", 3, "host bits set"),
        ("1.1.1.1\n2.2.2.2\n3.3.3.3\n<html>\n", 4, "not an IPv4/IPv6 address"),
        ("1.1.1.1 # ok\n; ok\n2.2.2.300 ; bad\n", 3, "'2.2.2.300'"),
    ],
)
def test_junk_lines_report_file_and_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = _file(tmp_path, text)
    with pytest.raises(RuleFileError) as caught:
        read_rule_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}:1: ")  # file, line, column
    assert words in message and "\n" not in message


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n; and another\n   \n"])
def test_a_file_without_rules_is_an_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(RuleFileError, match="holds no address or prefix"):
        read_rule_file(_file(tmp_path, text))


def test_unreadable_rule_files(tmp_path: Path) -> None:
    with pytest.raises(RuleFileError, match="not found"):
        read_rule_file(tmp_path / "missing.txt")
    with pytest.raises(RuleFileError, match="is a directory"):
        read_rule_file(tmp_path)
    binary = tmp_path / "binary"
    binary.write_bytes(b"192.0.2.7\n\xff\xfe\x00junk\n")
    with pytest.raises(RuleFileError, match="not UTF-8"):
        read_rule_file(binary)


def test_rule_file_errors_are_bad_input() -> None:
    assert RuleFileError.exit_code == 2

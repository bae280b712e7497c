"""Policy files without a kernel: parsing, whole-file validation, planning, export text.

Planning is a pure function of the file and the running state, so the running state here
is given as AttachmentInfo values (what `pingkiller.attachments()` returns); the plan's
JSON is the CLI's (pingkiller.cli.schemas.plan). The systemd unit is checked at the end
(docs/deploy in test_deploy.py).
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pingkiller import declarative as policy_files
from pingkiller.cli import main
from pingkiller.cli.schemas import plan as plan_json
from pingkiller.declarative import AttachmentSpec, policy_file
from pingkiller.exporter import parse_listen
from pingkiller.model.enums import (
    DefaultAction,
    Direction,
    EventsMode,
    Hook,
    IcmpSet,
    LinkState,
    Mode,
    RuleAction,
)
from pingkiller.model.errors import (
    IncompatiblePins,
    InterfaceNotFound,
    InvalidInput,
    PolicyFileError,
    Remedy,
)
from pingkiller.model.icmp import IcmpTypes
from pingkiller.model.limits import UNIT_SECONDS, Limit, Rate
from pingkiller.model.network import parse_network
from pingkiller.model.point import Point
from pingkiller.model.policy import Policy
from pingkiller.model.results import AttachmentInfo
from pingkiller.model.rules import Rule
from pingkiller.system import capabilities

REPO = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.usefixtures("private_pin_root")



def rejected(text: str, base: Path | None = None) -> str:
    with pytest.raises(PolicyFileError) as caught:
        policy_files.parse_policy_file(text, source="policy.toml", base=base)
    message = str(caught.value)
    assert "\n" not in message
    assert message.endswith("(nothing was changed)")
    return message


# -- parsing


def test_full_interface_table() -> None:
    parsed = policy_files.parse_policy_file(
        """
        [interfaces.eth0]
        default = "drop"
        icmp = "echo-request"
        all_protocols = true
        events = "all"
        event_rate = 0
        timing = true
        mode = "generic"
        block = ["198.18.0.7", "2001:db8::/32"]
        allow = ["10.0.0.0/8", "::ffff:198.18.0.9"]

        [interfaces."eth0.100"]
        """
    )
    eth0 = parsed.attachments[Point("eth0")]
    assert eth0.policy == Policy(DefaultAction.DROP, IcmpSet.ECHO_REQUEST, True, EventsMode.ALL, 0, True)
    assert eth0.mode == Mode.GENERIC
    assert eth0.rules == {
        parse_network("198.18.0.7"): RuleAction.BLOCK,
        parse_network("2001:db8::/32"): RuleAction.BLOCK,
        parse_network("10.0.0.0/8"): RuleAction.ALLOW,
        ipaddress.IPv4Network("198.18.0.9/32"): RuleAction.ALLOW,  # v4-mapped becomes v4
    }
    vlan = parsed.attachments[Point("eth0.100")]
    assert vlan == AttachmentSpec("eth0.100", Policy(DefaultAction.DROP), Mode.AUTO, {})
    assert (eth0.hook, eth0.direction) == (Hook.XDP, Direction.IN)  # no hook: XDP, as before
    assert list(parsed.interfaces) == ["eth0", "eth0.100"]


def test_default_follows_attach_drop_all_unless_block_rules(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "bad.txt").write_text("# bad hosts\n198.18.0.66\n198.18.4.0/24 ; lab\n")
    parsed = policy_files.parse_policy_file(
        '[interfaces.a]\n[interfaces.b]\nblock = ["198.18.0.1"]\n'
        '[interfaces.c]\nrule_files = ["lists/bad.txt"]\n[interfaces.d]\nallow = ["198.18.0.1"]\n',
        base=tmp_path,
    )
    defaults = {point.ifname: spec.policy.default for point, spec in parsed.attachments.items()}
    assert defaults == {"a": DefaultAction.DROP, "b": DefaultAction.PASS,
                        "c": DefaultAction.PASS, "d": DefaultAction.DROP}
    assert parsed.attachments[Point("c")].networks(RuleAction.BLOCK) == [
        parse_network("198.18.0.66"), parse_network("198.18.4.0/24")]


def test_empty_interfaces_table_means_hold_nothing() -> None:
    assert policy_files.parse_policy_file("[interfaces]\n").attachments == {}


def test_toml_syntax_error_names_line_and_column() -> None:
    message = rejected('[interfaces.eth0]\ndefault = "drop\n')
    assert message.startswith("policy.toml: not valid TOML")
    assert "line 2" in message and "column" in message


def test_every_field_error_is_reported_with_line_table_and_key() -> None:
    message = rejected(
        "[interfaces.eth0]\n"  # 1
        'icmp = "ping"\n'  # 2
        'blok = ["198.18.0.1"]\n'  # 3
        'block = ["198.18.0.0/15", "198.18.0.300"]\n'  # 4
        "\n"
        "[interfaces.eth1]\n"  # 6
        "event_rate = -1\n"  # 7
        'timing = "yes"\n'  # 8
        "allow = 7\n"  # 9
    )
    assert "policy.toml:2: [interfaces.eth0] icmp: 'ping' is not an ICMP type (known: echo," in message
    assert "policy.toml:3: [interfaces.eth0] blok: unknown key (did you mean 'block'?)" in message
    assert "policy.toml:4: [interfaces.eth0] block: '198.18.0.300' is not an IPv4/IPv6" in message
    assert "policy.toml:7: [interfaces.eth1] event_rate: -1 is out of range" in message
    assert "policy.toml:8: [interfaces.eth1] timing: 'yes' is not true or false" in message
    assert message.count("policy.toml:") == 5  # the sixth (allow, line 9) is summarised
    assert message.index(":2:") < message.index(":3:") < message.index(":8:")  # in file order
    assert "and 1 more" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x = 1\n[interfaces]\n", "policy.toml:1: x: unknown top-level key"),
        ('default = "drop"\n', "no [interfaces] table"),
        ('interfaces = "eth0"\n', "interfaces: must be a table"),
        ('[interfaces]\n"a/b" = {}\n', "[interfaces.\"a/b\"]: 'a/b' is not a valid interface name"),
        ("[interfaces]\neth0 = 3\n", "[interfaces.eth0]: must be a table of settings"),
        ('[interfaces.eth0]\nmode = "offload"\n', "mode: 'offload' is not one of auto, native, generic"),
        ("[interfaces.eth0]\nevent_rate = true\n", "event_rate: True is not a whole number"),
        ('[interfaces.eth0]\nblock = ["10.0.0.1/8"]\n', "host bits set: did you mean 10.0.0.0/8"),
        ('[interfaces.eth0]\nblock = ["198.18.0.1"]\nallow = ["198.18.0.1/32"]\n',
         "policy.toml:3: [interfaces.eth0] allow: 198.18.0.1 given two rules"),
    ],
)
def test_field_errors(text: str, expected: str) -> None:
    assert expected in rejected(text)


def test_rule_file_errors_name_the_rule_file_and_its_line(tmp_path: Path) -> None:
    (tmp_path / "list.txt").write_text("198.18.0.1\nnot-an-address\n")
    message = rejected('[interfaces.eth0]\nrule_files = ["list.txt", "gone.txt"]\n', base=tmp_path)
    assert f"policy.toml:2: [interfaces.eth0] rule_files: {tmp_path / 'list.txt'}:2:" in message
    assert "gone.txt' not found" in message


def test_load_reports_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError, match="not found"):
        policy_files.load(tmp_path / "missing.toml")
    with pytest.raises(PolicyFileError, match="is a directory"):
        policy_files.load(tmp_path)


# -- export text


def test_dump_quotes_interface_names_that_need_it() -> None:
    spec = AttachmentSpec("eth0.100", Policy(), Mode.NATIVE, {parse_network("fd00::/8"): RuleAction.BLOCK})
    text = policy_files.dump(policy_file([spec]))
    assert '[interfaces."eth0.100"]' in text
    assert policy_files.parse_policy_file(text).attachments == {Point("eth0.100"): spec}


networks = st.one_of(
    st.builds(lambda a, n: ipaddress.IPv4Network((a, n), strict=False),
              st.integers(0, 2**32 - 1), st.integers(0, 32)),
    st.builds(lambda a, n: ipaddress.IPv6Network((a, n), strict=False),
              st.integers(0, 2**128 - 1), st.integers(0, 128)),
).filter(lambda n: not (n.version == 6 and n.subnet_of(ipaddress.IPv6Network("::ffff:0:0/96"))))
points = st.one_of(
    st.just((Hook.XDP, Direction.IN)),
    st.sampled_from([(Hook.TC, Direction.IN), (Hook.TC, Direction.OUT)]),
)


rates = st.builds(Rate, st.integers(1, 1000), st.sampled_from(sorted(UNIT_SECONDS)))
limits = st.builds(Limit.of, rates, st.one_of(st.none(), st.integers(1, 1000)))
icmp_types = st.one_of(
    st.sampled_from([IcmpSet.ECHO, IcmpSet.ECHO_REQUEST, IcmpSet.ALL]).map(IcmpTypes.of),
    st.builds(IcmpTypes, st.frozensets(st.integers(0, 255), min_size=1),
              st.frozensets(st.integers(0, 255).filter(lambda t: not 133 <= t <= 137))),
)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    default = draw(st.sampled_from(DefaultAction))
    return Policy(default, draw(icmp_types), draw(st.booleans()), draw(st.sampled_from(EventsMode)),
                  draw(st.integers(0, 0xFFFFFFFF)), draw(st.booleans()),
                  limit=draw(limits) if default is DefaultAction.LIMIT else None,
                  limit_total=draw(st.one_of(st.none(), limits)),
                  limit_prefix6=draw(st.integers(1, 128)),
                  limit_buckets=draw(st.sampled_from([256, 65536, 100_000])))


@st.composite
def specs(draw: st.DrawFn) -> AttachmentSpec:
    hook, direction = draw(points)
    modes = ([Mode.AUTO, Mode.NATIVE, Mode.GENERIC] if hook is Hook.XDP
             else [Mode.AUTO, Mode.TCX, Mode.CLSACT])
    rules = draw(st.dictionaries(networks, st.sampled_from(RuleAction), max_size=6))
    return AttachmentSpec(
        ifname=draw(st.from_regex(r"[a-z][a-z0-9.@-]{0,14}", fullmatch=True)),
        policy=draw(policies()),
        mode=draw(st.sampled_from(modes)),
        rules=rules,
        hook=hook,
        direction=direction,
        limits={network: draw(limits) for network, action in rules.items()
                if action is RuleAction.LIMIT},
    )


@settings(max_examples=80, deadline=None)
@given(st.lists(specs(), max_size=5, unique_by=lambda s: s.point))
def test_dump_then_parse_is_identity(attachments: list[AttachmentSpec]) -> None:
    written = policy_file(attachments)
    assert policy_files.parse_policy_file(policy_files.dump(written)).attachments == written.attachments


def test_limit_rules_are_tables_of_a_rate_and_its_networks(tmp_path: Path) -> None:
    (tmp_path / "monitoring.txt").write_text("192.0.2.10\n192.0.2.11\n")
    parsed = policy_files.parse_policy_file(
        "[interfaces.eth0]\n"
        'block = ["198.18.0.7"]\n'
        "[[interfaces.eth0.limit_rules]]\n"
        'rate = "600/min"\n'
        'addresses = ["203.0.113.0/24", "2001:db8::/48"]\n'
        'rule_files = ["monitoring.txt"]\n'
        "[[interfaces.eth0.limit_rules]]\n"
        'rate = "1/s"\n'
        "burst = 5\n"
        'addresses = ["198.51.100.1"]\n', base=tmp_path)
    (spec,) = parsed.attachments.values()
    assert spec.policy.default is DefaultAction.PASS  # block rules: kill only those
    assert spec.limited() == {
        Limit.of("600/min"): [parse_network(n) for n in (
            "203.0.113.0/24", "2001:db8::/48", "192.0.2.10", "192.0.2.11")],
        Limit.of("1/s", 5): [parse_network("198.51.100.1")],
    }
    assert spec.networks(RuleAction.BLOCK) == [parse_network("198.18.0.7")]
    assert policy_files.parse_policy_file(policy_files.dump(parsed)).attachments == parsed.attachments


@pytest.mark.parametrize(("text", "message"), [
    ('[[interfaces.eth0.limit_rules]]\naddresses = ["192.0.2.1"]\n',
     "limit_rules #1 rate: is missing"),
    ('[[interfaces.eth0.limit_rules]]\nrate = "10/s"\nadresses = ["192.0.2.1"]\n',
     "limit_rules #1 adresses: unknown key"),
    ('[[interfaces.eth0.limit_rules]]\nrate = "10/fortnight"\n', "is not a rate"),
    ('[[interfaces.eth0.limit_rules]]\nrate = "10/s"\nburst = "many"\n',
     "burst: 'many' is not a whole number"),
    ('[interfaces.eth0]\nlimit_rules = "10/s"\n', "limit_rules: must be a list of tables"),
    ('[interfaces.eth0]\nblock = ["192.0.2.1"]\n[[interfaces.eth0.limit_rules]]\nrate = "1/s"\n'
     'addresses = ["192.0.2.1"]\n', "192.0.2.1 given two rules"),
    ('[[interfaces.eth0.limit_rules]]\nrate = "1/s"\naddresses = ["192.0.2.1"]\n'
     '[[interfaces.eth0.limit_rules]]\nrate = "2/s"\naddresses = ["192.0.2.1"]\n',
     "192.0.2.1 given two rules"),
    ('[interfaces.eth0]\ndefault = "limit"\n', 'default: "limit" needs a rate'),
    ('[interfaces.eth0]\ndefault = "drop"\nlimit = "1/s"\n', 'limit: is the rate of default = "limit"'),
    ('[interfaces.eth0]\nburst = 3\n', "burst: is the burst of limit"),
    ('[interfaces.eth0]\nicmp = ["echo", "icmpv6:135"]\n', "neighbour discovery"),
    ('[interfaces.eth0]\nlimit_prefix6 = 0\n', "limit_prefix6: 0 is not a whole number from 1"),
])
def test_limit_errors_name_the_table_and_key(text: str, message: str) -> None:
    with pytest.raises(PolicyFileError) as caught:
        policy_files.parse_policy_file(text, source="policy.toml")
    assert message in str(caught.value)


def test_a_file_limit_sets_the_default_and_keeps_its_settings() -> None:
    parsed = policy_files.parse_policy_file(
        '[interfaces.eth0]\nlimit = "10/s"\nburst = 20\nlimit_total = "1000/s"\n'
        'limit_prefix6 = 56\nlimit_buckets = 4096\nicmp = ["echo", "timestamp"]\n')
    (spec,) = parsed.attachments.values()
    assert spec.policy == Policy(DefaultAction.LIMIT, "echo,timestamp", limit=Limit.of("10/s", 20),
                                 limit_total=Limit.of("1000/s"), limit_prefix6=56,
                                 limit_buckets=4096)
    text = policy_files.dump(parsed)
    assert 'icmp = ["echo", "timestamp"]' in text and 'limit = "10/s"' in text
    assert policy_files.parse_policy_file(text).attachments == parsed.attachments


# -- hooks and directions


TC_IN, TC_OUT = (Hook.TC, Direction.IN), (Hook.TC, Direction.OUT)


def test_an_array_of_tables_lists_several_attachments_of_one_interface() -> None:
    parsed = policy_files.parse_policy_file(
        "[[interfaces.eth0]]\n"
        'block = ["198.18.0.7"]\n'
        "[[interfaces.eth0]]\n"
        'hook = "tc"\n'
        'direction = "both"\n'
        'default = "drop"\n'
        'allow = ["198.18.0.9"]\n'
        "[interfaces.eth1]\n"
        'hook = "TC"\n'  # words in any case, as the other keys
        'direction = "out"\n'
        'mode = "auto"\n'  # accepted at tc: auto is no mode
    )
    assert list(parsed.attachments) == [Point("eth0"), Point("eth0", *TC_IN),
                                        Point("eth0", *TC_OUT), Point("eth1", *TC_OUT)]
    xdp, tc_in, tc_out, egress = parsed.attachments.values()
    assert xdp.policy.default == DefaultAction.PASS and xdp.networks(RuleAction.BLOCK) == [
        parse_network("198.18.0.7")]
    assert tc_in.rules == tc_out.rules == {parse_network("198.18.0.9"): RuleAction.ALLOW}
    assert tc_in.policy == tc_out.policy == Policy(DefaultAction.DROP)
    assert egress.mode == Mode.AUTO
    assert [len(specs) for specs in parsed.interfaces.values()] == [3, 1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[interfaces.eth0]\ndirection = "out"\n',
         "policy.toml:2: [interfaces.eth0] direction: 'out' needs hook = \"tc\": XDP sees only "
         "packets that arrive (add hook = \"tc\", or remove direction)"),
        ('[interfaces.eth0]\nhook = "xdp"\ndirection = "both"\n',
         "policy.toml:3: [interfaces.eth0] direction: 'both' needs hook = \"tc\""),
        ('[interfaces.eth0]\nhook = "tc"\nmode = "native"\n',
         "policy.toml:3: [interfaces.eth0] mode: 'native' is an XDP mode: it needs hook = "
         "\"xdp\" (a tc attachment's mode is \"tcx\", \"clsact\" or \"auto\")"),
        ('[interfaces.eth0]\nmode = "clsact"\n',
         "policy.toml:2: [interfaces.eth0] mode: 'clsact' is a tc mode: it needs hook = \"tc\""),
        ('[interfaces.eth0]\nhook = "ebpf"\n',
         "policy.toml:2: [interfaces.eth0] hook: 'ebpf' is not one of xdp, tc"),
        ('[interfaces.eth0]\nhook = "tc"\ndirection = "up"\n',
         "policy.toml:3: [interfaces.eth0] direction: 'up' is not one of in, out, both"),
        ('[interfaces.eth0]\nhok = "tc"\n', "hok: unknown key (did you mean 'hook'?)"),
        ('[[interfaces.eth0]]\nhook = "tc"\n\n[[interfaces.eth0]]\nhook = "tc"\n'
         'direction = "both"\n',
         "policy.toml:5: [[interfaces.eth0]] #2 hook: tc in is listed twice for eth0: keep one "
         "entry per hook and direction"),
        ("[[interfaces.eth0]]\n[[interfaces.eth0]]\n",
         "policy.toml:2: [[interfaces.eth0]] #2 hook: xdp is listed twice for eth0"),
        ('[[interfaces.eth0]]\n[[interfaces.eth0]]\nhook = "tc"\nicmp = "ping"\n',
         "policy.toml:4: [[interfaces.eth0]] #2 icmp: 'ping' is not an ICMP type"),
        ("[interfaces]\neth0 = []\n", "[interfaces.eth0]: an empty list of attachments"),
        ("[interfaces]\neth0 = [3]\n", "[[interfaces.eth0]] #1: must be a table of settings"),
    ],
)
def test_hook_and_direction_errors_name_the_fix(text: str, expected: str) -> None:
    message = rejected(text)
    assert expected in message
    assert message.count("policy.toml") == 1  # one problem, one line


# -- planning against a given running state


def running(ifname: str, policy: Policy | None, rules: dict[str, RuleAction], *,
            mode: Mode = Mode.NATIVE, stale: bool = False, hits: int = 0,
            hook: Hook = Hook.XDP, direction: Direction = Direction.IN,
            clsact: bool = False, abi_version: int = 0, outdated: bool = False,
            problem: str = "") -> AttachmentInfo:
    """What status reads of an attachment: at tc a tcx link, or a clsact filter (no link
    id); a stale one filters nothing (mode NONE)."""
    if hook is Hook.TC:
        mode = Mode.CLSACT if clsact else Mode.TCX
    return AttachmentInfo(
        point=Point(ifname, hook, direction), ifindex=1, program_id=10,
        link_id=0 if clsact else 20, mode=Mode.NONE if stale else mode, policy=policy,
        rule_count=len(rules),
        rules=tuple(Rule.of(parse_network(a), action, hits) for a, action in rules.items()),
        stats=None, problem="the interface is gone" if stale else problem, pin_dir="",
        state=LinkState.GONE if stale else LinkState.FILTERING, abi_version=abi_version,
        outdated=outdated,
    )


BLOCK, ALLOW = RuleAction.BLOCK, RuleAction.ALLOW
PASS_ALL = Policy(DefaultAction.PASS)


def test_plan_of_matching_state_is_empty() -> None:
    desired = policy_files.parse_policy_file('[interfaces.lo]\nblock = ["198.18.0.1"]\n')
    now = [running("lo", PASS_ALL, {"198.18.0.1": BLOCK}, hits=5)]
    plan = policy_files.plan(desired, now)
    assert not plan.changed and plan.unchanged == [Point("lo")]
    assert plan.unchanged_interfaces == ["lo"]
    shown = plan_json(plan)
    assert shown["changes"] == []
    assert shown["unchanged"] == ["lo"]
    assert shown["unchanged_attachments"] == [
        {"interface": "lo", "hook": "xdp", "direction": "in"}]


def test_plan_updates_only_differences_and_detaches_unlisted() -> None:
    desired = policy_files.parse_policy_file(
        '[interfaces.lo]\ndefault = "drop"\nblock = ["198.18.0.1", "198.18.0.2"]\n'
        'allow = ["198.18.0.3"]\n'
    )
    now = [
        running("lo", PASS_ALL, {"198.18.0.1": BLOCK, "198.18.0.3": BLOCK, "198.18.0.4": ALLOW}),
        running("pkold0", PASS_ALL, {}),
    ]
    plan = policy_files.plan(desired, now)
    detach, update = plan.steps
    assert (detach.ifname, detach.action, detach.reason) == ("pkold0", "detach", "not in the policy file")
    assert update.action == "update" and update.policy_from == PASS_ALL
    assert update.add == {parse_network("198.18.0.2"): BLOCK, parse_network("198.18.0.3"): ALLOW}
    assert update.remove == (parse_network("198.18.0.4"),)
    assert update.describe() == (
        "update lo: set default pass -> drop; add block 198.18.0.2, allow 198.18.0.3; "
        "remove 198.18.0.4"
    )
    assert update.policy_changes == ["default pass -> drop"]
    assert plan_json(plan)["changes"] == [
        {"interface": "pkold0", "hook": "xdp", "direction": "in", "action": "detach",
         "reason": "not in the policy file", "policy": None, "mode": None,
         "policy_changes": [], "add": [], "remove": []},
        {"interface": "lo", "hook": "xdp", "direction": "in", "action": "update",
         "reason": None,
         "policy": {"default": "drop", "icmp": "echo",
                    "icmp_types": {"ipv4": [0, 8], "ipv6": [128, 129]}, "all_protocols": False,
                    "events": "drops", "event_rate": 1000, "timing": False, "limit": None,
                    "limit_total": None, "limit_prefix6": 64, "limit_buckets": 65536},
         "mode": "auto", "policy_changes": ["default pass -> drop"],
         "add": [{"address": "198.18.0.2", "action": "block", "limit": None},
                 {"address": "198.18.0.3", "action": "allow", "limit": None}],
         "remove": ["198.18.0.4"]},
    ]


def test_plan_reattaches_on_mode_change_and_stale_but_auto_accepts_any_mode() -> None:
    desired = policy_files.parse_policy_file('[interfaces.lo]\nmode = "generic"\n[interfaces.pkgone]\n'
                                 '[interfaces.pkany]\n')
    now = [running("lo", Policy(DefaultAction.DROP), {}),
           running("pkany", Policy(DefaultAction.DROP), {}, mode=Mode.GENERIC)]
    with pytest.raises(InterfaceNotFound, match="pkgone not found on this host"):
        policy_files.plan(desired, now)
    desired = policy_files.parse_policy_file('[interfaces.lo]\nmode = "generic"\n')
    (step,) = policy_files.plan(desired, now[:1]).steps
    assert step.action == "reattach" and "mode native -> generic" in step.reason
    stale_now = [running("lo", Policy(DefaultAction.DROP), {}, mode=Mode.GENERIC, stale=True)]
    (step,) = policy_files.plan(desired, stale_now).steps
    assert step.action == "reattach" and "stale" in step.reason


def test_plan_attaches_missing_interfaces() -> None:
    (step,) = policy_files.plan(policy_files.parse_policy_file("[interfaces.lo]\n"), []).steps
    assert step.action == "attach" and step.describe().startswith("attach lo: drop pings")


def test_plan_goes_attachment_by_attachment() -> None:
    """XDP and tc on one interface are planned apart: the unchanged XDP attachment stays
    as it is while tc is attached, updated, reattached or detached."""
    both = policy_files.parse_policy_file(
        '[[interfaces.lo]]\nblock = ["198.18.0.1"]\n'
        '[[interfaces.lo]]\nhook = "tc"\ndirection = "out"\nblock = ["198.18.0.1"]\n'
    )
    xdp = running("lo", PASS_ALL, {"198.18.0.1": BLOCK})
    plan = policy_files.plan(both, [xdp])
    (attach,) = plan.steps
    assert (attach.point, attach.action) == (Point("lo", *TC_OUT), "attach")
    assert attach.describe().startswith("attach lo (tc out): pass pings")
    assert attach.describe().endswith("; 1 block, 0 allow rules")  # no mode: tc has none
    assert plan.unchanged_interfaces == []  # lo changes (its tc attachment)
    shown = plan_json(plan)
    assert shown["changes"][0]["hook"] == "tc" and shown["changes"][0]["direction"] == "out"
    assert shown["changes"][0]["mode"] == "auto"  # as asked: the kernel's choice
    assert shown["unchanged"] == []  # lo changes (its tc attachment)
    assert shown["unchanged_attachments"] == [{"interface": "lo", "hook": "xdp", "direction": "in"}]

    tc_out = running("lo", PASS_ALL, {"198.18.0.1": BLOCK, "198.18.0.2": BLOCK}, hook=Hook.TC,
                     direction=Direction.OUT)
    (update,) = policy_files.plan(both, [xdp, tc_out]).steps
    assert update.describe() == "update lo (tc out): remove 198.18.0.2"

    stale = running("lo", PASS_ALL, {}, hook=Hook.TC, direction=Direction.OUT, stale=True)
    (reattach,) = policy_files.plan(both, [xdp, stale]).steps
    assert reattach.action == "reattach" and reattach.point == Point("lo", *TC_OUT)

    only_xdp = policy_files.parse_policy_file('[interfaces.lo]\nblock = ["198.18.0.1"]\n')
    tc_in = running("lo", PASS_ALL, {}, hook=Hook.TC, direction=Direction.IN)
    plan = policy_files.plan(only_xdp, [xdp, tc_in, tc_out])
    assert [(s.action, s.point) for s in plan.steps] == [
        ("detach", Point("lo", *TC_IN)), ("detach", Point("lo", *TC_OUT))]
    assert plan.steps[0].describe() == "detach lo (tc in): not in the policy file"
    assert plan.unchanged == [Point("lo")]


def test_plan_reattaches_tc_only_for_a_named_mode_that_differs() -> None:
    now = [running("lo", Policy(DefaultAction.DROP), {}, hook=Hook.TC)]  # a tcx link
    for mode, changes in (("auto", []), ("tcx", []), ("clsact", ["reattach"])):
        desired = policy_files.parse_policy_file(f'[interfaces.lo]\nhook = "tc"\nmode = "{mode}"\n')
        assert desired.attachments[Point("lo", *TC_IN)].mode is Mode(mode)
        assert [step.action for step in policy_files.plan(desired, now).steps] == changes
    clsact = [running("lo", Policy(DefaultAction.DROP), {}, hook=Hook.TC, clsact=True)]
    desired = policy_files.parse_policy_file('[interfaces.lo]\nhook = "tc"\nmode = "tcx"\n')
    (step,) = policy_files.plan(desired, clsact).steps
    assert step.action == "reattach" and "clsact -> tcx" in step.describe()


def test_export_keeps_a_clsact_filter_one() -> None:
    now = [running("lo", PASS_ALL, {}, hook=Hook.TC, clsact=True)]
    text = policy_files.export(now)
    assert 'mode = "clsact"' in text
    assert not policy_files.plan(policy_files.parse_policy_file(text), now).changed


def test_export_text_of_running_state_skips_stale() -> None:
    now = [running("lo", PASS_ALL, {"198.18.0.1": BLOCK, "fd00::/8": ALLOW}),
           running("pkgone", PASS_ALL, {}, stale=True)]
    parsed = policy_files.parse_policy_file(policy_files.export(now))
    assert list(parsed.attachments) == [Point("lo")]
    assert parsed.attachments[Point("lo")].mode == Mode.NATIVE
    assert not policy_files.plan(parsed, now[:1]).changed


def test_export_text_of_xdp_and_tc_on_one_interface() -> None:
    now = [running("lo", PASS_ALL, {"198.18.0.1": BLOCK}),
           running("lo", Policy(DefaultAction.DROP), {"198.18.0.2": ALLOW}, hook=Hook.TC,
                   direction=Direction.OUT),
           running("lo", PASS_ALL, {}, hook=Hook.TC, direction=Direction.IN, stale=True),
           running("pkone", PASS_ALL, {}, hook=Hook.TC)]
    text = policy_files.export(now)
    assert text.count("[[interfaces.lo]]") == 2 and "[interfaces.pkone]" in text
    assert 'hook = "tc"\ndirection = "out"\n' in text
    tables = text.split("\n\n")
    assert sum("mode = " in table for table in tables) == 1  # only XDP has a mode
    parsed = policy_files.parse_policy_file(text)
    assert list(parsed.attachments) == [Point("lo"), Point("lo", *TC_OUT), Point("pkone", *TC_IN)]
    assert not policy_files.plan(parsed, [now[0], now[1], now[3]]).changed


def test_outdated_attachments_are_upgraded_first_and_newer_pins_stop_the_plan() -> None:
    desired = policy_files.parse_policy_file('[interfaces.lo]\nblock = ["198.18.0.1"]\n')
    outdated = running("lo", PASS_ALL, {"198.18.0.1": BLOCK, "198.18.0.2": BLOCK},
                       abi_version=4, outdated=True)
    upgrade, update = policy_files.plan(desired, [outdated]).steps
    assert (upgrade.action, update.action) == ("upgrade", "update")
    assert upgrade.describe().startswith("upgrade lo: it runs program unrecorded (ABI 4)")
    assert update.remove == (parse_network("198.18.0.2"),)
    # pins this build converts but cannot read yet: upgraded, the rest planned afterwards
    older = running("lo", None, {}, abi_version=2, outdated=True)
    assert [step.action for step in policy_files.plan(desired, [older]).steps] == ["upgrade"]
    newer = running("lo", None, {}, abi_version=99, outdated=True)
    with pytest.raises(IncompatiblePins, match="newer pingkiller") as caught:
        policy_files.plan(desired, [newer])
    assert (caught.value.point, caught.value.remedy) == (Point("lo"), Remedy.NEWER)


def test_a_tc_attachment_whose_mode_cannot_be_seen_keeps_its_kind() -> None:
    """Moved to another network namespace, it still filters but shows no mode: a clsact
    filter is told by its missing link id, as the pins record it."""
    moved = running("lo", PASS_ALL, {}, hook=Hook.TC, clsact=True)
    moved = AttachmentInfo(**{**vars(moved), "mode": Mode.NONE, "state": LinkState.MOVED})
    for mode, changes in (("clsact", []), ("tcx", ["reattach"])):
        desired = policy_files.parse_policy_file(f'[interfaces.lo]\nhook = "tc"\nmode = "{mode}"\n'
                                                 'default = "pass"\n')
        assert [step.action for step in policy_files.plan(desired, [moved]).steps] == changes
    assert 'mode = "clsact"' in policy_files.export([moved])


def test_export_refuses_what_it_cannot_read() -> None:
    unreadable = running("lo", None, {}, abi_version=99, problem="made by a newer pingkiller")
    with pytest.raises(IncompatiblePins, match="cannot export lo: made by a newer pingkiller"):
        policy_files.export([unreadable])
    assert policy_files.from_running([]).attachments == {}


def test_the_declarative_api_is_public() -> None:
    import pingkiller

    assert pingkiller.apply is policy_files.apply and pingkiller.plan is policy_files.plan
    assert pingkiller.from_running is policy_files.from_running
    pingkiller.apply(policy_files.Plan("<empty>", [], []))  # nothing to do, nothing done


def test_no_cli_text_in_the_library() -> None:
    """The library's words name no command and no option: the CLI words remedies."""
    package = REPO / "pingkiller" / "declarative"
    for source in package.glob("*.py"):
        text = source.read_text()
        assert "`pingkiller " not in text, source
        assert not re.search(r"[\s\"'(]--[a-z]", text), source


# -- CLI: bad input is one line, exit 2, before anything is touched


def test_cli_rejects_invalid_file_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[interfaces.eth0]\nicmp = "echo"\ndefault = "maybe"\n')
    with pytest.raises(SystemExit) as caught:
        main(["apply", "-f", str(policy), "--dry-run"])
    out, err = capsys.readouterr()
    assert caught.value.code == 2 and out == ""
    assert err == (f"pingkiller: {policy}:3: [interfaces.eth0] default: 'maybe' is not one of "
                   "drop, pass, limit (nothing was changed)\n")
    assert not (tmp_path / "pins").exists()


def test_cli_watch_refuses_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["apply", "-f", str(tmp_path / "p.toml"), "--watch", "--dry-run"])
    assert caught.value.code == 2
    assert "--watch cannot be combined" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:9477", ("127.0.0.1", 9477)),
    ("[::1]:9100", ("::1", 9100)),
    ("0.0.0.0:80", ("0.0.0.0", 80)),
])
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["9477", ":9477", "localhost:", "127.0.0.1:99999", "h:x"])
def test_parse_listen_rejects(text: str) -> None:
    with pytest.raises(InvalidInput, match="is not HOST:PORT"):
        parse_listen(text)


# -- deployment files agree with the code


def required_capabilities() -> set[str]:
    """What attach needs, as the code checks it; docs/security.md must name each one."""
    caps = set(capabilities.missing(0, load=True))
    assert caps == {"CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"}
    text = (REPO / "docs" / "security.md").read_text()
    assert all(cap in text for cap in caps), f"docs/security.md lacks one of {caps}"
    return caps


def unit_file() -> Path:
    return REPO / "deploy" / "pingkiller.service"


def test_systemd_unit_applies_the_policy_with_the_documented_capabilities() -> None:
    # `systemd-analyze verify` of the unit as make install writes it: tests/e2e/test_packaging.py
    lines = unit_file().read_text().splitlines()
    settings_ = {}
    for line in lines:
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings_[key] = value
    assert settings_["ExecStart"] == "/usr/local/bin/pingkiller apply -f /etc/pingkiller/policy.toml"
    assert settings_["Type"] == "oneshot" and settings_["RemainAfterExit"] == "yes"
    caps = required_capabilities()
    assert set(settings_["CapabilityBoundingSet"].split()) == caps
    assert set(settings_["AmbientCapabilities"].split()) == caps
    assert "ExecStop" not in settings_  # detaching on stop is an opt-in drop-in
    drop_in = (REPO / "deploy" / "pingkiller.service.d" / "detach-on-stop.conf").read_text()
    assert "ExecStop=/usr/local/bin/pingkiller detach --all" in drop_in

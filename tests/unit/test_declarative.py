"""Policy files without a kernel: parsing, whole-file validation, planning, export text.

Planning is a pure function of the file and the running state, so the running state here
is given as AttachmentInfo values (what `pingkiller.attachments()` returns). The
systemd unit is checked at the end (docs/deploy in test_deploy.py).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pingkiller import capabilities, declarative
from pingkiller.abi import DefaultAction, EventsMode, IcmpSet, RuleAction
from pingkiller.bpf import XdpMode
from pingkiller.cli import main
from pingkiller.declarative import InterfaceSpec, PolicyFile
from pingkiller.errors import InterfaceNotFound, InvalidInput, PolicyFileError
from pingkiller.exporter import parse_listen
from pingkiller.killer import AttachmentInfo
from pingkiller.policy import Policy, Rule, parse_network

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def private_pin_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PINGKILLER_PIN_ROOT", str(tmp_path / "pins"))


def rejected(text: str, base: Path | None = None) -> str:
    with pytest.raises(PolicyFileError) as caught:
        declarative.parse(text, source="policy.toml", base=base)
    message = str(caught.value)
    assert "\n" not in message
    assert message.endswith("(nothing was changed)")
    return message


# -- parsing


def test_full_interface_table() -> None:
    parsed = declarative.parse(
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
    eth0 = parsed.interfaces["eth0"]
    assert eth0.policy == Policy(DefaultAction.DROP, IcmpSet.ECHO_REQUEST, True, EventsMode.ALL, 0, True)
    assert eth0.mode == XdpMode.GENERIC
    assert eth0.rules == {
        parse_network("198.18.0.7"): RuleAction.BLOCK,
        parse_network("2001:db8::/32"): RuleAction.BLOCK,
        parse_network("10.0.0.0/8"): RuleAction.ALLOW,
        ipaddress.IPv4Network("198.18.0.9/32"): RuleAction.ALLOW,  # v4-mapped becomes v4
    }
    vlan = parsed.interfaces["eth0.100"]
    assert vlan == InterfaceSpec("eth0.100", Policy(DefaultAction.DROP), XdpMode.AUTO, {})


def test_default_follows_attach_drop_all_unless_block_rules(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "bad.txt").write_text("# bad hosts\n198.18.0.66\n198.18.4.0/24 ; lab\n")
    parsed = declarative.parse(
        '[interfaces.a]\n[interfaces.b]\nblock = ["198.18.0.1"]\n'
        '[interfaces.c]\nrule_files = ["lists/bad.txt"]\n[interfaces.d]\nallow = ["198.18.0.1"]\n',
        base=tmp_path,
    )
    defaults = {name: spec.policy.default for name, spec in parsed.interfaces.items()}
    assert defaults == {"a": DefaultAction.DROP, "b": DefaultAction.PASS,
                        "c": DefaultAction.PASS, "d": DefaultAction.DROP}
    assert parsed.interfaces["c"].networks(RuleAction.BLOCK) == [
        parse_network("198.18.0.66"), parse_network("198.18.4.0/24")]


def test_empty_interfaces_table_means_hold_nothing() -> None:
    assert declarative.parse("[interfaces]\n").interfaces == {}


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
    assert "policy.toml:2: [interfaces.eth0] icmp: 'ping' is not one of echo, echo-request, all" in message
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
         "policy.toml:3: [interfaces.eth0] allow: 198.18.0.1 both blocked and allowed"),
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
        declarative.load(tmp_path / "missing.toml")
    with pytest.raises(PolicyFileError, match="is a directory"):
        declarative.load(tmp_path)


# -- export text


def test_dump_quotes_interface_names_that_need_it() -> None:
    spec = InterfaceSpec("eth0.100", Policy(), XdpMode.NATIVE, {parse_network("fd00::/8"): RuleAction.BLOCK})
    text = declarative.dump(PolicyFile({"eth0.100": spec}))
    assert '[interfaces."eth0.100"]' in text
    assert declarative.parse(text).interfaces == {"eth0.100": spec}


networks = st.one_of(
    st.builds(lambda a, n: ipaddress.IPv4Network((a, n), strict=False),
              st.integers(0, 2**32 - 1), st.integers(0, 32)),
    st.builds(lambda a, n: ipaddress.IPv6Network((a, n), strict=False),
              st.integers(0, 2**128 - 1), st.integers(0, 128)),
).filter(lambda n: not (n.version == 6 and n.subnet_of(ipaddress.IPv6Network("::ffff:0:0/96"))))
specs = st.builds(
    InterfaceSpec,
    ifname=st.from_regex(r"[a-z][a-z0-9.@-]{0,14}", fullmatch=True),
    policy=st.builds(Policy, st.sampled_from(DefaultAction), st.sampled_from(IcmpSet), st.booleans(),
                     st.sampled_from(EventsMode), st.integers(0, 0xFFFFFFFF), st.booleans()),
    mode=st.sampled_from([XdpMode.AUTO, XdpMode.NATIVE, XdpMode.GENERIC]),
    rules=st.dictionaries(networks, st.sampled_from(RuleAction), max_size=6),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(specs, max_size=3, unique_by=lambda s: s.ifname))
def test_dump_then_parse_is_identity(interfaces: list[InterfaceSpec]) -> None:
    policy_file = PolicyFile({spec.ifname: spec for spec in interfaces})
    assert declarative.parse(declarative.dump(policy_file)).interfaces == policy_file.interfaces


# -- planning against a given running state


def running(ifname: str, policy: Policy, rules: dict[str, RuleAction], *,
            mode: XdpMode = XdpMode.NATIVE,
            stale: bool = False, hits: int = 0) -> AttachmentInfo:
    return AttachmentInfo(
        ifname=ifname, ifindex=1, program_id=10, link_id=20, mode=mode, policy=policy,
        rule_count=len(rules),
        rules=[Rule(parse_network(a), action, hits) for a, action in rules.items()],
        stats=None, stale=stale, problem="the interface is gone" if stale else "", pin_dir="",
    )


BLOCK, ALLOW = RuleAction.BLOCK, RuleAction.ALLOW
PASS_ALL = Policy(DefaultAction.PASS)


def test_plan_of_matching_state_is_empty() -> None:
    desired = declarative.parse('[interfaces.lo]\nblock = ["198.18.0.1"]\n')
    now = [running("lo", PASS_ALL, {"198.18.0.1": BLOCK}, hits=5)]
    plan = declarative.plan(desired, now)
    assert not plan.changed and plan.unchanged == ["lo"]
    assert plan.to_json()["changes"] == []


def test_plan_updates_only_differences_and_detaches_unlisted() -> None:
    desired = declarative.parse(
        '[interfaces.lo]\ndefault = "drop"\nblock = ["198.18.0.1", "198.18.0.2"]\n'
        'allow = ["198.18.0.3"]\n'
    )
    now = [
        running("lo", PASS_ALL, {"198.18.0.1": BLOCK, "198.18.0.3": BLOCK, "198.18.0.4": ALLOW}),
        running("pkold0", PASS_ALL, {}),
    ]
    plan = declarative.plan(desired, now)
    detach, update = plan.steps
    assert (detach.ifname, detach.action, detach.reason) == ("pkold0", "detach", "not in the policy file")
    assert update.action == "update" and update.policy_from == PASS_ALL
    assert update.add == {parse_network("198.18.0.2"): BLOCK, parse_network("198.18.0.3"): ALLOW}
    assert update.remove == (parse_network("198.18.0.4"),)
    assert update.describe() == (
        "update lo: set default pass -> drop; add block 198.18.0.2, allow 198.18.0.3; "
        "remove 198.18.0.4"
    )
    assert update.to_json()["policy_changes"] == ["default pass -> drop"]


def test_plan_reattaches_on_mode_change_and_stale_but_auto_accepts_any_mode() -> None:
    desired = declarative.parse('[interfaces.lo]\nmode = "generic"\n[interfaces.pkgone]\n'
                                 '[interfaces.pkany]\n')
    now = [running("lo", Policy(DefaultAction.DROP), {}),
           running("pkany", Policy(DefaultAction.DROP), {}, mode=XdpMode.GENERIC)]
    with pytest.raises(InterfaceNotFound, match="pkgone not found on this host"):
        declarative.plan(desired, now)
    desired = declarative.parse('[interfaces.lo]\nmode = "generic"\n')
    (step,) = declarative.plan(desired, now[:1]).steps
    assert step.action == "reattach" and "mode native -> generic" in step.reason
    stale_now = [running("lo", Policy(DefaultAction.DROP), {}, mode=XdpMode.GENERIC, stale=True)]
    (step,) = declarative.plan(desired, stale_now).steps
    assert step.action == "reattach" and "stale" in step.reason


def test_plan_attaches_missing_interfaces() -> None:
    (step,) = declarative.plan(declarative.parse("[interfaces.lo]\n"), []).steps
    assert step.action == "attach" and step.describe().startswith("attach lo: drop pings")


def test_export_text_of_running_state_skips_stale() -> None:
    now = [running("lo", PASS_ALL, {"198.18.0.1": BLOCK, "fd00::/8": ALLOW}),
           running("pkgone", PASS_ALL, {}, stale=True)]
    parsed = declarative.parse(declarative.export(now))
    assert list(parsed.interfaces) == ["lo"]
    assert parsed.interfaces["lo"].mode == XdpMode.NATIVE
    assert not declarative.plan(parsed, now[:1]).changed


# -- CLI: bad input is one line, exit 2, before anything is touched


def test_cli_rejects_invalid_file_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[interfaces.eth0]\nicmp = "echo"\ndefault = "maybe"\n')
    with pytest.raises(SystemExit) as caught:
        main(["apply", "-f", str(policy), "--dry-run"])
    out, err = capsys.readouterr()
    assert caught.value.code == 2 and out == ""
    assert err == (f"pingkiller: {policy}:3: [interfaces.eth0] default: 'maybe' is not one of "
                   "drop, pass (nothing was changed)\n")
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

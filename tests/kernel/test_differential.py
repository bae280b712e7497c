"""The data path cannot be fooled: random frames under random policies, program vs oracle.

Each example draws a policy (0-8 exact/prefix, v4/v6, block/allow rules; default action;
ICMP set; all-protocols; events mode) and a frame (VLAN stacks, IPv4 options, fragments,
lying lengths, IPv6 extension-header chains, truncation anywhere), runs the frame through
BPF_PROG_RUN on the real program and demands that verdict, reason counter (packets and
bytes), event counters, rule hits and ring-buffer event equal what tests/oracle.py says.

23,000 examples through the XDP program and 4,000 through each tc program (the same
oracle: the tc programs judge alike and say it with TC_ACT_SHOT / TCX_NEXT), derandomized
so CI sees the same ones every run. Strategies and the harness live in tests/fuzz.py, which
also runs the same check standalone at scale (--entry picks the program).
"""

from __future__ import annotations

import fuzz
import oracle
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pingkiller import bpf
from pingkiller.model import enums

pytestmark = pytest.mark.root

DIFFERENTIAL = settings(
    deadline=None,
    derandomize=True,
    database=None,
    # ``path`` only selects the program of a loaded object that every example resets.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture],
)
# Each tc program: fewer examples (the frames and policies are XDP's; only the entry differs).
TC = pytest.mark.parametrize("entry", fuzz.TC_ENTRIES, indirect=True, ids=str)



def agree(path: fuzz.DataPath, scenario: fuzz.Scenario) -> None:
    assume(fuzz.runnable(path.entry, scenario.frame))  # tc: no sk_buff of a runt IP frame
    problems = fuzz.check_scenario(path, scenario)
    assert not problems, "program and oracle disagree\n" + fuzz.report(scenario, problems, path.entry)


@st.composite
def scenarios_with(draw: st.DrawFn, frames: st.SearchStrategy[bytes]) -> fuzz.Scenario:
    return fuzz.Scenario(draw(fuzz.POLICIES), draw(frames), timing=fuzz.one_in(draw, 8),
                         force_lookups=fuzz.one_in(draw, 8))


_TAGS = st.integers(0, 2)
_DEEP_TAGS = st.integers(3, 6)  # more than the 2 read inline: walked, then read in place
_KILOBYTE_OF_TAGS = st.integers(256, 300)  # the walk ends past 1 KiB: the frame is parsed copied
_TPIDS = st.sampled_from((b"\x81\x00", b"\x88\xa8"))
_AROUND_L4 = st.integers(-6, 9)


@st.composite
def _framed(draw: st.DrawFn, packets: st.SearchStrategy[tuple[bytes, int]],
            ethertype: int, tags: st.SearchStrategy[int] = _TAGS) -> bytes:
    """An IP packet in Ethernet with 0-2 VLAN tags (or ``tags``), maybe cut around its L4
    header. A deeper stack repeats its first 6 TPIDs (a draw per tag slows every example)."""
    packet, l4 = draw(packets)
    count = draw(tags)
    tpids = [draw(_TPIDS) for _ in range(min(count, 6))]
    l2 = fuzz.MACS + b"".join(tpids[i % len(tpids)] + b"\x00\x07" for i in range(count))
    l2 += ethertype.to_bytes(2, "big")
    frame = l2 + packet
    if fuzz.one_in(draw, 3):
        frame = frame[: max(14, len(l2) + l4 + draw(_AROUND_L4))]
    return frame[: fuzz.MAX_FRAME]


RANDOM = fuzz.scenarios()
IPV6_CHAINS = scenarios_with(_framed(fuzz.IPV6_PACKETS, 0x86DD))
IPV4_OPTIONS = scenarios_with(_framed(fuzz.IPV4_PACKETS, 0x0800))
# Behind a deep tag stack the headers are read in place where the walk ended; behind a
# kilobyte of tags (PK_IN_PLACE_BYTES), every header is read copied (load_bytes).
DEEP = scenarios_with(st.one_of(_framed(fuzz.IPV4_PACKETS, 0x0800, _DEEP_TAGS),
                                _framed(fuzz.IPV6_PACKETS, 0x86DD, _DEEP_TAGS)))
COPIED = scenarios_with(st.one_of(_framed(fuzz.IPV4_PACKETS, 0x0800, _KILOBYTE_OF_TAGS),
                                  _framed(fuzz.IPV6_PACKETS, 0x86DD, _KILOBYTE_OF_TAGS)))


@settings(DIFFERENTIAL, max_examples=10_000)
@given(RANDOM)
def test_random_frames_under_random_policies(path: fuzz.DataPath, scenario: fuzz.Scenario) -> None:
    agree(path, scenario)


@settings(DIFFERENTIAL, max_examples=5_500)
@given(IPV6_CHAINS)
def test_ipv6_extension_header_chains(path: fuzz.DataPath, scenario: fuzz.Scenario) -> None:
    agree(path, scenario)


@settings(DIFFERENTIAL, max_examples=5_500)
@given(IPV4_OPTIONS)
def test_ipv4_options_and_fragments(path: fuzz.DataPath, scenario: fuzz.Scenario) -> None:
    agree(path, scenario)


@settings(DIFFERENTIAL, max_examples=1_000)
@given(DEEP)
def test_frames_behind_deep_tag_stacks(path: fuzz.DataPath, scenario: fuzz.Scenario) -> None:
    agree(path, scenario)


@settings(DIFFERENTIAL, max_examples=1_000)
@given(COPIED)
def test_frames_parsed_copied(path: fuzz.DataPath, scenario: fuzz.Scenario) -> None:
    """IPv4 with options and fragments, IPv6 with chains, cut anywhere around the L4 header,
    every header read with load_bytes: judged as the headers read in place are."""
    agree(path, scenario)


@TC
@settings(DIFFERENTIAL, max_examples=1_800)
@given(RANDOM)
def test_tc_random_frames_under_random_policies(path: fuzz.DataPath,
                                                scenario: fuzz.Scenario) -> None:
    agree(path, scenario)


@TC
@settings(DIFFERENTIAL, max_examples=900)
@given(IPV6_CHAINS)
def test_tc_ipv6_extension_header_chains(path: fuzz.DataPath, scenario: fuzz.Scenario) -> None:
    agree(path, scenario)


@TC
@settings(DIFFERENTIAL, max_examples=900)
@given(IPV4_OPTIONS)
def test_tc_ipv4_options_and_fragments(path: fuzz.DataPath, scenario: fuzz.Scenario) -> None:
    agree(path, scenario)


@TC
@settings(DIFFERENTIAL, max_examples=200)
@given(DEEP)
def test_tc_frames_behind_deep_tag_stacks(path: fuzz.DataPath,
                                          scenario: fuzz.Scenario) -> None:
    agree(path, scenario)


@TC
@settings(DIFFERENTIAL, max_examples=200)
@given(COPIED)
def test_tc_frames_parsed_copied(path: fuzz.DataPath, scenario: fuzz.Scenario) -> None:
    agree(path, scenario)


@pytest.mark.parametrize("entry", fuzz.ENTRIES, indirect=True, ids=str)
def test_frames_shorter_than_ethernet_are_refused(path: fuzz.DataPath) -> None:
    """BPF_PROG_RUN refuses XDP and sk_buff input under 14 bytes, so the generators never
    make any."""
    with pytest.raises(bpf.BpfError):
        path.program.test_run(bytes(13))
    assert oracle.judge(oracle.Policy(), bytes(13)).reason == enums.Reason.PASS_UNPARSED


@pytest.mark.parametrize("entry", fuzz.ENTRIES, indirect=True, ids=str)
def test_harness_notices_a_wrong_oracle(path: fuzz.DataPath) -> None:
    """The comparison is not vacuous: a doctored expectation is reported on every field."""
    frame = bytes.fromhex(
        "020000000002020000000001" "0800"
        "45000054000100004001f7a5c6120001c6120002" "0800f7fe00010001"
    )
    policy = oracle.Policy(default_action=enums.DefaultAction.DROP, events=enums.EventsMode.ALL)
    path.apply(fuzz.Scenario(policy, frame))
    observed = path.run(frame)
    expected = oracle.judge(policy, frame)
    assert fuzz.differences(expected, observed, len(frame)) == []
    assert expected.reason == enums.Reason.DROP_DEFAULT
    lying = oracle.Outcome(oracle.XDP_PASS, enums.Reason.PASS_DEFAULT, {}, None, expected.parsed)
    problems = fuzz.differences(lying, observed, len(frame))
    assert any(p.startswith("verdict") for p in problems)
    assert any(p.startswith("reason") for p in problems)
    assert any(p.startswith("events") for p in problems)

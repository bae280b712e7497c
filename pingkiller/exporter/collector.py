"""Prometheus metrics: a collector that reads every attachment's live counters per scrape.

Metrics (docs/operations.md lists them), each of one attachment and labelled by which:
``interface``, ``hook`` (xdp | tc) and ``direction`` (in | out; in at XDP):
``pingkiller_packets_total`` / ``pingkiller_bytes_total`` {reason},
``pingkiller_rule_hits_total`` {rule, action}, ``pingkiller_rules``,
``pingkiller_rule_series_skipped``, ``pingkiller_events_total``
{outcome = sent | suppressed | lost}, ``pingkiller_program_run_time_seconds_total`` and
``pingkiller_program_runs_total`` (the kernel's BPF stats: zero unless they are on),
``pingkiller_attachment_info`` {mode, program_id} and ``pingkiller_outdated``; and
``pingkiller_up`` (1 when the attachments could be read), which has no labels.

Everything here only reads: the exporter works on a read-only bpffs with CAP_BPF.

What a scrape costs: the counters of each attachment (a few batch reads), a count of its
rules (a batch walk of the rule maps, ~0.35 s per 10^6 rules, one batch in memory), and
the hit counters of at most ``max_rule_series`` rules. An attachment with more rules than
that exports no rule series at all (a partial set would be arbitrary and change from
scrape to scrape) and says how many it skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

import pingkiller
from pingkiller.model.enums import Mode
from pingkiller.model.errors import AttachmentEnded, PingkillerError
from pingkiller.model.results import AttachmentInfo
from pingkiller.model.rules import Rule
from pingkiller.model.words import RULE_ACTIONS

if TYPE_CHECKING:
    from pingkiller import AttachmentView

DEFAULT_MAX_RULE_SERIES = 1000
log = logging.getLogger(__name__)

# The labels that say which attachment a series is of, first on every per-attachment metric.
ATTACHMENT_LABELS = ("interface", "hook", "direction")


@dataclass(frozen=True)
class _Read:
    """One attachment as a scrape read it: its info, the rules whose series it exports,
    and how many rules it skipped (more than max_rule_series)."""

    info: AttachmentInfo
    rules: list[Rule]
    skipped: int


class PingkillerCollector(Collector):
    """Reads the pinned attachments on every scrape (no cache, no background thread).

    Rule hit counters are one series per rule: with ``rule_metrics=False`` none are
    exported, and an attachment with more than ``max_rule_series`` rules exports none of
    its rule series and no hit counter of it is read (``pingkiller_rules`` still counts
    them; ``pingkiller_rule_series_skipped`` says how many were skipped).
    """

    def __init__(self, *, rule_metrics: bool = False,
                 max_rule_series: int = DEFAULT_MAX_RULE_SERIES) -> None:
        self.rule_metrics = rule_metrics
        self.max_rule_series = max_rule_series

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("pingkiller_up", "1 if pingkiller's attachments could be read.")
        try:
            found = [self._read(view) for view in pingkiller.each_attachment()]
        except PingkillerError as err:
            log.warning("reading attachments failed: %s", err)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from self._families(found)

    def _read(self, view: AttachmentView) -> _Read:
        """One attachment: its info, and its rule series if it has no more rules than
        max_rule_series (one walk of the rule maps counts them and decodes at most the
        first max_rule_series + 1)."""
        if view.unreadable is not None:  # its maps cannot be read: info() tells its state
            return _Read(view.info(with_rules=False), [], 0)
        try:
            scan = view.scan_rules(self.max_rule_series + 1 if self.rule_metrics else 0)
        except AttachmentEnded:  # it ended since it was opened: shown as it is now
            return _Read(view.info(with_rules=False), [], 0)
        info = view.info(with_rules=False, rule_count=scan.total)
        if not self.rule_metrics:
            return _Read(info, [], 0)
        if scan.total > self.max_rule_series:
            return _Read(info, [], scan.total)
        return _Read(info, scan.first, 0)

    def _families(self, found: list[_Read]) -> Iterator[Metric]:
        where = list(ATTACHMENT_LABELS)
        packets = CounterMetricFamily(
            "pingkiller_packets", "Packets seen, by verdict reason.", labels=[*where, "reason"])
        octets = CounterMetricFamily(
            "pingkiller_bytes", "Bytes seen, by verdict reason.", labels=[*where, "reason"])
        events = CounterMetricFamily(
            "pingkiller_events", "Events, by outcome (suppressed by the rate limit, lost: ring full).",
            labels=[*where, "outcome"])
        run_time = CounterMetricFamily(
            "pingkiller_program_run_time_seconds",
            "Kernel-measured run time of the attachment's program (needs "
            "kernel.bpf_stats_enabled).", labels=where)
        runs = CounterMetricFamily(
            "pingkiller_program_runs", "Kernel-counted runs of the attachment's program "
            "(needs kernel.bpf_stats_enabled).", labels=where)
        rules = GaugeMetricFamily("pingkiller_rules", "Rules installed.", labels=where)
        hits = CounterMetricFamily(
            "pingkiller_rule_hits", "Packets that matched a rule.",
            labels=[*where, "rule", "action"])
        skipped = GaugeMetricFamily(
            "pingkiller_rule_series_skipped", "Rules whose hit series are not exported: all of "
            "them when the attachment has more than --max-rule-series.", labels=where)
        attachment = InfoMetricFamily(
            "pingkiller_attachment", "An attachment: mode is the XDP mode in effect, or at "
            "the tc hook tcx or clsact (none: stale, e.g. the interface is gone).",
            labels=[*where, "mode", "program_id"])
        # The limiter's: (family, the Stats field it shows).
        limiter: list[tuple[GaugeMetricFamily | CounterMetricFamily, str]] = [
            (GaugeMetricFamily("pingkiller_limit_buckets", "Sources the limiter remembers now "
                               "(one bucket per rate and source).", labels=where), "buckets_used"),
            (GaugeMetricFamily("pingkiller_limit_buckets_size", "Sources the limiter can "
                               "remember (--limit-buckets): past it the least recently seen "
                               "are forgotten.", labels=where), "buckets_size"),
            (CounterMetricFamily("pingkiller_limit_buckets_made", "Sources the limiter began to "
                                 "remember (again after being forgotten, too): a steep rise is "
                                 "a flood from new sources.", labels=where), "buckets_made"),
            (CounterMetricFamily("pingkiller_limit_bucket_failures", "Limited pings of a new "
                                 "source that could not be remembered (judged by the total "
                                 "alone).", labels=where), "buckets_failed"),
        ]
        outdated = GaugeMetricFamily(
            "pingkiller_outdated", "1 if the attachment runs another program than the installed "
            "one (`pingkiller upgrade`), or pins of another ABI version.", labels=where)
        for read in found:
            info = read.info
            at = attachment_labels(info)
            attachment.add_metric([*at, mode_label(info), str(info.program_id)], {})
            outdated.add_metric(at, int(info.outdated))
            rules.add_metric(at, info.rule_count)
            if self.rule_metrics:
                skipped.add_metric(at, read.skipped)
                for rule in read.rules:
                    hits.add_metric([*at, rule.address, RULE_ACTIONS.word(rule.action)], rule.hits)
            stats = info.stats
            if stats is None:
                continue
            for reason, counter in stats.reasons.items():
                packets.add_metric([*at, reason.label], counter.packets)
                octets.add_metric([*at, reason.label], counter.bytes)
            for outcome, count in (("sent", stats.events_sent),
                                   ("suppressed", stats.events_suppressed),
                                   ("lost", stats.events_lost)):
                events.add_metric([*at, outcome], count)
            run_time.add_metric(at, stats.run_time_ns / 1e9)
            runs.add_metric(at, stats.run_count)
            for family, field in limiter:
                family.add_metric(at, getattr(stats, field))
        yield from (attachment, outdated, packets, octets, events, rules, hits, run_time, runs)
        yield from (family for family, _ in limiter)
        if self.rule_metrics:
            yield skipped


def attachment_labels(info: AttachmentInfo) -> list[str]:
    """The values of :data:`ATTACHMENT_LABELS` for ``info``: its interface, ``xdp`` or
    ``tc``, and ``in`` or ``out`` (always ``in`` at XDP, which sees only what arrives)."""
    return [info.ifname, info.hook.label, info.direction.label]


def mode_label(info: AttachmentInfo) -> str:
    """``mode`` of pingkiller_attachment_info: the XDP mode in effect, or how a tc
    attachment that filters holds its program (``tcx``, ``clsact``: as status shows it),
    ``none`` for a stale attachment at either hook."""
    return Mode.NONE.value if info.stale else info.mode.value


def readiness() -> tuple[bool, str]:
    """Whether the pins can be read now (what /readyz answers), and why not: every
    attachment's pins are opened read-only, no map is walked."""
    try:
        for _ in pingkiller.each_attachment():
            pass
    except PingkillerError as err:
        return False, str(err)
    return True, "ok"


def require_read_access() -> None:
    """Raise :class:`~pingkiller.PermissionDenied` now unless this process may read the
    pins (CAP_BPF and access to the pin root); anything else is left to the scrapes and
    /readyz to report."""
    pingkiller.check_access(write=False)

"""Prometheus metrics: a collector that reads every attachment's live counters per scrape.

Metrics (all labelled by ``interface``; docs/operations.md lists them):
``pingkiller_packets_total`` / ``pingkiller_bytes_total`` {reason},
``pingkiller_rule_hits_total`` {rule, action}, ``pingkiller_rules``,
``pingkiller_events_total`` {outcome = sent | suppressed | lost},
``pingkiller_program_run_time_seconds_total`` and ``pingkiller_program_runs_total``
(the kernel's BPF stats: zero unless they are on), ``pingkiller_attachment_info``
{mode, program_id}, and ``pingkiller_up`` (1 when the attachments could be read).

Besides /metrics the server answers two probes for Kubernetes: ``/livez`` (200 while
it serves) and ``/readyz`` (200 when the pins can be read, 503 and the reason if not).
Everything here only reads: the exporter works on a read-only bpffs with CAP_BPF.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from pingkiller import capabilities, killer
from pingkiller.bpf import BpfError
from pingkiller.errors import InvalidInput, PingkillerError
from pingkiller.killer import AttachmentInfo
from pingkiller.policy import RULE_ACTIONS

DEFAULT_LISTEN = "127.0.0.1:9477"
DEFAULT_MAX_RULE_SERIES = 1000
log = logging.getLogger(__name__)


class PingkillerCollector(Collector):
    """Reads the pinned attachments on every scrape (no cache, no background thread).

    Rule hit counters are one series per rule: with ``rule_metrics=False`` none are
    exported, and an interface with more than ``max_rule_series`` rules exports none
    of its rule series (``pingkiller_rules`` still counts them).
    """

    def __init__(self, *, rule_metrics: bool = True,
                 max_rule_series: int = DEFAULT_MAX_RULE_SERIES) -> None:
        self.rule_metrics = rule_metrics
        self.max_rule_series = max_rule_series

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("pingkiller_up", "1 if pingkiller's attachments could be read.")
        try:
            infos = killer.attachments(with_rules=self.rule_metrics)
        except (PingkillerError, BpfError) as err:
            log.warning("reading attachments failed: %s", err)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from self._families(infos)

    def _families(self, infos: list[AttachmentInfo]) -> Iterator[Metric]:
        packets = CounterMetricFamily(
            "pingkiller_packets", "Packets seen, by verdict reason.", labels=["interface", "reason"])
        octets = CounterMetricFamily(
            "pingkiller_bytes", "Bytes seen, by verdict reason.", labels=["interface", "reason"])
        events = CounterMetricFamily(
            "pingkiller_events", "Events, by outcome (suppressed by the rate limit, lost: ring full).",
            labels=["interface", "outcome"])
        run_time = CounterMetricFamily(
            "pingkiller_program_run_time_seconds",
            "Kernel-measured run time of the XDP program (needs kernel.bpf_stats_enabled).",
            labels=["interface"])
        runs = CounterMetricFamily(
            "pingkiller_program_runs", "Kernel-counted runs of the XDP program "
            "(needs kernel.bpf_stats_enabled).", labels=["interface"])
        rules = GaugeMetricFamily("pingkiller_rules", "Rules installed.", labels=["interface"])
        hits = CounterMetricFamily(
            "pingkiller_rule_hits", "Packets that matched a rule.",
            labels=["interface", "rule", "action"])
        attachment = InfoMetricFamily(
            "pingkiller_attachment", "An attachment (mode none: stale, the interface is gone).",
            labels=["interface", "mode", "program_id"])
        outdated = GaugeMetricFamily(
            "pingkiller_outdated", "1 if the attachment runs another program than the installed "
            "one (`pingkiller upgrade`), or pins of another ABI version.", labels=["interface"])
        for info in infos:
            name = info.ifname
            attachment.add_metric([name, info.mode.value, str(info.program_id)], {})
            outdated.add_metric([name], int(info.outdated))
            rules.add_metric([name], info.rule_count)
            if self.rule_metrics and info.rule_count <= self.max_rule_series:
                for rule in info.rules:
                    hits.add_metric([name, rule.address, RULE_ACTIONS.word(rule.action)], rule.hits)
            stats = info.stats
            if stats is None:
                continue
            for reason, counter in stats.reasons.items():
                packets.add_metric([name, reason.label], counter.packets)
                octets.add_metric([name, reason.label], counter.bytes)
            for outcome, count in (("sent", stats.events_sent),
                                   ("suppressed", stats.events_suppressed),
                                   ("lost", stats.events_lost)):
                events.add_metric([name, outcome], count)
            run_time.add_metric([name], stats.run_time_ns / 1e9)
            runs.add_metric([name], stats.run_count)
        yield from (attachment, outdated, packets, octets, events, rules, hits, run_time, runs)


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9477`` for IPv6) as (host, port)."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(
            f"--listen {text!r} is not HOST:PORT: e.g. 127.0.0.1:9477 or [::1]:9477 "
            "(0.0.0.0:9477 for every address)"
        )
    return host, int(port)


def readiness() -> tuple[bool, str]:
    """Whether the pins can be read now (what /readyz answers), and why not."""
    try:
        killer.attachments(with_rules=False)
    except (PingkillerError, BpfError) as err:
        return False, str(err)
    return True, "ok"


def _text(start_response: StartResponse, status: str, body: str) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
    return [body.encode() + b"\n"]


def make_app(registry: CollectorRegistry,
             ready: Callable[[], tuple[bool, str]] = readiness) -> WSGIApplication:
    """/metrics of ``registry``, plus /livez and /readyz."""
    metrics = make_wsgi_app(registry)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/livez":
            return _text(start_response, "200 OK", "ok")
        if path == "/readyz":
            ok, why = ready()
            return _text(start_response, "200 OK" if ok else "503 Service Unavailable", why)
        served: Iterable[bytes] = metrics(environ, start_response)
        return served

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily) -> None:
        self.address_family = family  # IPv4 or IPv6, as the listen address is
        super().__init__(address, _QuietHandler)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # probes every few seconds
        pass


def serve(
    listen: str = DEFAULT_LISTEN, collector: PingkillerCollector | None = None
) -> tuple[WSGIServer, threading.Thread]:
    """Serve /metrics, /livez and /readyz on ``listen`` in a background thread; shut the
    server down to stop. Needs only read access to the pins (and CAP_BPF)."""
    capabilities.require_read_privileges()
    host, port = parse_listen(listen)
    registry = CollectorRegistry()
    registry.register(collector or PingkillerCollector())
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        server = _Server((host, port), family)
    except OSError as err:
        raise PingkillerError(f"cannot listen on {listen}: {err.strerror or err}: pick another "
                              "--listen address or port") from None
    server.set_app(make_app(registry))
    thread = threading.Thread(target=server.serve_forever, name="pingkiller-exporter", daemon=True)
    thread.start()
    return server, thread

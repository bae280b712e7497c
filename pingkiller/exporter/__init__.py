"""Prometheus metrics of every attachment: the collector (:mod:`.collector`) and the HTTP
server that serves it with two probes (:mod:`.server`); docs/operations.md."""

from pingkiller.exporter.collector import DEFAULT_MAX_RULE_SERIES, PingkillerCollector
from pingkiller.exporter.server import (
    DEFAULT_LISTEN,
    DEFAULT_MAX_SCRAPES,
    MetricsServer,
    parse_listen,
    serve,
)

__all__ = ["DEFAULT_LISTEN", "DEFAULT_MAX_RULE_SERIES", "DEFAULT_MAX_SCRAPES", "MetricsServer",
           "PingkillerCollector", "parse_listen", "serve"]

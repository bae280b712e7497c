"""Prometheus metrics of every attachment: the collector (:mod:`.collector`) and the HTTP
server that serves it with two probes (:mod:`.server`); docs/operations.md."""

from pingkiller.exporter.collector import (
    DEFAULT_MAX_RULE_SERIES,
    PingkillerCollector,
    require_read_access,
)
from pingkiller.exporter.listener import (
    UNIX_PREFIX,
    Listener,
    open_listener,
    parse_listen,
    parse_socket_mode,
)
from pingkiller.exporter.server import DEFAULT_LISTEN, DEFAULT_MAX_SCRAPES, MetricsServer, serve

__all__ = ["DEFAULT_LISTEN", "DEFAULT_MAX_RULE_SERIES", "DEFAULT_MAX_SCRAPES", "UNIX_PREFIX",
           "Listener", "MetricsServer", "PingkillerCollector", "open_listener", "parse_listen",
           "parse_socket_mode", "require_read_access", "serve"]

"""exporter: Prometheus metrics of every attachment."""

from __future__ import annotations

from typing import Annotated

from pingkiller.cli.command import verb
from pingkiller.cli.options import opt
from pingkiller.cli.policy_files import log_stderr


@verb()
def exporter(
    listen: Annotated[str, opt(
        help="Serve /metrics on HOST:PORT, or on a unix socket: unix:PATH (its file's mode "
             "and group decide who may scrape).", metavar="HOST:PORT|unix:PATH")
    ] = "127.0.0.1:9477",
    socket_mode: Annotated[str | None, opt(
        help="With unix:PATH: the socket's file mode, octal (default 0660: root and the "
             "group may scrape).", metavar="MODE", show_default=False)] = None,
    socket_group: Annotated[str | None, opt(
        help="With unix:PATH: the socket's group, a name or number (default: this "
             "process's group).", metavar="GROUP", show_default=False)] = None,
    rule_metrics: Annotated[
        bool, opt("--rule-metrics/--no-rule-metrics",
                  help="Export per-rule hit counters. Their rule label is the address or "
                       "prefix: whoever can scrape learns the policy, so they are off unless "
                       "asked for.")
    ] = False,
    max_rule_series: Annotated[
        int, opt(help="Skip rule hit series of attachments with more than N rules.", min=0,
                 metavar="N")
    ] = 1000,
    run_time_stats: Annotated[
        bool, opt("--run-time-stats", help="Switch on the kernel's BPF run-time stats while "
                                           "serving (costs a little per packet).")
    ] = False,
    max_scrapes: Annotated[
        int, opt(help="Answer at most N scrapes at once; one more gets 503 at once.", min=1,
                 max=64, metavar="N")
    ] = 4,
    user: Annotated[str, opt(
        help="Serve HTTP as this user (name or uid), with no capability; the part that "
             "reads the pins stays root.", metavar="USER")] = "nobody",
    web_config_file: Annotated[
        str | None, opt("--web.config.file",
                        help="Serve HTTPS and ask for a user and password as this web "
                             "configuration file says: Prometheus exporter-toolkit's YAML "
                             "(tls_server_config, basic_auth_users with bcrypt hashes), as "
                             "node_exporter reads it. /livez and /readyz need no credentials.",
                        metavar="PATH", show_default=False)
    ] = None,
) -> None:
    """Serve Prometheus metrics of every attachment until stopped.

    Only /metrics, /readyz and /livez answer (404 elsewhere). Without --rule-metrics no
    series names an address: counters by reason, rule counts and attachment info only. A
    scrape counts every rule (~0.35 s per million) but reads hit counters only of the
    series it exports. A client has 5 s to send its request; idle connections cost no
    thread, and past 512 connections a new one closes the oldest idle one.

    Two processes: the one that serves HTTP runs as --user with no capability and a
    seccomp filter that refuses bpf(2); only the other, which answers it with the
    metrics, reads the pins (keeping CAP_BPF and CAP_NET_ADMIN alone).

    Examples:

      pingkiller exporter --listen 127.0.0.1:9477

      pingkiller exporter --listen 0.0.0.0:9477 --web.config.file /etc/pingkiller/web.yml

      pingkiller exporter --listen unix:/run/pingkiller-metrics/sock --socket-group prometheus
    """
    from contextlib import nullcontext

    import pingkiller
    from pingkiller import exporter as metrics
    from pingkiller.exporter import separated, webconfig

    web = webconfig.load(web_config_file) if web_config_file is not None else webconfig.PLAIN_HTTP
    mode = metrics.parse_socket_mode(socket_mode) if socket_mode is not None else None
    if not listen.startswith(metrics.UNIX_PREFIX):
        metrics.parse_listen(listen)  # a bad address is told before anything else
    metrics.require_read_access()
    listener = metrics.open_listener(listen, socket_mode=mode, socket_group=socket_group)

    collector = metrics.PingkillerCollector(rule_metrics=rule_metrics,
                                            max_rule_series=max_rule_series)
    switch = pingkiller.run_time_stats(required=True) if run_time_stats else nullcontext(False)
    try:
        with switch:
            code = separated.run(listener, web, collector, max_scrapes=max_scrapes, user=user,
                                 log=log_stderr)
    finally:
        listener.close()
    if code != 0:
        raise SystemExit(code)

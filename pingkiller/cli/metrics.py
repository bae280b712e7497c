"""exporter: Prometheus metrics of every attachment."""

from __future__ import annotations

from typing import Annotated

from pingkiller.cli.command import verb
from pingkiller.cli.options import opt
from pingkiller.cli.policy_files import log_stderr
from pingkiller.model.errors import InvalidInput

# Options of the part that reads the pins: the exporter's, or exporter-broker's when split.
RuleMetrics = Annotated[bool, opt(
    "--rule-metrics/--no-rule-metrics",
    help="Export per-rule hit counters. Their rule label is the address or prefix: whoever "
         "can scrape learns the policy, so they are off unless asked for.")]
RunTimeStats = Annotated[bool, opt(
    "--run-time-stats",
    help="Switch on the kernel's BPF run-time stats while serving (costs a little per packet).")]


@verb()
def exporter(
    listen: Annotated[str, opt(
        help="Serve /metrics on HOST:PORT, or on a unix socket: unix:PATH (its file's mode "
             "and group decide who may scrape).", metavar="HOST:PORT|unix:PATH")
    ] = "127.0.0.1:9477",
    probe_listen: Annotated[str | None, opt(
        help="Also answer /livez and /readyz, and nothing else, on HOST:PORT (plain HTTP, "
             "no credentials), e.g. 127.0.0.1:9478 for the kubelet: probes then never "
             "queue behind a flood of the main port.", metavar="HOST:PORT",
        show_default=False)] = None,
    socket_mode: Annotated[str | None, opt(
        help="With unix:PATH: the socket's file mode, octal (default 0660: root and the "
             "group may scrape).", metavar="MODE", show_default=False)] = None,
    socket_group: Annotated[str | None, opt(
        help="With unix:PATH: the socket's group, a name or number (default: this "
             "process's group).", metavar="GROUP", show_default=False)] = None,
    rule_metrics: RuleMetrics = False,
    max_rule_series: Annotated[
        int | None, opt(help="Skip rule hit series of attachments with more than N rules "
                             "(default: 1000).", min=0, metavar="N", show_default=False)
    ] = None,
    run_time_stats: RunTimeStats = False,
    max_scrapes: Annotated[
        int, opt(help="Answer at most N scrapes at once; one more gets 503 at once.", min=1,
                 max=64, metavar="N")
    ] = 4,
    broker: Annotated[str | None, opt(
        help="Only serve HTTP: take the metrics from `pingkiller exporter-broker` on this "
             "unix socket instead of reading the pins (needs no privilege: for a container "
             "of its own). --rule-metrics, --max-rule-series and --run-time-stats are then "
             "the broker's.", metavar="PATH", show_default=False)] = None,
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
    import contextlib

    import pingkiller
    from pingkiller import exporter as metrics
    from pingkiller.exporter import separated, webconfig

    web = webconfig.load(web_config_file) if web_config_file is not None else webconfig.PLAIN_HTTP
    mode = metrics.parse_socket_mode(socket_mode) if socket_mode is not None else None
    if not listen.startswith(metrics.UNIX_PREFIX):
        metrics.parse_listen(listen)  # a bad address is told before anything else
    if probe_listen is not None:
        metrics.parse_listen(probe_listen)
    if broker is not None:
        given = [flag for flag, value in (("--rule-metrics", rule_metrics),
                                          ("--max-rule-series", max_rule_series is not None),
                                          ("--run-time-stats", run_time_stats)) if value]
        if given:
            raise InvalidInput(f"{given[0]} is the broker's with --broker: give it to "
                               "`pingkiller exporter-broker`")
        channels = separated.connect_broker(broker, max_scrapes + 1)
    else:
        metrics.require_read_access()
    with contextlib.ExitStack() as listening:
        listener = metrics.open_listener(listen, socket_mode=mode, socket_group=socket_group)
        listening.callback(listener.close)
        probes = metrics.open_listener(probe_listen) if probe_listen is not None else None
        if probes is not None:
            listening.callback(probes.close)
        if broker is not None:
            code = separated.run_server(listener, web, channels, max_scrapes=max_scrapes,
                                        user=user, log=log_stderr, probes=probes)
        else:
            collector = metrics.PingkillerCollector(
                rule_metrics=rule_metrics, max_rule_series=metrics.DEFAULT_MAX_RULE_SERIES
                if max_rule_series is None else max_rule_series)
            switch = pingkiller.run_time_stats(required=True) if run_time_stats \
                else contextlib.nullcontext(False)
            with switch:
                code = separated.run(listener, web, collector, max_scrapes=max_scrapes,
                                     user=user, log=log_stderr, probes=probes)
    if code != 0:
        raise SystemExit(code)


@verb("exporter-broker")
def exporter_broker(
    socket_path: Annotated[str, opt(
        "--socket", help="Listen for the exporter's server on this unix socket (in a "
                         "directory both containers mount, e.g. an emptyDir).",
        metavar="PATH")],
    client_uid: Annotated[int, opt(
        help="Answer only processes of this uid (the server container's runAsUser).",
        min=1, metavar="UID")] = 65534,
    socket_group: Annotated[str | None, opt(
        help="The socket's group, a name or number (default: the directory's or this "
             "process's); the socket is 0660.", metavar="GROUP", show_default=False)] = None,
    rule_metrics: RuleMetrics = False,
    max_rule_series: Annotated[
        int, opt(help="Skip rule hit series of attachments with more than N rules.", min=0,
                 metavar="N")
    ] = 1000,
    run_time_stats: RunTimeStats = False,
) -> None:
    """Read the pins for an exporter that serves HTTP in another container.

    The exporter's two halves, split: this one keeps CAP_BPF (and CAP_NET_ADMIN, when it
    has it), opens every pin read-only per request and answers `pingkiller exporter
    --broker PATH`, which serves HTTP with no privilege at all. It reads one request byte
    at a time from the server and answers only processes of --client-uid.

    Example:

      pingkiller exporter-broker --socket /run/pingkiller-exporter/broker.sock
    """
    from contextlib import nullcontext
    from pathlib import Path

    import pingkiller
    from pingkiller import exporter as metrics
    from pingkiller.exporter import listener as listening
    from pingkiller.exporter import separated

    if not socket_path.startswith("/"):
        raise InvalidInput(f"--socket {socket_path!r} must be an absolute path")
    metrics.require_read_access()
    gid = listening.group_id(socket_group) if socket_group is not None else None
    listener = listening.bind_unix(Path(socket_path), 0o660, gid)
    collector = metrics.PingkillerCollector(rule_metrics=rule_metrics,
                                            max_rule_series=max_rule_series)
    switch = pingkiller.run_time_stats(required=True) if run_time_stats else nullcontext(False)
    try:
        with switch:
            separated.run_broker(listener, collector, client_uid=client_uid, log=log_stderr)
    finally:
        listener.close()

"""The exporter as two processes, so that the one that listens holds no power over the
filter.

:func:`run` forks before any BPF descriptor or thread exists. The *server* (the child)
parses HTTP: it switches to an unprivileged user, gives up every capability, sets
no_new_privs and installs a seccomp filter that refuses bpf(2) outright, then serves
from the broker's answers. The *broker* (the parent) keeps uid 0, which owns the pins,
and only CAP_BPF and CAP_NET_ADMIN (to tell which programs run at a tc hook); it runs
the collector per request, so new attachments show without a restart, and reads one
request byte at a time from the server (:mod:`.channel`).
"""

from __future__ import annotations

import gzip
import os
import select
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE

from pingkiller.exporter.channel import Broker, BrokerClient, BrokerFailed, BrokerGone
from pingkiller.exporter.collector import PingkillerCollector, readiness
from pingkiller.exporter.listener import Listener
from pingkiller.exporter.server import PROBE_LIMITS, Limits, MetricsServer, probes_only, route
from pingkiller.exporter.webconfig import WebConfig
from pingkiller.model.errors import PingkillerError
from pingkiller.system import capabilities, privileges, seccomp

BROKER_CAPABILITIES = tuple(capabilities.CAPABILITIES[name] for name in ("CAP_BPF", "CAP_NET_ADMIN"))
DEFAULT_USER = "nobody"
Log = Callable[[str], None]


def run(listener: Listener, web: WebConfig, collector: PingkillerCollector, *,
        max_scrapes: int, user: str = DEFAULT_USER, log: Log,
        probes: Listener | None = None) -> int:
    """Serve until SIGTERM or SIGINT; the exit code (0 on a clean stop, 1 when a
    process failed)."""
    uid, gid = privileges.user_ids(user)
    pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(max_scrapes + 1)]
    broker_ends = [broker for broker, _ in pairs]
    server_ends = [server for _, server in pairs]
    parent = os.getpid()
    stop_read, stop_write = os.pipe()  # the broker closes its end to stop the server
    pid = os.fork()
    if pid == 0:  # the server
        code = 1
        try:
            for end in broker_ends:
                end.close()
            os.close(stop_write)
            code = _serve(listener, web, server_ends, stop_read, uid=uid, gid=gid,
                          parent=parent, max_scrapes=max_scrapes, log=log, probes=probes)
        except BaseException as err:  # whatever it was, this process ends here
            log(f"the exporter's server stopped: {err!r}")
        finally:
            os._exit(code)
    for end in server_ends:
        end.close()
    os.close(stop_read)
    listener.sock.close()  # the server's now; its file (a unix socket) is removed at the end
    if probes is not None:
        probes.sock.close()
    try:
        _narrow_broker()
        registry = CollectorRegistry()
        registry.register(collector)
        Broker(registry, readiness).serve(broker_ends)
        return _wait(pid, stop_write)
    finally:
        listener.close()


MAX_CLIENT_CHANNELS = 16  # a split broker serves one server: its scrape channels and probe


def run_broker(listener: Listener, collector: PingkillerCollector, *, client_uid: int,
               log: Log) -> int:
    """The broker alone (``exporter-broker``), for a server in another container: answer
    connections on ``listener`` (a unix socket) from processes of ``client_uid`` only,
    until SIGTERM or SIGINT."""
    _narrow_broker()
    registry = CollectorRegistry()
    registry.register(collector)
    broker = Broker(registry, readiness)
    signalled = _stop_on_signals()
    open_channels: list[threading.Thread] = []
    listener.sock.settimeout(0.2)
    log(f"lending metrics on {listener.shown} to uid {client_uid}")
    try:
        while not signalled:
            try:
                channel, _ = listener.sock.accept()
            except (TimeoutError, InterruptedError):
                continue
            channel.settimeout(None)
            uid = peer_uid(channel)
            open_channels = [thread for thread in open_channels if thread.is_alive()]
            if uid != client_uid or len(open_channels) >= MAX_CLIENT_CHANNELS:
                log(f"refused a connection from uid {uid}" if uid != client_uid else
                    f"refused a connection past {MAX_CLIENT_CHANNELS} channels")
                channel.close()
                continue
            open_channels += broker.serve([channel])
    finally:
        listener.close()
    return 0


def peer_uid(channel: socket.socket) -> int:
    """The uid of the process at the other end of a unix socket (SO_PEERCRED)."""
    _, uid, _ = struct.unpack("3i", channel.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                       struct.calcsize("3i")))
    return int(uid)


def connect_broker(path: str, count: int, *, wait: float = 30) -> list[socket.socket]:
    """``count`` channels to the broker at ``path``, waiting up to ``wait`` seconds for it
    to listen (the containers of a pod start in any order). The broker must be root's."""
    deadline = time.monotonic() + wait
    channels: list[socket.socket] = []
    try:
        while len(channels) < count:
            channel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                channel.connect(path)
            except (FileNotFoundError, ConnectionRefusedError) as err:
                channel.close()
                if time.monotonic() > deadline or not os.path.isdir(os.path.dirname(path)):
                    raise PingkillerError(f"no exporter-broker listens on {path} ({err.strerror}): "
                                          "start `pingkiller exporter-broker --socket "
                                          f"{path}` first") from None
                time.sleep(0.2)
                continue
            except OSError as err:
                channel.close()
                raise PingkillerError(f"cannot reach the exporter-broker at {path}: "
                                      f"{err.strerror}") from None
            channels.append(channel)
            if peer_uid(channel) != 0:
                raise PingkillerError(f"the process listening on {path} is not root's: not a "
                                      "pingkiller exporter-broker; check who made the socket")
    except BaseException:
        for channel in channels:
            channel.close()
        raise
    return channels


def run_server(listener: Listener, web: WebConfig, channels: list[socket.socket], *,
               max_scrapes: int, user: str = DEFAULT_USER, log: Log,
               probes: Listener | None = None) -> int:
    """The server alone (``exporter --broker``): serve from a broker in another
    container, giving up whatever privilege this process has first."""
    uid, gid = privileges.user_ids(user) if os.geteuid() == 0 else (os.geteuid(), os.getegid())
    return _serve(listener, web, channels, None, uid=uid, gid=gid, parent=os.getppid(),
                  max_scrapes=max_scrapes, log=log, parent_death=False, probes=probes)


def _narrow_broker() -> None:
    """Keep only CAP_BPF and CAP_NET_ADMIN (of those held), for good."""
    held = privileges.status().permitted
    keep = [cap for cap in BROKER_CAPABILITIES if held & (1 << cap)]
    privileges.drop_bounding_set(keep)
    privileges.set_capabilities(keep)
    privileges.lock_down()


def _wait(pid: int, stop: int) -> int:
    """Wait for the server; on SIGTERM or SIGINT close ``stop``, which tells it to stop
    (the broker keeps no capability to signal a process of another user). Its exit code."""
    open_ = [True]

    def forward(signum: int, frame: object) -> None:
        if open_[0]:  # once: the number may be another file's afterwards
            open_[0] = False
            os.close(stop)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 1  # killed by a signal


def _serve(listener: Listener, web: WebConfig, channels: list[socket.socket], stop: int | None,
           *, uid: int, gid: int, parent: int, max_scrapes: int, log: Log,
           parent_death: bool = True, probes: Listener | None = None) -> int:
    _close_bpf_descriptors()
    notes = _give_up_privileges(uid, gid, parent_death=parent_death)
    if os.getppid() != parent:  # the broker died before the death signal was set
        return 1
    why = seccomp.install()
    if why is not None:
        notes.append(f"no seccomp filter: {why}")
    client = BrokerClient(channels[:-1], channels[-1])
    app = route(metrics_app(client), client.ready, max_scrapes=max_scrapes)
    servers = [MetricsServer(listener.sock, app, Limits(workers=max_scrapes + 2), web)]
    if probes is not None:  # the kubelet's own port: a flood of the main one cannot reach it
        servers.append(MetricsServer(probes.sock, probes_only(client.ready), PROBE_LIMITS))
    signalled = _stop_on_signals()
    for server in servers:
        server.start()
    me = privileges.status()
    where = f"{listener.shown} ({web.scheme})" if listener.path is not None \
        else f"{web.scheme}://{listener.shown}/metrics"
    log(f"serving metrics on {where}" + (" (basic authentication)" if web.auth else "")
        + (f", probes on http://{probes.shown}" if probes is not None else "")
        + f" as uid {me.uid[1]} with no capabilities" + "".join(f"; {note}" for note in notes))
    try:
        while client.broken is None and not signalled:
            if stop is None:
                time.sleep(0.2)
            elif select.select([stop], [], [], 0.2)[0]:  # closed: the broker stops, or died
                break
    finally:
        for server in servers:
            server.shutdown()
        client.close()
    if client.broken is not None:
        log(f"the exporter's broker is gone ({client.broken}): stopping")
        return 1
    return 0


def _stop_on_signals() -> list[int]:
    """A list that SIGTERM or SIGINT appends to."""
    received: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, frame: received.append(number))
    return received


def _give_up_privileges(uid: int, gid: int, *, parent_death: bool = True) -> list[str]:
    """Become ``uid``/``gid`` with no capability, for good; what could not be done."""
    notes = []
    if os.geteuid() != uid:
        privileges.drop_bounding_set()
        try:
            privileges.switch_user(uid, gid)
        except PermissionError:
            notes.append(f"could not switch to uid {uid} (needs CAP_SETUID and CAP_SETGID)")
    privileges.set_capabilities(())
    privileges.lock_down(parent_death=signal.SIGTERM if parent_death else None)
    return notes


def _close_bpf_descriptors() -> None:
    """Close any BPF object this process inherited (the run-time stats switch's)."""
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith("anon_inode:bpf"):
            os.close(int(name))


def metrics_app(client: BrokerClient) -> WSGIApplication:
    """/metrics from the broker: OpenMetrics when the scraper asks for it, gzip when it
    takes it; 503 when the broker is gone, 500 when it failed to read."""
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        accepted = [part.split(";")[0].strip() for part in environ.get("HTTP_ACCEPT", "").split(",")]
        openmetrics = "application/openmetrics-text" in accepted
        try:
            body = client.metrics(openmetrics)
        except BrokerFailed as err:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain; charset=utf-8")])
            return [f"{err}\n".encode()]
        except (BrokerGone, OSError) as err:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain; charset=utf-8")])
            return [f"the exporter's broker does not answer: {err}\n".encode()]
        headers = [("Content-Type", OPENMETRICS_TYPE if openmetrics else CONTENT_TYPE_PLAIN_0_0_4)]
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            body = gzip.compress(body)
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return [body]

    return app

"""The exporter's HTTP side without pins: only its three paths answer, scrapes are capped,
and the server holds bounded threads, drops slow clients and never queues requests.

Everything listens on 127.0.0.1 with a port the kernel picks; no root needed.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from pingkiller.exporter.server import Limits, MetricsServer, make_app

OFF_PATHS = ["/", "/debug/pprof", "/../../etc/passwd", "/metricsX", "/metrics/", "/livez/x",
             "/%2e%2e/etc/passwd", "/favicon.ico"]


class Blocking(Collector):
    """A collector whose collect() waits until released (a scrape that takes its time)."""

    def __init__(self) -> None:
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()

    def collect(self) -> Iterator[Metric]:
        self.entered.release()
        assert self.release.wait(10)
        gauge = GaugeMetricFamily("pingkiller_test", "A test gauge.")
        gauge.add_metric([], 1)
        yield gauge


def call(app: Any, path: str, method: str = "GET") -> tuple[str, str]:
    """One WSGI request: (status line, body)."""
    seen: list[str] = []
    environ = {"PATH_INFO": path, "REQUEST_METHOD": method, "QUERY_STRING": "",
               "SERVER_NAME": "localhost", "SERVER_PORT": "9477", "wsgi.url_scheme": "http"}
    body = b"".join(app(environ, lambda status, headers: seen.append(status)))
    return seen[0], body.decode()


def test_app_answers_only_metrics_and_the_probes() -> None:
    app = make_app(CollectorRegistry(), lambda: (True, "ok"))
    for path in OFF_PATHS:
        status, body = call(app, path)
        assert status == "404 Not Found", path
        assert "/metrics" in body and "pingkiller_" not in body
    assert call(app, "/metrics")[0] == "200 OK"
    assert call(app, "/livez")[0] == "200 OK"
    assert call(app, "/readyz")[0] == "200 OK"


def test_app_answers_503_to_a_scrape_over_the_cap_at_once() -> None:
    registry, slow = CollectorRegistry(), Blocking()
    registry.register(slow)
    app = make_app(registry, lambda: (True, "ok"), max_scrapes=1)
    first: list[tuple[str, str]] = []
    running = threading.Thread(target=lambda: first.append(call(app, "/metrics")))
    running.start()
    try:
        assert slow.entered.acquire(timeout=10)
        start = time.monotonic()
        status, body = call(app, "/metrics")
        assert status.startswith("503") and "busy" in body
        assert time.monotonic() - start < 1
        assert call(app, "/livez")[0] == "200 OK"  # probes are not scrapes
    finally:
        slow.release.set()
        running.join(10)
    assert first[0][0] == "200 OK" and "pingkiller_test 1.0" in first[0][1]
    slow.entered.release()  # the next scrape must not wait for anything
    assert call(app, "/metrics")[0] == "200 OK"


# -- the server


def wsgi_app(blocking: threading.Event | None = None,
             entered: threading.Event | None = None) -> Any:
    """/metrics (sets ``entered``, then waits for ``blocking``, when given), /readyz,
    /livez; 404 elsewhere."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        if path == "/metrics" and blocking is not None:
            if entered is not None:
                entered.set()
            assert blocking.wait(10)
        if path in ("/metrics", "/readyz", "/livez"):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [f"{path} ok {environ.get('HTTP_ACCEPT', '')}\n".encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return app


@contextmanager
def server(app: Any, limits: Limits | None = None) -> Iterator[tuple[str, int]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    running = MetricsServer(sock, app, limits or Limits())
    running.start()
    try:
        yield running.server_address
    finally:
        running.shutdown()


def request(address: tuple[str, int], head: bytes, timeout: float = 5) -> bytes:
    """Send ``head`` raw and read the whole answer (the server closes after it)."""
    with socket.create_connection(address, timeout=timeout) as client:
        client.sendall(head)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    return answer


def get(address: tuple[str, int], path: str, method: str = "GET") -> tuple[int, bytes]:
    answer = request(address, f"{method} {path} HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n"
                     .encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def test_server_answers_its_paths_and_404_elsewhere() -> None:
    with server(wsgi_app()) as address:
        assert get(address, "/metrics") == (200, b"/metrics ok text/plain\n")
        assert get(address, "/metrics?name[]=x")[0] == 200
        assert get(address, "http://x/metrics")[0] == 200  # absolute form
        for path in OFF_PATHS:
            assert get(address, path)[0] == 404, path
        assert get(address, "/metrics", "POST")[0] == 405
        status, body = get(address, "/metrics", "HEAD")
        assert status == 200 and body == b""
        assert request(address, b"nonsense\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        big = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n"
        assert request(address, big).startswith(b"HTTP/1.1 431 ")


def test_server_drops_clients_that_do_not_finish_their_request() -> None:
    with server(wsgi_app(), Limits(request_timeout=0.5)) as address:
        idle = socket.create_connection(address, timeout=5)
        slow = socket.create_connection(address, timeout=5)
        slow.sendall(b"GET /metrics HTTP/1.1\r\nHost:")  # and then nothing (slowloris)
        start = time.monotonic()
        assert idle.recv(100) == b"" and slow.recv(100) == b""  # closed by the server
        assert time.monotonic() - start < 3
        idle.close()
        slow.close()
        assert get(address, "/metrics")[0] == 200


def test_idle_connections_cost_no_thread_and_do_not_stop_scrapes() -> None:
    before = threading.active_count()
    with server(wsgi_app(), Limits(workers=2)) as address:
        held = [socket.create_connection(address, timeout=5) for _ in range(200)]
        try:
            for client in held[::2]:
                client.sendall(b"GET /metrics HTTP/1.1\r\n")  # half a request
            start = time.monotonic()
            for _ in range(5):
                assert get(address, "/metrics")[0] == 200
            assert time.monotonic() - start < 2
            assert threading.active_count() <= before + 1 + 2  # the loop and the workers
        finally:
            for client in held:
                client.close()


def test_server_answers_503_at_once_when_every_worker_is_busy() -> None:
    release, entered = threading.Event(), threading.Event()
    with server(wsgi_app(release, entered), Limits(workers=1)) as address:
        answers: list[tuple[int, bytes]] = []
        waiting = threading.Thread(target=lambda: answers.append(get(address, "/metrics")))
        waiting.start()
        try:
            assert entered.wait(10)  # the first scrape holds the only worker
            start = time.monotonic()
            assert get(address, "/metrics")[0] == 503
            assert get(address, "/readyz")[0] == 503
            assert time.monotonic() - start < 2
            assert get(address, "/livez")[0] == 200  # needs no worker
        finally:
            release.set()
            waiting.join(10)
        assert answers == [(200, b"/metrics ok text/plain\n")]


def test_a_connection_over_the_cap_closes_the_oldest_idle_one() -> None:
    """A flood of idle connections cannot keep a probe out: the newcomer is served and the
    connection that waited longest without a request is closed."""
    with server(wsgi_app(), Limits(max_connections=3)) as address:
        held = [socket.create_connection(address, timeout=5) for _ in range(3)]
        try:
            time.sleep(0.2)  # the server has accepted all three
            assert get(address, "/livez")[0] == 200
            assert held[0].recv(100) == b""  # the oldest idle one was closed
            held[1].sendall(b"GET /livez HTTP/1.1\r\n\r\n")  # the others still are served
            assert held[1].recv(100).startswith(b"HTTP/1.1 200 ")
        finally:
            for client in held:
                client.close()


def test_over_the_cap_with_every_connection_answered_a_new_one_gets_503() -> None:
    release, entered = threading.Event(), threading.Event()
    with server(wsgi_app(release, entered), Limits(max_connections=1, workers=2)) as address:
        answers: list[tuple[int, bytes]] = []
        waiting = threading.Thread(target=lambda: answers.append(get(address, "/metrics")))
        waiting.start()
        try:
            assert entered.wait(10)  # one connection, being answered: nothing to close
            assert request(address, b"").startswith(b"HTTP/1.1 503 ")
        finally:
            release.set()
            waiting.join(10)
        assert answers == [(200, b"/metrics ok text/plain\n")]

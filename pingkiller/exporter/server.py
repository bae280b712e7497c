"""The exporter's HTTP side: a small server with bounded threads, time limits and a
scrape cap, for the collector's /metrics and two probes for Kubernetes.

Only three paths answer: /metrics, ``/livez`` (200 while it serves) and ``/readyz`` (200
when the pins can be read, 503 and the reason if not); every other path is 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import unquote
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import CollectorRegistry, make_wsgi_app

from pingkiller.exporter.collector import PingkillerCollector, readiness, require_read_access
from pingkiller.exporter.listener import Listener, open_listener
from pingkiller.exporter.webconfig import PLAIN_HTTP, WebConfig

DEFAULT_LISTEN = "127.0.0.1:9477"
DEFAULT_MAX_SCRAPES = 4
log = logging.getLogger(__name__)


def _text(start_response: StartResponse, status: str, body: str,
          headers: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), *headers])
    return [body.encode() + b"\n"]


# The paths that answer; the server runs the first two in its worker threads.
METRICS_PATH, READY_PATH, LIVE_PATH = "/metrics", "/readyz", "/livez"


def make_app(registry: CollectorRegistry,
             ready: Callable[[], tuple[bool, str]] = readiness, *,
             max_scrapes: int = DEFAULT_MAX_SCRAPES) -> WSGIApplication:
    """/metrics of ``registry``, plus /livez and /readyz; every other path is 404. At
    most ``max_scrapes`` scrapes run at once: one more is answered 503 straight away."""
    return route(make_wsgi_app(registry), ready, max_scrapes=max_scrapes)


def route(metrics: WSGIApplication, ready: Callable[[], tuple[bool, str]], *,
          max_scrapes: int = DEFAULT_MAX_SCRAPES) -> WSGIApplication:
    """/metrics answered by the WSGI app ``metrics``, /livez and /readyz (``ready``);
    404 elsewhere; at most ``max_scrapes`` scrapes at once."""
    scrapes = threading.BoundedSemaphore(max_scrapes)

    probes = probes_only(ready)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in (LIVE_PATH, READY_PATH):
            return probes(environ, start_response)
        if path != METRICS_PATH:
            return _text(start_response, "404 Not Found",
                         f"not found: pingkiller's exporter serves {METRICS_PATH}, "
                         f"{READY_PATH} and {LIVE_PATH}")
        if not scrapes.acquire(blocking=False):
            return _text(start_response, "503 Service Unavailable",
                         f"busy: {max_scrapes} scrapes are running (--max-scrapes)",
                         [("Retry-After", "1")])
        try:
            # prometheus_client renders the whole body here (no lazy iterable).
            return list(metrics(environ, start_response))
        finally:
            scrapes.release()

    return app


def probes_only(ready: Callable[[], tuple[bool, str]]) -> WSGIApplication:
    """/livez and /readyz, and 404 elsewhere (/metrics included): a probe port's app."""
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == LIVE_PATH:
            return _text(start_response, "200 OK", "ok")
        if path == READY_PATH:
            ok, why = ready()
            return _text(start_response, "200 OK" if ok else "503 Service Unavailable", why)
        return _text(start_response, "404 Not Found",
                     f"not found: this probe port serves only {READY_PATH} and {LIVE_PATH}")

    return app


@dataclass(frozen=True)
class Limits:
    """What the server holds at most, and how long it waits for a client.

    ``workers`` threads run /metrics and /readyz (the app's own scrape cap stops scrapes
    from taking all of them); a request that finds them all busy is answered 503 at once,
    never queued. A client has ``request_timeout`` seconds to send its request head (at
    most ``max_head`` bytes) and ``write_timeout`` to take the answer. Past
    ``max_connections`` open connections a new one closes the oldest that has not sent
    its request yet, so a flood of idle connections cannot keep a probe or a scrape out;
    when every open connection is being answered, the new one gets 503."""

    workers: int = DEFAULT_MAX_SCRAPES + 2
    max_connections: int = 512
    request_timeout: float = 5.0
    write_timeout: float = 10.0
    max_head: int = 8192


# A probe port holds a few connections and waits briefly: only the kubelet comes.
PROBE_LIMITS = Limits(workers=2, max_connections=16, request_timeout=1.0, write_timeout=2.0)

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 431: "Request Header Fields Too Large",
            503: "Service Unavailable"}


class MetricsServer:
    """An HTTP/1.1 server for one WSGI app (every answer closes its connection).

    One thread runs an asyncio loop that accepts connections and reads request heads
    (idle or slow clients cost a coroutine, not a thread, and are dropped after
    ``limits.request_timeout``); a fixed pool of ``limits.workers`` threads runs the
    app for the paths that read the pins. Start with :meth:`start`, stop with
    :meth:`shutdown`. ``web`` (from ``--web.config.file``) adds TLS, client certificate
    checks and basic authentication; the probes need no credentials, as the kubelet has
    none, and tell nothing of the policy.
    """

    def __init__(self, sock: socket.socket, app: WSGIApplication, limits: Limits = Limits(),
                 web: WebConfig = PLAIN_HTTP, listener: Listener | None = None) -> None:
        self.socket = sock
        self.listener = listener
        self.app = app
        self.limits = limits
        self.web = web
        name = sock.getsockname()
        self.server_address: tuple[str, int] = name[:2] if isinstance(name, tuple) else ("localhost", 0)
        self._pool = ThreadPoolExecutor(limits.workers, thread_name_prefix="pingkiller-scrape")
        self._loop = asyncio.new_event_loop()
        self._busy = 0  # requests in the pool
        self._connections = 0
        self._handlers: set[asyncio.Task[None]] = set()
        self._waiting: dict[asyncio.Task[None], asyncio.StreamWriter] = {}  # oldest first
        self._stopped = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="pingkiller-exporter", daemon=True)

    def start(self) -> threading.Thread:
        self._thread.start()
        return self._thread

    def shutdown(self) -> None:
        """Stop serving, close the socket and wait for the threads (idempotent)."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join()
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self.listener is not None:
            self.listener.close()
        else:
            self.socket.close()

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        tls = self.web.tls
        start = asyncio.start_unix_server if self.socket.family == socket.AF_UNIX \
            else asyncio.start_server
        server = await start(
            self._connection, sock=self.socket, limit=self.limits.max_head, ssl=tls,
            ssl_handshake_timeout=self.limits.request_timeout if tls is not None else None)
        await self._stopped.wait()
        server.close()
        for task in list(self._handlers):  # what is still connected is dropped
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._connections += 1
        try:
            if self._connections > self.limits.max_connections and not self._evict_oldest():
                await self._answer(writer, 503, "too many connections", head_only=False)
                return
            if not self.web.peer_allowed(writer.get_extra_info("peercert")):
                return  # a verified certificate naming none of client_allowed_sans
            self._waiting[task] = writer
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"),
                                              self.limits.request_timeout)
            except (TimeoutError, asyncio.IncompleteReadError):
                return  # an idle or slow client, or one that went away: dropped
            except asyncio.LimitOverrunError:
                await self._answer(writer, 431, f"request head longer than {self.limits.max_head} "
                                                "bytes", head_only=False)
                return
            finally:
                self._waiting.pop(task, None)
            await self._request(head, writer)
        except (ConnectionError, TimeoutError):
            pass
        except asyncio.CancelledError:
            pass  # shutdown drops it; a cancelled handler would make Python 3.11 log a traceback
        finally:
            self._connections -= 1
            self._handlers.discard(task)
            await self._close(writer)

    def _evict_oldest(self) -> bool:
        """Drop the connection that has waited longest without sending its request; False
        when every connection has sent one (it is being answered)."""
        for task, writer in self._waiting.items():
            del self._waiting[task]
            writer.transport.abort()  # its handler ends with a ConnectionError, or at EOF
            return True
        return False

    async def _close(self, writer: asyncio.StreamWriter) -> None:
        """Close once what was written is sent, or drop the client if it does not take it."""
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), self.limits.write_timeout)
        except (ConnectionError, TimeoutError, asyncio.CancelledError):
            writer.transport.abort()

    async def _request(self, head: bytes, writer: asyncio.StreamWriter) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            await self._answer(writer, 400, "bad request line", head_only=False)
            return
        method, target, _ = parts
        if method not in ("GET", "HEAD"):
            await self._answer(writer, 405, "only GET and HEAD", head_only=False,
                               headers=[("Allow", "GET, HEAD")])
            return
        if target.startswith(("http://", "https://")):  # absolute form: keep the path
            target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
        path, _, query = target.partition("?")
        environ = _environ(method, unquote(path, "latin-1"), query, lines[1:], self.server_address,
                           self.web.scheme)
        guarded = self.web.auth is not None and environ["PATH_INFO"] not in (LIVE_PATH, READY_PATH)
        authorization = _header(lines[1:], "authorization") if guarded else None
        if environ["PATH_INFO"] not in (METRICS_PATH, READY_PATH) and not guarded:
            status, headers, body = _call(self.app, environ)  # no pins read: answered here
        elif self._busy >= self.limits.workers:
            await self._answer(writer, 503, "busy: every worker is answering a request",
                               head_only=method == "HEAD", headers=[("Retry-After", "1")])
            return
        else:
            self._busy += 1
            try:
                loop = asyncio.get_running_loop()
                status, headers, body = await loop.run_in_executor(
                    self._pool, self._guarded_call, guarded, authorization, environ)
            finally:
                self._busy -= 1
        await self._send(writer, status, headers, body, head_only=method == "HEAD")

    def _guarded_call(self, guarded: bool, authorization: str | None, environ: WSGIEnvironment,
                      ) -> tuple[str, list[tuple[str, str]], bytes]:
        """The app's answer, once the request's credentials pass (a bcrypt check takes a
        worker's time, so it runs in the pool)."""
        if guarded and not (self.web.auth is not None and self.web.auth.check(authorization)):
            return "401 Unauthorized", [("Content-Type", "text/plain; charset=utf-8"),
                                        ("WWW-Authenticate", 'Basic realm="pingkiller"')], \
                b"unauthorized: give the user and password of the exporter's web config\n"
        return _call(self.app, environ)

    async def _answer(self, writer: asyncio.StreamWriter, code: int, text: str, *, head_only: bool,
                      headers: Iterable[tuple[str, str]] = ()) -> None:
        await self._send(writer, f"{code} {_REASONS[code]}",
                         [("Content-Type", "text/plain; charset=utf-8"), *headers],
                         text.encode() + b"\n", head_only=head_only)

    async def _send(self, writer: asyncio.StreamWriter, status: str, headers: list[tuple[str, str]],
                    body: bytes, *, head_only: bool) -> None:
        fields = [(k, v) for k, v in headers if k.lower() not in ("content-length", "connection")]
        fields += [*self.web.headers, ("Content-Length", str(len(body))), ("Connection", "close")]
        lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in fields), "", ""]
        writer.write("\r\n".join(lines).encode("latin-1"))
        if not head_only:
            writer.write(body)
        await asyncio.wait_for(writer.drain(), self.limits.write_timeout)


def _header(header_lines: list[str], wanted: str) -> str | None:
    """The value of the first header named ``wanted`` (lower case)."""
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() == wanted:
            return value.strip()
    return None


def _environ(method: str, path: str, query: str, header_lines: list[str],
             address: tuple[str, int], scheme: str = "http") -> WSGIEnvironment:
    environ: WSGIEnvironment = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
        "SCRIPT_NAME": "", "SERVER_NAME": str(address[0]), "SERVER_PORT": str(address[1]),
        "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": scheme, "wsgi.version": (1, 0),
        "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
    }
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep and name.lower() in ("accept", "accept-encoding"):
            environ["HTTP_" + name.upper().replace("-", "_")] = value.strip()
    return environ


def _call(app: WSGIApplication, environ: WSGIEnvironment) -> tuple[str, list[tuple[str, str]], bytes]:
    """Run a WSGI app to its whole answer: (status, headers, body)."""
    answer: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None
                       ) -> Callable[[bytes], object]:
        answer[:] = [(status, headers)]
        return lambda data: None

    try:
        chunks = app(environ, start_response)
        try:
            body = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
    except Exception:
        log.exception("answering %s failed", environ.get("PATH_INFO"))
        return "500 Internal Server Error", [("Content-Type", "text/plain; charset=utf-8")], \
            b"internal error: see the exporter's log\n"
    status, headers = answer[0]
    return status, headers, body


def serve(
    listen: str | Listener = DEFAULT_LISTEN, collector: PingkillerCollector | None = None, *,
    max_scrapes: int = DEFAULT_MAX_SCRAPES, web: WebConfig = PLAIN_HTTP,
) -> tuple[MetricsServer, threading.Thread]:
    """Serve /metrics, /livez and /readyz on ``listen`` (``HOST:PORT``, ``unix:PATH`` or a
    :class:`Listener`, which the server owns once this returns) in background threads; shut the server
    down to stop. Needs only read access to the pins (and CAP_BPF). At most
    ``max_scrapes`` scrapes run at once (one more gets 503). ``web``: TLS and basic
    authentication (:func:`pingkiller.exporter.webconfig.load`)."""
    require_read_access()  # before a socket file is made
    registry = CollectorRegistry()
    registry.register(collector or PingkillerCollector())
    listener = open_listener(listen) if isinstance(listen, str) else listen
    with contextlib.ExitStack() as undo:
        undo.callback(listener.close)
        server = MetricsServer(listener.sock, make_app(registry, max_scrapes=max_scrapes),
                               Limits(workers=max_scrapes + 2), web, listener)
        thread = server.start()
        undo.pop_all()
    return server, thread

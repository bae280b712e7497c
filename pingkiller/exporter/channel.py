"""The channel between the exporter's two processes.

The *broker* keeps the privilege to read the pins and runs the collector; the *server*
parses HTTP and holds no capability and no BPF descriptor. Over a unix stream socket the
server sends one byte (:data:`METRICS`, :data:`OPENMETRICS` or :data:`READY`) and gets
one frame back: a status byte (``K`` or ``E``), a 4-byte big-endian length, the payload.
The broker reads nothing else from the server, so a compromised server can ask for
scrapes and no more.
"""

from __future__ import annotations

import logging
import queue
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

METRICS, OPENMETRICS, READY = b"M", b"O", b"R"
_OK, _ERROR = b"K", b"E"
_HEAD = struct.Struct(">cI")
MAX_PAYLOAD = 256 << 20  # a scrape's text is far smaller: series past --max-rule-series are cut
log = logging.getLogger(__name__)


class BrokerGone(ConnectionError):
    """The broker closed the channel (it stopped, or died)."""


class BrokerFailed(RuntimeError):
    """The broker answered, with an error (reading the pins failed)."""


class Broker:
    """Answers a server's requests from ``registry`` and ``ready``, a thread per channel."""

    def __init__(self, registry: CollectorRegistry, ready: Callable[[], tuple[bool, str]]) -> None:
        self.registry = registry
        self.ready = ready

    def serve(self, channels: Iterable[socket.socket]) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._serve_one, args=(channel,), daemon=True,
                                    name="pingkiller-broker") for channel in channels]
        for thread in threads:
            thread.start()
        return threads

    def _serve_one(self, channel: socket.socket) -> None:
        with channel:
            while True:
                try:
                    request = channel.recv(1)
                except OSError:
                    return
                if not request:
                    return
                status, payload = self.answer(request)
                try:
                    channel.sendall(_HEAD.pack(status, len(payload)) + payload)
                except OSError:
                    return

    def answer(self, request: bytes) -> tuple[bytes, bytes]:
        """The status and payload for one request byte."""
        try:
            if request == METRICS:
                return _OK, generate_latest(self.registry)
            if request == OPENMETRICS:
                return _OK, bytes(generate_openmetrics(self.registry))  # type: ignore[no-untyped-call]
            if request == READY:
                ok, why = self.ready()
                return _OK, (b"1" if ok else b"0") + why.encode()
        except Exception:
            log.exception("answering the server's request %r failed", request)
            return _ERROR, b"the broker failed to read the pins: see the exporter's log"
        return _ERROR, b"unknown request"


class BrokerClient:
    """The server's end: a pool of channels (one request at a time on each) for scrapes,
    and one kept for the readiness probe, so a slow scrape never holds a probe."""

    def __init__(self, scrapes: Iterable[socket.socket], probe: socket.socket,
                 timeout: float = 60) -> None:
        self._idle: queue.SimpleQueue[socket.socket] = queue.SimpleQueue()
        for channel in scrapes:
            channel.settimeout(timeout)
            self._idle.put(channel)
        probe.settimeout(timeout)
        self._probe = probe
        self._probe_lock = threading.Lock()
        self.broken: Exception | None = None  # a channel failed: the broker is gone or stuck

    def close(self) -> None:
        self._probe.close()
        while not self._idle.empty():
            self._idle.get().close()

    def metrics(self, openmetrics: bool = False) -> bytes:
        """The collector's text (OpenMetrics' when asked); BrokerGone once a channel failed."""
        with self._channel() as channel:
            return _ask(channel, OPENMETRICS if openmetrics else METRICS)

    def ready(self) -> tuple[bool, str]:
        """The broker's readiness, and why."""
        if self.broken is not None:
            return False, f"the exporter's broker does not answer: {self.broken}"
        try:
            with self._probe_lock:
                payload = _ask(self._probe, READY)
        except OSError as err:
            self.broken = err
            return False, f"the exporter's broker does not answer: {err}"
        except BrokerFailed as err:
            return False, str(err)
        return payload[:1] == b"1", payload[1:].decode(errors="replace")

    @contextmanager
    def _channel(self) -> Iterator[socket.socket]:
        if self.broken is not None:
            raise BrokerGone(f"the exporter's broker does not answer: {self.broken}")
        channel = self._idle.get()
        try:
            yield channel
        except OSError as err:  # out of step or closed: never used again
            self.broken = err
            channel.close()
            raise
        except BaseException:  # a whole frame was read (the broker's error): still in step
            self._idle.put(channel)
            raise
        self._idle.put(channel)


def _ask(channel: socket.socket, request: bytes) -> bytes:
    channel.sendall(request)
    status, length = _HEAD.unpack(_read(channel, _HEAD.size))
    if length > MAX_PAYLOAD:
        raise BrokerGone(f"the broker sent {length} bytes, more than {MAX_PAYLOAD}")
    payload = _read(channel, length)
    if status != _OK:
        raise BrokerFailed(payload.decode(errors="replace"))
    return payload


def _read(channel: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = channel.recv(min(left, 1 << 20))
        if not chunk:
            raise BrokerGone("the exporter's broker closed the channel")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)

"""`pingkiller exporter --web.config.file`: the real exporter over real pins serves HTTPS
and asks for basic authentication as an exporter-toolkit web config says; a bad file
stops it before it listens, in one line."""

from __future__ import annotations

import base64
import resource
import shutil
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import bcrypt
import pytest
from helpers import CLI, free_port, pk, wait_until_answers

import pingkiller
from pingkiller.demo.sandbox import Sandbox

pytestmark = pytest.mark.root


@pytest.fixture
def tls_files(tmp_path: Path) -> Path:
    """A self-signed certificate for 127.0.0.1 (cert.pem, key.pem) in tmp_path."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command (make setup installs it)")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(tmp_path / "cert.pem"), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return tmp_path


def tls_and_password(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A web config in ``directory`` (TLS with its certificate, user prometheus with
    password scrape-me) and a client context that trusts the certificate."""
    hashed = bcrypt.hashpw(b"scrape-me", bcrypt.gensalt(4)).decode()
    web = directory / "web.yml"
    web.write_text("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n"
                   f"basic_auth_users:\n  prometheus: {hashed}\n")
    return web, ssl.create_default_context(cafile=str(directory / "cert.pem"))


def fetch(url: str, context: ssl.SSLContext, user: str | None = None,
          password: str = "") -> tuple[int, str]:
    request = urllib.request.Request(url)
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@contextmanager
def exporter(web_config: Path, context: ssl.SSLContext, *args: str) -> Iterator[str]:
    """The exporter with ``web_config`` on a free loopback port: its https base URL."""
    port = free_port()
    server = subprocess.Popen([*CLI, "exporter", "--listen", f"127.0.0.1:{port}",
                               "--web.config.file", str(web_config), *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"https://127.0.0.1:{port}"
    try:
        wait_until_answers(server, lambda: fetch(f"{base}/livez", context))
        yield base
    finally:
        server.terminate()
        _, err = server.communicate(timeout=10)
    assert server.returncode == 0 and "Traceback" not in err, err
    assert f"serving metrics on https://127.0.0.1:{port}/metrics (basic authentication)" in err


def test_a_web_config_serves_metrics_over_tls_to_its_users_only(
        pin_root: Path, sandbox: Sandbox, tls_files: Path) -> None:
    peer = sandbox.add_peer()
    pingkiller.attach(peer.host_ifname, block=[peer.peer_v4]).close()
    web, context = tls_and_password(tls_files)
    with exporter(web, context) as base:
        status, body = fetch(f"{base}/metrics", context, "prometheus", "scrape-me")
        assert status == 200
        assert f'pingkiller_packets_total{{direction="in",hook="xdp",interface="{peer.host_ifname}"' \
            in body
        for user, password in ((None, ""), ("prometheus", "wrong"), ("admin", "scrape-me")):
            status, body = fetch(f"{base}/metrics", context, user, password)
            assert status == 401 and "pingkiller_" not in body, (user, status)
        assert fetch(f"{base}/livez", context) == (200, "ok\n")
        assert fetch(f"{base}/readyz", context)[0] == 200
        with pytest.raises(OSError):  # plain HTTP is not served
            urllib.request.urlopen(f"http://127.0.0.1:{base.rsplit(':', 1)[1]}/metrics",
                                   timeout=10).read()


@pytest.mark.parametrize(("text", "says"), [
    ("basic_auth_users: {prometheus: plaintext}\n", "is not a bcrypt hash"),
    ("tls_server_config: {cert_file: missing.pem, key_file: key.pem}\n", "cannot be read"),
    ("tls_server_config: {cert_file: cert.pem, key_file: key.pem, min_version: TLS10}\n",
     "TLS 1.0 and 1.1 are not offered"),
])
def test_a_bad_web_config_stops_the_exporter_in_one_line(
        pin_root: Path, tls_files: Path, text: str, says: str) -> None:
    web = tls_files / "web.yml"
    web.write_text(text)
    port = free_port()
    result = pk("exporter", "--listen", f"127.0.0.1:{port}", "--web.config.file", str(web))
    assert result.returncode == 2 and result.stdout == ""
    assert says in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr
    result = pk("exporter", "--listen", f"127.0.0.1:{port}", "--web.config.file",
                str(tls_files / "nothere.yml"))
    assert result.returncode == 2 and "web config file" in result.stderr


def test_probes_answer_on_their_own_port_while_the_tls_port_is_flooded(
        pin_root: Path, sandbox: Sandbox, tls_files: Path) -> None:
    """--probe-listen: a flood of silent connections on the TLS port (each may hold its
    handshake for 5 s) never reaches the kubelet's port, which serves the probes only."""
    peer = sandbox.add_peer()
    pingkiller.attach(peer.host_ifname, block=[peer.peer_v4]).close()
    web, context = tls_and_password(tls_files)
    probes = free_port()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))
    held: list[socket.socket] = []
    try:
        with exporter(web, context, "--probe-listen", f"127.0.0.1:{probes}") as base:
            host, port = "127.0.0.1", int(base.rsplit(":", 1)[1])
            for _ in range(5000):
                held.append(socket.create_connection((host, port), timeout=15))
            for _ in range(5):
                with urllib.request.urlopen(f"http://127.0.0.1:{probes}/livez", timeout=5) as answer:
                    assert answer.status == 200 and answer.read() == b"ok\n"
            assert _status(f"http://127.0.0.1:{probes}/readyz") == 200
            assert _status(f"http://127.0.0.1:{probes}/metrics") == 404  # probes only
    finally:
        for client in held:
            client.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as err:
        return int(err.code)

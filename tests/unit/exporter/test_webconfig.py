"""The exporter's web configuration file (exporter-toolkit's YAML): what it accepts, what
it refuses in one line, and TLS, client certificates and basic authentication on a real
loopback server. Certificates come from the openssl command, made once per session."""

from __future__ import annotations

import base64
import http.client
import shutil
import socket
import ssl
import subprocess
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_exporter_server import wsgi_app

from pingkiller.exporter.server import Limits, MetricsServer
from pingkiller.exporter.webconfig import BasicAuth, WebConfig, load
from pingkiller.model.errors import InvalidInput, WebConfigError

# bcrypt of "s3cret", cost 4, fixed: test ids must be the same in every worker
HASH = "$2b$04$/jtxoP5kzVdl0xuHyqKC.e9nTYViFlnTluHEfA61BYSCByrV4M7u6"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ca.pem; server.pem/key (127.0.0.1); client.pem/key (DNS prometheus.monitoring);
    intruder.pem/key (another SAN, same CA); stranger.pem/key (another CA)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command (make setup installs it)")
    where = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "otherca"):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", str(where / f"{ca}.key"), "-out", str(where / f"{ca}.pem"),
                 "-days", "2", "-subj", f"/CN={ca}")
    for name, san, ca in (("server", "IP:127.0.0.1", "ca"),
                          ("client", "DNS:prometheus.monitoring", "ca"),
                          ("intruder", "DNS:intruder.example", "ca"),
                          ("stranger", "DNS:prometheus.monitoring", "otherca")):
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", str(where / f"{name}.key"), "-out", str(where / f"{name}.csr"),
                 "-subj", f"/CN={name}")
        (where / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        _openssl("x509", "-req", "-in", str(where / f"{name}.csr"), "-CA", str(where / f"{ca}.pem"),
                 "-CAkey", str(where / f"{ca}.key"), "-CAcreateserial", "-days", "2",
                 "-extfile", str(where / f"{name}.ext"), "-out", str(where / f"{name}.pem"))
    return where


def config(directory: Path, text: str) -> WebConfig:
    path = directory / "web.yml"
    path.write_text(textwrap.dedent(text))
    return load(path)


def refusal(directory: Path, text: str) -> str:
    with pytest.raises(WebConfigError) as caught:
        config(directory, text)
    message = str(caught.value)
    assert "\n" not in message and "web config file" in message
    assert isinstance(caught.value, InvalidInput) and caught.value.exit_code == 2
    return message


# -- reading the file


def test_an_empty_file_means_plain_http_without_credentials(tmp_path: Path) -> None:
    web = config(tmp_path, "")
    assert web.tls is None and web.auth is None and web.scheme == "http"


def test_relative_paths_are_taken_from_the_files_directory(pki: Path, tmp_path: Path) -> None:
    web = config(pki, f"""\
        tls_server_config:
          cert_file: server.pem
          key_file: server.key
          min_version: TLS13
        basic_auth_users:
          prometheus: "{HASH}"
        """)
    assert web.tls is not None and web.tls.minimum_version is ssl.TLSVersion.TLSv1_3
    assert web.scheme == "https" and web.auth is not None


def test_inline_certificate_and_key_are_used(pki: Path, tmp_path: Path) -> None:
    cert = (pki / "server.pem").read_text().replace("\n", "\n    ")
    key = (pki / "server.key").read_text().replace("\n", "\n    ")
    web = config(tmp_path, f"tls_server_config:\n  cert: |\n    {cert}\n  key: |\n    {key}\n")
    assert web.tls is not None


@pytest.mark.parametrize(("text", "says"), [
    ("tls_server_config: {cert_file: a.pem}\n", "needs a certificate and its key"),
    ("tls_server_config: {cert_file: nothere.pem, key_file: nothere.key}\n", "cannot be read"),
    ("tls_server_confg: {}\n", "no key 'tls_server_confg'"),
    ("basic_auth_users: {a: x}\nbasic_auth_users: {b: y}\n", "given twice"),
    ("basic_auth_users: {prometheus: plaintext}\n", "not a bcrypt hash"),
    (f"basic_auth_users: {{'a:b': '{HASH}'}}\n", "without ':'"),
    ("rate_limit: {interval: 1s, burst: 5}\n", "rate_limit is not supported"),
    ("http_server_config: {headers: {Server: x}}\n", "cannot be set"),
    ("http_server_config: {headers: {X-Frame-Options: allow}}\n", "deny or sameorigin"),
    ("http_server_config: {http2: maybe}\n", "true or false"),
    ("tls_server_config: [1, 2]\n", "must be a mapping"),
    ("a: [\n", "not valid YAML"),
])
def test_a_bad_file_is_refused_in_one_line(tmp_path: Path, text: str, says: str) -> None:
    assert says in refusal(tmp_path, text)


@pytest.mark.parametrize(("extra", "says"), [
    ("min_version: TLS10", "TLS 1.0 and 1.1 are not offered"),
    ("min_version: TLS14", "unknown version"),
    ("min_version: TLS13\n  max_version: TLS12", "above max_version"),
    ("client_auth_type: RequestClientCert", "accepts certificates nobody checked"),
    ("client_auth_type: RequireAndVerifyClientCert", "needs client_ca_file"),
    ("client_auth_type: Sometimes", "unknown client_auth_type"),
    ("client_allowed_sans: [a]", "needs client_auth_type RequireAndVerifyClientCert"),
    ("cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]", "is not offered"),
    ("curve_preferences: [CurveP999]", "unknown curve"),
    ("cert: inline", "both cert and cert_file"),
])
def test_a_bad_tls_section_is_refused_in_one_line(pki: Path, extra: str, says: str) -> None:
    text = f"tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  {extra}\n"
    assert says in refusal(pki, text)


def test_a_key_that_does_not_match_the_certificate_is_refused(pki: Path) -> None:
    says = refusal(pki, "tls_server_config: {cert_file: server.pem, key_file: client.key}\n")
    assert "cannot be used" in says


# -- basic authentication


def header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_auth_takes_the_right_password_only() -> None:
    auth = BasicAuth({"prometheus": HASH.encode()})
    assert auth.check(header("prometheus", "s3cret"))
    assert auth.check(header("prometheus", "s3cret"))  # remembered
    for wrong in (header("prometheus", "S3cret"), header("nobody", "s3cret"), None, "",
                  "Bearer x", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode(),
                  header("prometheus", "x" * 100)):
        assert not auth.check(wrong), wrong


# -- a real server on loopback


@contextmanager
def serving(web: WebConfig) -> Iterator[tuple[str, int]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    running = MetricsServer(sock, wsgi_app(), Limits(request_timeout=2), web)
    running.start()
    try:
        yield running.server_address
    finally:
        running.shutdown()


def client_context(pki: Path, cert: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if cert is not None:
        context.load_cert_chain(pki / f"{cert}.pem", pki / f"{cert}.key")
    return context


def https(address: tuple[str, int], context: ssl.SSLContext, path: str,
          authorization: str | None = None) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPSConnection(*address, context=context, timeout=5)
    try:
        connection.request("GET", path, headers={"Authorization": authorization}
                           if authorization else {})
        answer = connection.getresponse()
        return answer.status, dict(answer.getheaders()), answer.read()
    finally:
        connection.close()


def test_tls_and_basic_auth_guard_metrics_but_not_the_probes(pki: Path) -> None:
    web = config(pki, f"""\
        tls_server_config: {{cert_file: server.pem, key_file: server.key}}
        basic_auth_users: {{prometheus: "{HASH}"}}
        http_server_config: {{headers: {{X-Content-Type-Options: nosniff}}}}
        """)
    with serving(web) as address:
        context = client_context(pki)
        status, headers, body = https(address, context, "/metrics", header("prometheus", "s3cret"))
        assert (status, body) == (200, b"/metrics ok \n")
        assert headers["X-Content-Type-Options"] == "nosniff"
        for wrong in (None, header("prometheus", "wrong"), header("root", "s3cret")):
            status, headers, body = https(address, context, "/metrics", wrong)
            assert status == 401 and b"/metrics ok" not in body
            assert headers["WWW-Authenticate"].startswith("Basic")
        assert https(address, context, "/nothere")[0] == 401  # no path is shown without them
        assert https(address, context, "/livez")[0] == 200  # the kubelet has no password
        assert https(address, context, "/readyz")[0] == 200
        answer = b""
        with socket.create_connection(address, timeout=5) as plain:  # plain HTTP gets nothing
            plain.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                while chunk := plain.recv(4096):
                    answer += chunk
            except OSError:
                pass
        assert b"/metrics ok" not in answer and b"HTTP/1.1 200" not in answer


def test_client_certificates_are_verified_and_their_names_checked(pki: Path) -> None:
    web = config(pki, """\
        tls_server_config:
          cert_file: server.pem
          key_file: server.key
          client_auth_type: RequireAndVerifyClientCert
          client_ca_file: ca.pem
          client_allowed_sans: [prometheus.monitoring]
        """)
    with serving(web) as address:
        assert https(address, client_context(pki, "client"), "/metrics")[0] == 200
        for cert in (None, "stranger", "intruder"):  # none, another CA, a name not allowed
            with pytest.raises((ssl.SSLError, OSError, http.client.HTTPException)):
                https(address, client_context(pki, cert), "/metrics")
        assert https(address, client_context(pki, "client"), "/livez")[0] == 200

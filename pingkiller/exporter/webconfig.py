"""The exporter's web configuration file: the YAML of Prometheus' exporter-toolkit
(``--web.config.file``, as node_exporter reads it), for TLS and basic authentication.

Keys and defaults are exporter-toolkit's (docs/web-configuration.md there), read as
strictly: an unknown or repeated key is an error. What Python's ``ssl`` cannot do as Go
does is refused with a line saying what to use instead, never silently weakened.
Relative paths are taken from the file's own directory.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import re
import ssl
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from pingkiller.model.errors import WebConfigError
from pingkiller.model.untrusted import FileKind, quote, quote_path, read_text

WEB_CONFIG_FILE = FileKind("web config file", "PINGKILLER_WEB_CONFIG_LIMIT", 1 << 20, WebConfigError)

_TOP = ("tls_server_config", "http_server_config", "basic_auth_users")
_TLS = ("cert_file", "key_file", "cert", "key", "client_auth_type", "client_ca_file", "client_ca",
        "client_allowed_sans", "min_version", "max_version", "cipher_suites",
        "prefer_server_cipher_suites", "curve_preferences")
_HTTP = ("http2", "headers")
_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_CLIENT_AUTH = {"": ssl.CERT_NONE, "NoClientCert": ssl.CERT_NONE,
                "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
                "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
# Go's names of the TLS 1.2 suites it offers by default, as OpenSSL names them. Go cannot
# configure TLS 1.3 suites (all three are always on), so their names are accepted as no-ops.
_CIPHERS = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
}
_TLS13_CIPHERS = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
_CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1",
           "X25519": "X25519"}
# The response headers exporter-toolkit lets a web config set, and the values it allows.
_HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None, "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"), "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}
_BCRYPT = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
# A hash nobody's password matches: unknown users cost a bcrypt check too, so the time
# of an answer does not tell which user names exist.
_DUMMY = b"$2b$10$" + b"." * 53
_CACHED = 256  # successful (user, password) checks remembered, as exporter-toolkit does


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (as Go's strict
    decoder does)."""


def _mapping(loader: Any, node: Any, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise WebConfigError(f"line {key_node.start_mark.line + 1}: key {quote(str(key))} "
                                 "is given twice: keep one")
        seen.add(key)
    return dict(yaml.SafeLoader.construct_mapping(loader, node, deep=deep))


_StrictLoader.add_constructor("tag:yaml.org,2002:map", _mapping)


@dataclass
class BasicAuth:
    """The users of ``basic_auth_users`` and their bcrypt hashes; :meth:`check` is thread-safe."""

    users: Mapping[str, bytes]
    _good: dict[bytes, None] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def check(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header's value names a user and their password."""
        credentials = _basic(authorization)
        if credentials is None:
            return False
        user, password = credentials
        stored = self.users.get(user)
        token = hashlib.sha256(b"\0".join((user.encode(), stored or b"", password))).digest()
        with self._lock:
            if stored is not None and token in self._good:
                return True
        try:
            ok = bcrypt.checkpw(password, stored or _DUMMY) and stored is not None
        except ValueError:  # a password past bcrypt's 72 bytes
            ok = False
        if ok:
            with self._lock:
                if len(self._good) >= _CACHED:
                    self._good.pop(next(iter(self._good)))
                self._good[token] = None
        return ok


def _basic(authorization: str | None) -> tuple[str, bytes] | None:
    scheme, _, encoded = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    return user.decode("utf-8", "replace"), password


@dataclass(frozen=True)
class WebConfig:
    """What a web configuration file asks of the exporter's listener."""

    tls: ssl.SSLContext | None = None
    allowed_sans: frozenset[str] = frozenset()  # a client certificate must name one (empty: any)
    auth: BasicAuth | None = None
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    def peer_allowed(self, peercert: Mapping[str, Any] | None) -> bool:
        """Whether a client certificate passes ``client_allowed_sans``."""
        if not self.allowed_sans:
            return True
        names = {str(value) for _, value in (peercert or {}).get("subjectAltName", ())}
        return not names.isdisjoint(self.allowed_sans)


PLAIN_HTTP = WebConfig()  # no web configuration file: plain HTTP, no credentials


def load(path: str | Path) -> WebConfig:
    """Read and check the web configuration file at ``path`` (refusals raise WebConfigError)."""
    text = read_text(WEB_CONFIG_FILE, path)
    where = f"web config file {quote_path(path)}"
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except WebConfigError as err:
        raise WebConfigError(f"{where}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise WebConfigError(f"{where}:{line} is not valid YAML: "
                             f"{getattr(err, 'problem', None) or err}") from None
    base = Path(path).parent
    try:
        return _config({} if data is None else data, base)
    except WebConfigError as err:
        raise WebConfigError(f"{where}: {err}") from None


def _section(value: object, name: str, keys: tuple[str, ...]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebConfigError(f"{name} must be a mapping of {', '.join(keys)}")
    unknown = sorted(str(key) for key in value if key not in keys)
    if unknown:
        raise WebConfigError(f"{name} has no key {quote(unknown[0])}: its keys are "
                             f"{', '.join(keys)}")
    return value


def _config(data: object, base: Path) -> WebConfig:
    if isinstance(data, dict) and "rate_limit" in data:
        raise WebConfigError("rate_limit is not supported: remove it (--max-scrapes bounds the "
                             "scrapes answered at once)")
    top = _section(data, "the file", _TOP)
    tls_keys = _section(top.get("tls_server_config"), "tls_server_config", _TLS)
    http = _section(top.get("http_server_config"), "http_server_config", _HTTP)
    if not isinstance(http.get("http2", True), bool):
        raise WebConfigError("http_server_config.http2 must be true or false")
    tls, sans = _tls(tls_keys, base) if tls_keys else (None, frozenset[str]())
    return WebConfig(tls=tls, allowed_sans=sans, auth=_users(top.get("basic_auth_users")),
                     headers=_headers(http.get("headers")))


def _string(section: Mapping[str, Any], key: str, default: str = "") -> str:
    value = section.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise WebConfigError(f"tls_server_config.{key} must be a string")
    return value


def _strings(section: Mapping[str, Any], key: str) -> list[str]:
    value = section.get(key) or []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise WebConfigError(f"tls_server_config.{key} must be a list of strings")
    return value


def _tls(section: Mapping[str, Any], base: Path) -> tuple[ssl.SSLContext, frozenset[str]]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_alpn_protocols(["http/1.1"])
    if not all(_string(section, name) or _string(section, f"{name}_file") for name in ("cert", "key")):
        raise WebConfigError("tls_server_config needs a certificate and its key: cert_file and "
                             "key_file (or cert and key, inline)")
    cert, key = _pem_or_file(section, "cert", base), _pem_or_file(section, "key", base)
    assert cert is not None and key is not None
    with _as_files(cert, key) as (cert_path, key_path):
        try:
            context.load_cert_chain(cert_path, key_path)
        except (OSError, ssl.SSLError) as err:
            raise WebConfigError(f"the certificate or key cannot be used: {_ssl_reason(err)}: "
                                 "give a PEM certificate and its matching PEM key") from None
    _client_auth(context, section, base)
    context.minimum_version = _version(section, "min_version", "TLS12")
    context.maximum_version = _version(section, "max_version", "TLS13")
    if context.minimum_version > context.maximum_version:
        raise WebConfigError("tls_server_config.min_version is above max_version")
    _ciphers(context, _strings(section, "cipher_suites"))
    prefer = section.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise WebConfigError("tls_server_config.prefer_server_cipher_suites must be true or false")
    if prefer:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    curves = _strings(section, "curve_preferences")
    for curve in curves:
        if curve not in _CURVES:
            raise WebConfigError(f"tls_server_config.curve_preferences: unknown curve "
                                 f"{quote(curve)}: use {', '.join(_CURVES)}")
    if curves:  # Python sets one curve: the first, so only curves listed are ever offered
        context.set_ecdh_curve(_CURVES[curves[0]])
    sans = frozenset(_strings(section, "client_allowed_sans"))
    if sans and context.verify_mode != ssl.CERT_REQUIRED:
        raise WebConfigError("tls_server_config.client_allowed_sans needs client_auth_type "
                             "RequireAndVerifyClientCert")
    return context, sans


def _pem_or_file(section: Mapping[str, Any], name: str, base: Path) -> bytes | None:
    inline, path = _string(section, name), _string(section, f"{name}_file")
    if inline and path:
        raise WebConfigError(f"tls_server_config gives both {name} and {name}_file: keep one")
    if inline:
        return inline.encode()
    if path:
        return _read_pem(base / path, f"{name}_file")
    return None


def _read_pem(path: Path, key: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise WebConfigError(f"tls_server_config.{key} {quote_path(path)} cannot be read: "
                             f"{err.strerror or err}") from None


@contextlib.contextmanager
def _as_files(*pems: bytes) -> Iterator[list[str]]:
    """Paths to ``pems`` for OpenSSL, which loads keys only from files: memory-backed
    files of this process, so an inline key never touches a disk."""
    fds = []
    try:
        for pem in pems:
            fd = os.memfd_create("pingkiller-web-config", os.MFD_CLOEXEC)
            fds.append(fd)
            os.write(fd, pem)
        yield [f"/proc/self/fd/{fd}" for fd in fds]
    finally:
        for fd in fds:
            os.close(fd)


def _client_auth(context: ssl.SSLContext, section: Mapping[str, Any], base: Path) -> None:
    kind = _string(section, "client_auth_type")
    if kind in ("RequestClientCert", "RequireAnyClientCert"):
        raise WebConfigError(f"client_auth_type {kind} accepts certificates nobody checked, "
                             "which pingkiller does not do: use VerifyClientCertIfGiven or "
                             "RequireAndVerifyClientCert with client_ca_file")
    if kind not in _CLIENT_AUTH:
        raise WebConfigError(f"unknown client_auth_type {quote(kind)}: use "
                             f"{', '.join(k for k in _CLIENT_AUTH if k)}")
    ca = _pem_or_file(section, "client_ca", base)
    if ca is not None:
        try:
            context.load_verify_locations(cadata=ca.decode("ascii", "replace"))
        except (ssl.SSLError, ValueError) as err:
            raise WebConfigError(f"the client CA cannot be used: {_ssl_reason(err)}: give PEM "
                                 "certificates") from None
    elif _CLIENT_AUTH[kind] != ssl.CERT_NONE:
        raise WebConfigError(f"client_auth_type {kind} needs client_ca_file (or client_ca): "
                             "the CA that signs the clients' certificates")
    context.verify_mode = _CLIENT_AUTH[kind]


def _version(section: Mapping[str, Any], key: str, default: str) -> ssl.TLSVersion:
    name = _string(section, key, default) or default
    if name in ("TLS10", "TLS11"):
        raise WebConfigError(f"tls_server_config.{key} {name}: TLS 1.0 and 1.1 are not offered: "
                             "use TLS12 or TLS13")
    if name not in _VERSIONS:
        raise WebConfigError(f"tls_server_config.{key}: unknown version {quote(name)}: use "
                             "TLS12 or TLS13")
    return _VERSIONS[name]


def _ciphers(context: ssl.SSLContext, names: list[str]) -> None:
    chosen = []
    for name in names:
        if name in _CIPHERS:
            chosen.append(_CIPHERS[name])
        elif name not in _TLS13_CIPHERS:
            raise WebConfigError(f"tls_server_config.cipher_suites: {quote(name)} is not offered: "
                                 f"use some of {', '.join(_CIPHERS)}")
    if chosen:
        try:
            context.set_ciphers(":".join(chosen))
        except ssl.SSLError:
            raise WebConfigError("tls_server_config.cipher_suites: this OpenSSL offers none of "
                                 "them: list others") from None


def _users(value: object) -> BasicAuth | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise WebConfigError("basic_auth_users must map user names to bcrypt hashes")
    users = {}
    for user, hashed in value.items():
        if not isinstance(user, str) or not user or ":" in user:
            raise WebConfigError(f"basic_auth_users: user name {quote(str(user))} must be a "
                                 "non-empty string without ':'")
        if not isinstance(hashed, str) or not _BCRYPT.fullmatch(hashed):
            raise WebConfigError(f"basic_auth_users: the password of {quote(user)} is not a "
                                 "bcrypt hash ($2y$..., 60 characters): make one with "
                                 "`htpasswd -nBC 10 \"\" | tr -d ':\\n'` (apache2-utils)")
        users[user] = hashed.encode()
    return BasicAuth(users) if users else None


def _headers(value: object) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise WebConfigError("http_server_config.headers must map header names to values")
    headers = []
    for name, text in value.items():
        if name not in _HEADERS:
            raise WebConfigError(f"http_server_config.headers: {quote(str(name))} cannot be set: "
                                 f"only {', '.join(_HEADERS)}")
        allowed = _HEADERS[name]
        if not isinstance(text, str) or "\r" in text or "\n" in text or \
                (allowed is not None and text.lower() not in allowed):
            want = " or ".join(allowed) if allowed else "one line of text"
            raise WebConfigError(f"http_server_config.headers: {name} must be {want}")
        headers.append((name, text))
    return tuple(headers)


def _ssl_reason(err: Exception) -> str:
    reason = getattr(err, "reason", None) or getattr(err, "strerror", None) or str(err)
    return str(reason).lower().replace("_", " ")

"""Where the exporter listens: a TCP ``HOST:PORT``, or ``unix:PATH``, a unix socket whose
file mode and group decide which local users may scrape (connecting to a unix socket
needs write permission on its file)."""

from __future__ import annotations

import contextlib
import grp
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from pingkiller.model.errors import InvalidInput, PermissionDenied, PingkillerError
from pingkiller.model.untrusted import quote, quote_path
from pingkiller.system.trust import untrusted_directory

UNIX_PREFIX = "unix:"
DEFAULT_SOCKET_MODE = 0o660


@dataclass
class Listener:
    """A bound, listening socket and what to say of it; :meth:`close` removes a unix
    socket's file too."""

    sock: socket.socket
    shown: str  # host:port, or unix:PATH
    path: Path | None = None
    _inode: int = 0

    def close(self) -> None:
        self.sock.close()
        if self.path is not None:
            with contextlib.suppress(OSError):
                if self.path.lstat().st_ino == self._inode:  # ours still, not a successor's
                    self.path.unlink()


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9477`` for IPv6) as (host, port)."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not (sep and host and port.isascii() and port.isdigit() and len(port) <= 5
            and 0 < int(port) < 65536):
        raise InvalidInput(
            f"listen address {quote(text)} is not HOST:PORT or unix:PATH: e.g. 127.0.0.1:9477, "
            "[::1]:9477 (0.0.0.0:9477 for every address) or unix:/run/pingkiller-metrics/sock"
        )
    return host, int(port)


def parse_socket_mode(text: str) -> int:
    """An octal file mode for the unix socket (``0660``)."""
    if not (text.isascii() and 1 <= len(text) <= 4 and all(c in "01234567" for c in text)) \
            or int(text, 8) > 0o777:
        raise InvalidInput(f"socket mode {quote(text)} is not an octal file mode: e.g. 0660 (owner "
                           "and group may scrape) or 0600 (root only)")
    return int(text, 8)


def group_id(name: str) -> int:
    """The id of group ``name`` (a name or a number)."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        if name.isascii() and name.isdigit():
            return int(name)
    raise InvalidInput(f"no group {quote(name)} on this host: name an existing group (getent group) "
                       "or its number")


def open_listener(listen: str, *, socket_mode: int | None = None,
                  socket_group: str | None = None) -> Listener:
    """Bind and listen on ``listen``; ``socket_mode`` and ``socket_group`` are for
    ``unix:PATH`` only (mode 0660 and the caller's group by default)."""
    if listen.startswith(UNIX_PREFIX):
        return _unix(listen.removeprefix(UNIX_PREFIX), socket_mode, socket_group)
    if socket_mode is not None or socket_group is not None:
        raise InvalidInput("--socket-mode and --socket-group are for a unix socket: use them with "
                           "--listen unix:PATH")
    host, port = parse_listen(listen)
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
        except BaseException:
            sock.close()
            raise
    except OSError as err:
        raise PingkillerError(f"cannot listen on {listen}: {err.strerror or err}: pick another "
                              "address or port") from None
    return Listener(sock, listen)


def _unix(text: str, mode: int | None, group: str | None) -> Listener:
    if not text.startswith("/") or "\0" in text:
        raise InvalidInput(f"unix socket path {quote(text)} must be absolute (an abstract name "
                           "would carry no permissions): e.g. unix:/run/pingkiller-metrics/sock")
    path = Path(text)
    _check_directory(path.parent)  # scrapers must not meet a socket someone else swapped in
    return bind_unix(path, DEFAULT_SOCKET_MODE if mode is None else mode,
                     group_id(group) if group is not None else None)


def bind_unix(path: Path, mode: int, gid: int | None) -> Listener:
    """A listening unix socket at ``path``, born with ``mode`` (through the umask) and,
    when given, group ``gid`` (set without following a symlink), so nothing in the
    directory can redirect either to another file."""
    _remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o777 & ~mode | 0o111)
    try:
        sock.bind(str(path))
    except OSError as err:
        sock.close()
        raise PingkillerError(f"cannot listen on {quote_path(path)}: {err.strerror or err}") from None
    finally:
        os.umask(old)
    listener = Listener(sock, f"unix:{path}", path, path.lstat().st_ino)
    try:
        if gid is not None:
            os.chown(path, -1, gid, follow_symlinks=False)
        sock.listen(128)
    except OSError as err:
        listener.close()
        raise PingkillerError(f"cannot give {quote_path(path)} group {gid}: {err.strerror}") from None
    return listener


def _check_directory(directory: Path) -> None:
    try:
        info = directory.lstat()
    except FileNotFoundError:
        raise InvalidInput(f"the socket's directory {quote_path(directory)} does not exist: create "
                           f"it (mkdir -m 0755 {directory})") from None
    problem = untrusted_directory(info)
    if problem:
        raise PermissionDenied(f"the socket's directory {quote_path(directory)} {problem}: others "
                               "could replace the socket; use a directory only root can write")


def _remove_stale(path: Path) -> None:
    """Unlink a socket left by an exporter that is gone; refuse anything else there."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.geteuid():
        raise InvalidInput(f"{quote_path(path)} exists and is not a socket of this user's: remove it "
                           "or listen elsewhere")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink(missing_ok=True)  # nobody answers: a stale socket
            return
    raise PingkillerError(f"another exporter listens on {quote_path(path)}: stop it or listen "
                          "elsewhere")

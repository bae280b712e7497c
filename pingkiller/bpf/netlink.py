"""rtnetlink (NETLINK_ROUTE) requests and dumps, for what libbpf does not offer (listing
tc filters, asking which qdisc an interface has).

Every length a reply carries is checked against the bytes that hold it: a message or
attribute that claims more than is there raises :class:`BpfError` (EBADMSG) instead of
being read past. Errors come back as :class:`BpfError` with the kernel's errno and, when
the kernel gives one, its extended-ack message.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from pingkiller.bpf.errors import BpfError, error_from_errno

# <linux/netlink.h>
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x01
NLM_F_MULTI = 0x02
NLM_F_ACK = 0x04
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200
NLMSGERR_ATTR_MSG = 1
_SOL_NETLINK = 270
_NETLINK_CAP_ACK = 10
_NETLINK_EXT_ACK = 11
NLA_F_NESTED = 0x8000
NLA_F_NET_BYTEORDER = 0x4000
NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xFFFF

NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
NLATTR = struct.Struct("=HH")  # length, type
_ERROR = struct.Struct("=i")
_U32 = struct.Struct("=I")

# A dump the kernel interrupted (the table changed under it) is asked again this often.
_DUMP_RETRIES = 5
_TIMEOUT_S = 10.0


def align(length: int) -> int:
    """Netlink's 4-byte alignment of messages and attributes."""
    return (length + 3) & ~3


def _malformed(what: str) -> BpfError:
    return BpfError(errno.EBADMSG, "reading a netlink reply", what)


@dataclass(frozen=True)
class Message:
    """One netlink message of a reply: its type, flags and payload (header excluded)."""

    type: int
    flags: int
    payload: bytes


def messages(data: bytes) -> Iterator[tuple[int, int, Message]]:
    """(sequence, port id, message) for each message in a datagram; a header
    whose length is shorter than itself or longer than what is left raises."""
    offset = 0
    while len(data) - offset >= NLMSGHDR.size:
        length, kind, flags, seq, port = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size or length > len(data) - offset:
            raise _malformed(f"a message claims {length} bytes, {len(data) - offset} are left")
        payload = data[offset + NLMSGHDR.size:offset + length]
        yield seq, port, Message(kind, flags, payload)
        offset += align(length)
    if len(data) > offset:
        raise _malformed(f"{len(data) - offset} bytes after the last message")


def attributes(data: bytes) -> dict[int, bytes]:
    """The attributes (type without the nested/byte-order flags -> payload) in ``data``;
    of repeated types the first is kept. An attribute longer than what is left raises."""
    found: dict[int, bytes] = {}
    offset = 0
    while len(data) - offset >= NLATTR.size:
        length, kind = NLATTR.unpack_from(data, offset)
        if length < NLATTR.size or length > len(data) - offset:
            raise _malformed(f"an attribute claims {length} bytes, {len(data) - offset} are left")
        found.setdefault(kind & NLA_TYPE_MASK, data[offset + NLATTR.size:offset + length])
        offset += align(length)
    return found


def attribute(kind: int, value: bytes) -> bytes:
    """One attribute, padded to alignment."""
    length = NLATTR.size + len(value)
    return NLATTR.pack(length, kind) + value + bytes(align(length) - length)


def c_string(value: bytes) -> str:
    """A NUL-terminated string attribute's text (up to the first NUL)."""
    return value.split(b"\0", 1)[0].decode(errors="replace")


def u32(value: bytes, what: str) -> int:
    """A native-endian u32 attribute; one of another size raises."""
    if len(value) != 4:
        raise _malformed(f"{what} is {len(value)} bytes, not 4")
    return int(_U32.unpack(value)[0])


def _ack_error(payload: bytes, flags: int) -> tuple[int, str]:
    """The errno (0 for an ack) and the extended-ack message of an NLMSG_ERROR payload."""
    if len(payload) < _ERROR.size + NLMSGHDR.size:
        raise _malformed(f"an error message of {len(payload)} bytes")
    (error,) = _ERROR.unpack_from(payload)
    message = ""
    if flags & NLM_F_ACK_TLVS:
        # The request's header follows, and its payload unless the ack is capped.
        echoed = NLMSGHDR.unpack_from(payload, _ERROR.size)[0]
        start = _ERROR.size + (NLMSGHDR.size if flags & NLM_F_CAPPED else align(echoed))
        if start <= len(payload):
            text = attributes(payload[start:]).get(NLMSGERR_ATTR_MSG)
            message = c_string(text) if text else ""
    return -error, message


class RouteSocket:
    """A NETLINK_ROUTE socket for one request at a time (a context manager)."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                   socket.NETLINK_ROUTE)
        try:
            self._sock.setsockopt(_SOL_NETLINK, _NETLINK_CAP_ACK, 1)
            self._sock.setsockopt(_SOL_NETLINK, _NETLINK_EXT_ACK, 1)
            self._sock.settimeout(_TIMEOUT_S)
            self._sock.bind((0, 0))
            self._port: int = self._sock.getsockname()[0]
        except BaseException:
            self._sock.close()
            raise
        self._seq = int.from_bytes(os.urandom(2), "little")

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _send(self, kind: int, flags: int, body: bytes) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        header = NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, flags, self._seq, 0)
        self._sock.sendto(header + body, (0, 0))
        return self._seq

    def _receive(self, operation: str) -> bytes:
        try:
            # The datagram's real size first (MSG_TRUNC), so a large one is never cut.
            size = self._sock.recv_into(bytearray(1), 1, socket.MSG_PEEK | socket.MSG_TRUNC)
            return self._sock.recv(max(size, 1))
        except TimeoutError:
            raise BpfError(errno.ETIMEDOUT, operation, "the kernel did not answer") from None
        except OSError as exc:
            raise BpfError(exc.errno or errno.EIO, operation) from None

    def _collect(self, seq: int, operation: str, detail: str) -> tuple[list[Message], bool]:
        """The messages answering request ``seq`` up to its ack or end of dump, and whether
        the kernel flagged the dump interrupted; an error raises (with the kernel's
        extended-ack message, when it gave one)."""
        found: list[Message] = []
        interrupted = False
        while True:
            for got_seq, port, message in messages(self._receive(operation)):
                if got_seq != seq or port not in (0, self._port):
                    continue  # a stale answer to an earlier request
                interrupted |= bool(message.flags & NLM_F_DUMP_INTR)
                if message.type == NLMSG_ERROR:
                    err, text = _ack_error(message.payload, message.flags)
                    if err:
                        raise error_from_errno(err, operation, "; ".join(filter(None, (detail, text))))
                    return found, interrupted
                if message.type == NLMSG_DONE:
                    if len(message.payload) >= _ERROR.size:
                        (err,) = _ERROR.unpack_from(message.payload)
                        if err < 0:
                            raise error_from_errno(-err, operation, detail)
                    return found, interrupted
                found.append(message)

    def request(self, kind: int, body: bytes, operation: str, detail: str = "",
                flags: int = 0) -> list[Message]:
        """Send one request (acked) and return what the kernel answered before the ack."""
        seq = self._send(kind, NLM_F_REQUEST | NLM_F_ACK | flags, body)
        return self._collect(seq, operation, detail)[0]

    def dump(self, kind: int, body: bytes, operation: str, detail: str = "") -> list[Message]:
        """Every message of a dump; asked again when the kernel says it was interrupted
        (the table changed while it was read)."""
        for _ in range(_DUMP_RETRIES):
            seq = self._send(kind, NLM_F_REQUEST | NLM_F_DUMP, body)
            found, interrupted = self._collect(seq, operation, detail)
            if not interrupted:
                return found
        raise BpfError(errno.EAGAIN, operation,
                       f"{detail + ': ' if detail else ''}the table kept changing during "
                       f"{_DUMP_RETRIES} dumps")

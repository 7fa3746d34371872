"""SOCKS5 server side (RFC 1928, username/password of RFC 1929), sans-I/O.

Feed the client's bytes to `Socks5Server.receive`; send what each `Socks5Step` says; once
`request` is set, connect and answer with `reply(code)`. Only CONNECT is served: BIND and
UDP ASSOCIATE get "command not supported"; SOCKS4 gets its own rejection; anything else is
closed without a reply. Input is bounded: a request is at most 262 bytes, so an unparsed
prefix never grows beyond that.
"""

from __future__ import annotations

import enum
import hmac
import ipaddress
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from .request import ConnectRequest, Status

SOCKS_VERSION = 5
METHOD_NONE = 0x00
METHOD_USERPASS = 0x02
METHOD_UNACCEPTABLE = 0xFF
CMD_CONNECT, CMD_BIND, CMD_UDP = 1, 2, 3
MAX_PREFIX = 4 + 1 + 255 + 2


class Reply(enum.IntEnum):
    """RFC 1928 §6 reply codes."""

    SUCCEEDED = 0
    GENERAL_FAILURE = 1
    NOT_ALLOWED = 2
    NETWORK_UNREACHABLE = 3
    HOST_UNREACHABLE = 4
    CONNECTION_REFUSED = 5
    TTL_EXPIRED = 6
    COMMAND_NOT_SUPPORTED = 7
    ADDRESS_TYPE_NOT_SUPPORTED = 8


#: Gateway status -> SOCKS reply (SPEC §Converter, "Mapping to SOCKS5").
STATUS_TO_REPLY: dict[Status, Reply] = {
    Status.SUCCESS: Reply.SUCCEEDED,
    Status.GENERAL_FAILURE: Reply.GENERAL_FAILURE,
    Status.NOT_ALLOWED: Reply.NOT_ALLOWED,
    Status.NETWORK_UNREACHABLE: Reply.NETWORK_UNREACHABLE,
    Status.HOST_UNREACHABLE: Reply.HOST_UNREACHABLE,
    Status.CONNECTION_REFUSED: Reply.CONNECTION_REFUSED,
    Status.TIMEOUT: Reply.TTL_EXPIRED,
    Status.DNS_FAILURE: Reply.HOST_UNREACHABLE,
    Status.RESOURCE_EXHAUSTED: Reply.GENERAL_FAILURE,
    Status.BAD_REQUEST: Reply.ADDRESS_TYPE_NOT_SUPPORTED,
}


class _State(enum.Enum):
    GREETING = "greeting"
    AUTH = "auth"
    REQUEST = "request"
    CONNECTING = "connecting"
    DONE = "done"
    CLOSED = "closed"


@dataclass
class Socks5Step:
    """What to do after `receive`: bytes to send, then maybe a request or a close."""

    send: bytes = b""
    request: ConnectRequest | None = None
    close: bool = False
    error: str | None = None
    user: str | None = None


def encode_reply(code: Reply, bound: tuple[str, int] = ("0.0.0.0", 0)) -> bytes:
    ip = ipaddress.ip_address(bound[0])
    atyp = 1 if ip.version == 4 else 4
    return bytes([SOCKS_VERSION, int(code), 0, atyp]) + ip.packed + struct.pack("!H", bound[1])


class Socks5Server:
    """One client's negotiation. `users` (name -> password) requires RFC 1929 auth."""

    def __init__(self, users: Mapping[str, str] | None = None) -> None:
        self._users = dict(users) if users else None
        self._buf = bytearray()
        self._state = _State.GREETING
        self._pending = b""  # the answer to the message just parsed
        self.user: str | None = None

    @property
    def done(self) -> bool:
        return self._state in (_State.DONE, _State.CLOSED)

    def leftover(self) -> bytes:
        """Bytes the client sent after its request (relay them to the destination)."""
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def _fail(self, why: str, send: bytes = b"") -> Socks5Step:
        self._state = _State.CLOSED
        self._buf.clear()
        return Socks5Step(send=send, close=True, error=why)

    def receive(self, data: bytes) -> Socks5Step:
        if self._state in (_State.CLOSED, _State.DONE, _State.CONNECTING):
            if self._state is not _State.CLOSED:
                self._buf += data
                if len(self._buf) > (1 << 20) and self._state is _State.CONNECTING:
                    return self._fail("client sent too much before the reply")
            return Socks5Step()
        self._buf += data
        out = bytearray()
        while True:
            before = self._state
            step = self._advance()
            if step is not None:
                step.send = bytes(out) + step.send
                return step
            if self._state is before:
                break
            out += self._pending
            self._pending = b""
        if len(self._buf) > MAX_PREFIX:
            return self._fail("oversized SOCKS message", bytes(out))
        return Socks5Step(send=bytes(out))

    def _advance(self) -> Socks5Step | None:
        b = self._buf
        if self._state is _State.GREETING:
            if not b:
                return None
            if b[0] == 4:
                # SOCKS4/4a: "request rejected or failed" (VN=0, CD=91).
                return self._fail("SOCKS4 is not supported", bytes([0, 91]) + bytes(6))
            if b[0] != SOCKS_VERSION:
                return self._fail(f"not SOCKS5 (first byte {b[0]:#04x})")
            if len(b) < 2 or len(b) < 2 + b[1]:
                return None
            methods = set(b[2:2 + b[1]])
            del b[:2 + b[1]]
            want = METHOD_USERPASS if self._users is not None else METHOD_NONE
            if want not in methods:
                return self._fail("no acceptable authentication method",
                                  bytes([SOCKS_VERSION, METHOD_UNACCEPTABLE]))
            self._pending = bytes([SOCKS_VERSION, want])
            self._state = _State.AUTH if want == METHOD_USERPASS else _State.REQUEST
            return None
        if self._state is _State.AUTH:
            # RFC 1929: VER=1 ULEN UNAME PLEN PASSWD
            if len(b) < 2:
                return None
            if b[0] != 1:
                return self._fail("bad username/password version", bytes([1, 1]))
            ulen = b[1]
            if len(b) < 3 + ulen or len(b) < 3 + ulen + b[2 + ulen]:
                return None
            plen = b[2 + ulen]
            user = bytes(b[2:2 + ulen]).decode("utf-8", "replace")
            password = bytes(b[3 + ulen:3 + ulen + plen]).decode("utf-8", "replace")
            del b[:3 + ulen + plen]
            assert self._users is not None
            expected = self._users.get(user)

            if expected is None or not hmac.compare_digest(expected.encode(),
                                                           password.encode()):
                return self._fail(f"bad username or password for {user!r}", bytes([1, 1]))
            self.user = user
            self._pending = bytes([1, 0])
            self._state = _State.REQUEST
            return None
        if self._state is _State.REQUEST:
            if len(b) < 4:
                if b and b[0] != SOCKS_VERSION:
                    return self._fail("bad request version")
                return None
            if b[0] != SOCKS_VERSION:
                return self._fail("bad request version")
            cmd, atyp = b[1], b[3]
            if atyp == 1:
                end = 4 + 4
            elif atyp == 4:
                end = 4 + 16
            elif atyp == 3:
                if len(b) < 5:
                    return None
                end = 5 + b[4]
            else:
                return self._fail(f"address type {atyp}",
                                  encode_reply(Reply.ADDRESS_TYPE_NOT_SUPPORTED))
            if len(b) < end + 2:
                return None
            if cmd != CMD_CONNECT:
                name = {CMD_BIND: "BIND", CMD_UDP: "UDP ASSOCIATE"}.get(cmd, f"command {cmd}")
                return self._fail(f"{name} is not supported",
                                  encode_reply(Reply.COMMAND_NOT_SUPPORTED))
            if atyp == 1:
                host = str(ipaddress.IPv4Address(bytes(b[4:8])))
            elif atyp == 4:
                host = str(ipaddress.IPv6Address(bytes(b[4:20])))
            else:
                try:
                    host = bytes(b[5:end]).decode("ascii")
                except UnicodeDecodeError:
                    host = ""
                if not host:
                    return self._fail("invalid host name",
                                      encode_reply(Reply.ADDRESS_TYPE_NOT_SUPPORTED))
            (port,) = struct.unpack_from("!H", b, end)
            del b[:end + 2]
            if port == 0:
                return self._fail("port 0", encode_reply(Reply.HOST_UNREACHABLE))
            self._state = _State.CONNECTING
            return Socks5Step(request=ConnectRequest(host, port), user=self.user)
        return None

    def reply(self, status: Status, bound: tuple[str, int] = ("0.0.0.0", 0)) -> bytes:
        """The reply to send for the gateway's `status`; success moves on to relaying."""
        code = STATUS_TO_REPLY.get(status, Reply.GENERAL_FAILURE)
        self._state = _State.DONE if code is Reply.SUCCEEDED else _State.CLOSED
        return encode_reply(code, bound)

"""The converter's CONNECT request and status (SPEC §Converter), sans-I/O.

The first bytes a tunnel writes on a fresh mptcpsec stream name the destination; the
gateway answers with one status before relaying. Both are tiny, versioned and bounded, so
the gateway never buffers more than `MAX_REQUEST_LEN` bytes of an unparsed request::

    request:  VER(1)=1  CMD(1)=1 (CONNECT)  ATYP(1)  DST.ADDR  DST.PORT(2, big endian)
              ATYP 1: 4-byte IPv4 | 3: LEN(1, 1..255) then a DNS name | 4: 16-byte IPv6
    status:   VER(1)=1  STATUS(1)
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import RequestError as RequestError

VERSION = 1
CMD_CONNECT = 1
ATYP_IPV4 = 1
ATYP_DNS = 3
ATYP_IPV6 = 4
#: VER CMD ATYP LEN name(255) PORT
MAX_REQUEST_LEN = 4 + 255 + 2
STATUS_LEN = 2


class Status(enum.IntEnum):
    """The gateway's answer (SPEC §Converter, status codes)."""

    SUCCESS = 0
    GENERAL_FAILURE = 1
    NOT_ALLOWED = 2
    NETWORK_UNREACHABLE = 3
    HOST_UNREACHABLE = 4
    CONNECTION_REFUSED = 5
    TIMEOUT = 6
    DNS_FAILURE = 7
    RESOURCE_EXHAUSTED = 8
    BAD_REQUEST = 9

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", " ")


@dataclass(frozen=True)
class ConnectRequest:
    """A destination: an IP address literal or a DNS name, and a TCP port."""

    host: str
    port: int

    @property
    def is_name(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return True
        return False

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def encode_request(req: ConnectRequest) -> bytes:
    """The request's bytes; a name that is not 1..255 bytes of ASCII is a RequestError."""
    if not 0 < req.port <= 0xFFFF:
        raise RequestError(f"port {req.port} out of range")
    head = bytes([VERSION, CMD_CONNECT])
    port = struct.pack("!H", req.port)
    if req.is_name:
        try:
            name = req.host.encode("idna") if not req.host.isascii() else req.host.encode()
        except UnicodeError:
            raise RequestError(f"{req.host!r} is not a valid host name") from None
        if not 0 < len(name) <= 255:
            raise RequestError("host name must be 1..255 bytes")
        return head + bytes([ATYP_DNS, len(name)]) + name + port
    ip = ipaddress.ip_address(req.host)
    atyp = ATYP_IPV4 if ip.version == 4 else ATYP_IPV6
    return head + bytes([atyp]) + ip.packed + port


def parse_request(buf: bytes | bytearray) -> tuple[ConnectRequest, int] | None:
    """(request, bytes used) once `buf` holds a whole request; None while it is short.

    Raises RequestError as soon as the bytes cannot start a valid request, so a hostile
    client is refused after at most `MAX_REQUEST_LEN` bytes.
    """
    if len(buf) >= 1 and buf[0] != VERSION:
        raise RequestError(f"unsupported request version {buf[0]}")
    if len(buf) >= 2 and buf[1] != CMD_CONNECT:
        raise RequestError(f"unsupported command {buf[1]}")
    if len(buf) < 4:
        return None
    atyp = buf[2]
    host: Callable[[], str]
    if atyp == ATYP_IPV4:
        end = 3 + 4
        host = lambda: str(ipaddress.IPv4Address(bytes(buf[3:7])))  # noqa: E731
    elif atyp == ATYP_IPV6:
        end = 3 + 16
        host = lambda: str(ipaddress.IPv6Address(bytes(buf[3:19])))  # noqa: E731
    elif atyp == ATYP_DNS:
        n = buf[3]
        if n == 0:
            raise RequestError("empty host name")
        end = 4 + n

        def host() -> str:
            raw = bytes(buf[4:end])
            try:
                name = raw.decode("ascii")
            except UnicodeDecodeError:
                raise RequestError("host name is not ASCII") from None
            if not all(c.isalnum() or c in "-._" for c in name):
                raise RequestError(f"invalid host name {name!r}")
            return name
    else:
        raise RequestError(f"unsupported address type {atyp}")
    if len(buf) < end + 2:
        return None
    (port,) = struct.unpack_from("!H", buf, end)
    if port == 0:
        raise RequestError("port 0")
    return ConnectRequest(host(), port), end + 2


def encode_status(status: Status) -> bytes:
    return bytes([VERSION, int(status)])


def parse_status(data: bytes) -> Status:
    """The gateway's status; RequestError for a wrong version, length or unknown code."""
    if len(data) != STATUS_LEN or data[0] != VERSION:
        raise RequestError("malformed status from the gateway")
    try:
        return Status(data[1])
    except ValueError:
        raise RequestError(f"unknown status {data[1]} from the gateway") from None

"""The gateway's client credentials: a file of per-client pre-shared keys.

One client a line, ``IDENTITY KEY`` (KEY in hex, or ``base64:...``), ``#`` comments and
blank lines ignored. The identity is what the client gives as ``--psk-identity`` and what
the gateway logs and counts.
"""

from __future__ import annotations

from ..crypto.keyschedule import Secret
from ..crypto.psk import PskTable, parse_psk
from ..errors import (
    ClientsFileError as ClientsFileError,
    MptcpsecError,
)


def parse_psk_clients(text: str, source: str = "clients file") -> PskTable:
    table: dict[bytes, Secret] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ClientsFileError(f"{source}:{n}: expected IDENTITY KEY")
        name = parts[0].encode()
        if name in table:
            raise ClientsFileError(f"{source}:{n}: identity {parts[0]!r} given twice")
        try:
            table[name] = parse_psk(parts[1], f"{source}:{n}")
        except MptcpsecError as exc:
            raise ClientsFileError(str(exc)) from None
    if not table:
        raise ClientsFileError(f"{source}: no clients")
    try:
        return PskTable(table)
    except MptcpsecError as exc:
        raise ClientsFileError(f"{source}: {exc}") from None

"""Cryptography: AEAD backends (C core and reference), key schedule, key establishment.

The record layer reaches AEAD only through `get_backend()`.
"""

from .aead import (
    DEFAULT_ALLOWED_TYPES,
    IV_LEN,
    TAG_LEN,
    Algorithm,
    Backend,
    BatchOpenResult,
    FailureReason,
    OpenedRecord,
    Opener,
    RecordSpec,
    Sealer,
)
from .backend import BACKENDS, active_backend_name, get_backend

__all__ = [
    "BACKENDS",
    "DEFAULT_ALLOWED_TYPES",
    "IV_LEN",
    "TAG_LEN",
    "Algorithm",
    "Backend",
    "BatchOpenResult",
    "FailureReason",
    "OpenedRecord",
    "Opener",
    "RecordSpec",
    "Sealer",
    "active_backend_name",
    "get_backend",
]

"""Poison reasons: their names, and which reason each AEAD batch failure means (SPEC 10.4)."""

from __future__ import annotations

from ..crypto.aead import FailureReason
from ..errors import MptcpsecError, ProtocolViolation
from ..wire.options import PoisonReason

FAILURE_TO_POISON = {
    FailureReason.AUTH: PoisonReason.AUTHENTICATION,
    FailureReason.VERSION: PoisonReason.MALFORMED_RECORD,
    FailureReason.TYPE: PoisonReason.UNEXPECTED_RECORD,
    FailureReason.TOO_LARGE: PoisonReason.RECORD_TOO_LARGE,
    FailureReason.SHORT_BODY: PoisonReason.MALFORMED_RECORD,
    FailureReason.COUNTER: PoisonReason.KEY_EXHAUSTED,
    FailureReason.FAILED: PoisonReason.AUTHENTICATION,
}


def reason_name(reason: PoisonReason | int) -> str:
    """The poison reason as a short name, e.g. "authentication" (SPEC section 10.4)."""
    try:
        return PoisonReason(reason).name.lower().replace("_", "-")
    except ValueError:
        return f"reason-{int(reason)}"


def violation(reason: PoisonReason, exc: MptcpsecError) -> ProtocolViolation:
    """A codec error seen as a violation with `reason`."""
    return ProtocolViolation(reason, str(exc))

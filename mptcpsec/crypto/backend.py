"""Backend selection: `MPTCPSEC_BACKEND=c|python`, the C core by default, never a fallback."""

from __future__ import annotations

import os

from ..errors import BackendUnavailableError
from .aead import Backend

ENV_VAR = "MPTCPSEC_BACKEND"
BACKENDS = ("c", "python")
_cache: dict[str, Backend] = {}


def get_backend(name: str | None = None) -> Backend:
    """The named backend, or the one `MPTCPSEC_BACKEND` selects (default: the C core).

    A missing or broken C build raises BackendUnavailableError naming the fix; it is
    never replaced by the reference backend behind the caller's back.
    """
    chosen = (name or os.environ.get(ENV_VAR) or "c").strip().lower()
    if chosen not in BACKENDS:
        raise BackendUnavailableError(
            f"unknown crypto backend {chosen!r} (from {'argument' if name else ENV_VAR}); "
            f"choose one of: {', '.join(BACKENDS)}")
    backend = _cache.get(chosen)
    if backend is None:
        if chosen == "c":
            from .backend_c import CoreBackend

            backend = CoreBackend()
        else:
            from .backend_python import ReferenceBackend

            backend = ReferenceBackend()
        _cache[chosen] = backend
    return backend


def active_backend_name() -> str:
    """Name of the backend `get_backend()` returns now ('c' or 'python')."""
    return get_backend().name

"""Backend selection: the C core by default, never a fallback.

Which backend ``get_backend()`` picks when none is named comes from a *default source*
the embedding application installs (``set_default_source``); this module reads no
environment itself. The ``mptcpsec`` package installs one that reads
``MPTCPSEC_BACKEND=c|python`` (``mptcpsec/environment.py``).
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import BackendUnavailableError
from .aead import Backend

ENV_VAR = "MPTCPSEC_BACKEND"
BACKENDS = ("c", "python")
_cache: dict[str, Backend] = {}
#: Name of the backend to use when the caller names none (None: the C core), and what to
#: call it in an error message.
def _no_default() -> str | None:
    return None


_default_source: Callable[[], str | None] = _no_default
_default_label = "default"


def set_default_source(source: Callable[[], str | None], label: str) -> None:
    """Where ``get_backend()`` learns the backend when none is named (``label`` names the
    source in error messages, e.g. the environment variable)."""
    global _default_source, _default_label
    _default_source, _default_label = source, label


def get_backend(name: str | None = None) -> Backend:
    """The named backend, or the one the default source selects (else the C core).

    A missing or broken C build raises BackendUnavailableError naming the fix; it is
    never replaced by the reference backend behind the caller's back.
    """
    chosen = (name or _default_source() or "c").strip().lower()
    if chosen not in BACKENDS:
        raise BackendUnavailableError(
            f"unknown crypto backend {chosen!r} (from {'argument' if name else _default_label}); "
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

"""Every environment variable the package reads, in one place outside the sans-I/O core.

``protocol/``, ``crypto/`` and ``wire/`` read no environment: they are configured by
their callers. Importing ``mptcpsec`` installs the one default that the core asks its
embedder for, the crypto backend (``MPTCPSEC_BACKEND``); ``SSLKEYLOGFILE`` is opened by
``mptcpsec.aio.keylog`` and ``MPTCPSEC_PSK`` read by ``mptcpsec.aio.stores``.
"""

from __future__ import annotations

import os

from .crypto import backend

#: ``c`` (the C core, the default) or ``python`` (the reference backend).
BACKEND_VAR = backend.ENV_VAR


def backend_from_environment() -> str | None:
    """The backend named by ``$MPTCPSEC_BACKEND`` at the time of the call, if any."""
    return os.environ.get(BACKEND_VAR) or None


def install() -> None:
    """Make ``get_backend()`` honour ``$MPTCPSEC_BACKEND`` (done on ``import mptcpsec``)."""
    backend.set_default_source(backend_from_environment, BACKEND_VAR)

from __future__ import annotations

import pytest

from mptcpsec.crypto import BACKENDS, Backend, get_backend


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each test runs against the C core and the reference backend."""
    return get_backend(request.param)

"""Hostile input to the sans-I/O key exchanges: typed errors only, never an exception."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from mptcpsec.crypto.keyschedule import Role, Secret
from mptcpsec.crypto.kx import Step
from mptcpsec.crypto.psk import PskConfig, PskKeyExchange
from mptcpsec.crypto.splitpath import SplitPathClient, SplitPathConfig, SplitPathServer
from mptcpsec.errors import KeyExchangeError

messages = st.lists(st.tuples(st.integers(min_value=-1, max_value=3),
                              st.binary(min_size=0, max_size=300)), min_size=1, max_size=6)


def make(kind: str) -> object:
    key = Secret(bytes(range(32)))
    return {
        "sp-client": lambda: SplitPathClient(SplitPathConfig(Role.CLIENT)),
        "sp-server": lambda: SplitPathServer(SplitPathConfig(Role.SERVER)),
        "psk-client": lambda: PskKeyExchange(PskConfig(Role.CLIENT, key)),
        "psk-server": lambda: PskKeyExchange(PskConfig(Role.SERVER, key)),
    }[kind]()


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(["sp-client", "sp-server", "psk-client", "psk-server"]),
       msgs=messages)
def test_random_messages_give_typed_errors(kind: str, msgs: list[tuple[int, bytes]]) -> None:
    kx = make(kind)
    kx.start()  # type: ignore[attr-defined]
    for path, msg in msgs:
        step = kx.receive(path, msg)  # type: ignore[attr-defined]
        assert isinstance(step, Step)
        assert step.result is None  # random bytes never complete an exchange
        if step.error is not None:
            assert isinstance(step.error, KeyExchangeError)
            assert kx.done  # type: ignore[attr-defined]
    kx.close()  # type: ignore[attr-defined]


@settings(max_examples=100, deadline=None)
@given(prefix=st.sampled_from([0x11, 0x12, 0x13, 0x21, 0x22, 0x31, 0x32, 0x33, 0x7F]),
       body=st.binary(max_size=260))
def test_plausible_headers_give_typed_errors(prefix: int, body: bytes) -> None:
    for kind in ("sp-client", "sp-server", "psk-client", "psk-server"):
        kx = make(kind)
        kx.start()  # type: ignore[attr-defined]
        for path in (0, 1):
            step = kx.receive(path, bytes([prefix, 1]) + body)  # type: ignore[attr-defined]
            assert step.result is None
            assert step.error is None or isinstance(step.error, KeyExchangeError)

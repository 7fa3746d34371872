"""Hypothesis strategies for every MPTCP option and record, shared by the wire tests.

With ``--import-mode=importlib`` test modules cannot import each other, so the
strategies are handed out by session fixtures (draw them with ``st.data()``).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import strategies as st

from mptcpsec.wire.header import RecordType
from mptcpsec.wire.options import (
    AddAddr,
    Dss,
    MpCapable,
    MpFail,
    MpFastclose,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    MpPrio,
    MpsSubflow,
    MpsWindow,
    MptcpOption,
    MpTcpRst,
    RemoveAddr,
)
from mptcpsec.wire.records import Record


def u(bits: int) -> st.SearchStrategy[int]:
    return st.integers(0, (1 << bits) - 1)


@st.composite
def mp_capable(draw: st.DrawFn) -> MpCapable:
    n = draw(st.integers(0, 4))  # how many of the optional fields are present
    vals = [draw(u(64)), draw(u(64)), draw(u(16)), draw(u(16))]
    present = [v if i < n else None for i, v in enumerate(vals)]
    return MpCapable(version=draw(u(4)), checksum_required=draw(st.booleans()),
                     extensibility=draw(st.booleans()), no_new_subflows=draw(st.booleans()),
                     hmac_sha256=draw(st.booleans()), reserved=draw(u(4)),
                     sender_key=present[0], receiver_key=present[1], data_len=present[2],
                     checksum=present[3])


@st.composite
def dss(draw: st.DrawFn) -> Dss:
    ack_wide = draw(st.booleans())
    dsn_wide = draw(st.booleans())
    data_ack = draw(st.none() | u(64 if ack_wide else 32))
    mapping = draw(st.booleans())
    if not mapping:
        return Dss(data_ack=data_ack, data_ack_wide=ack_wide, reserved=draw(u(7)))
    return Dss(data_ack=data_ack, data_ack_wide=ack_wide, dsn=draw(u(64 if dsn_wide else 32)),
               dsn_wide=dsn_wide, ssn=draw(u(32)), data_len=draw(u(16)),
               checksum=draw(st.none() | u(16)), data_fin=draw(st.booleans()),
               reserved=draw(u(7)))


@st.composite
def add_addr(draw: st.DrawFn) -> AddAddr:
    v6 = draw(st.booleans())
    address = IPv6Address(draw(u(128))) if v6 else IPv4Address(draw(u(32)))
    echo = draw(st.booleans())
    return AddAddr(address_id=draw(u(8)), address=address, port=draw(st.none() | u(16)),
                   hmac=None if echo else draw(st.binary(min_size=8, max_size=8)), echo=echo,
                   reserved=draw(u(3)))


OPTIONS: st.SearchStrategy[MptcpOption] = st.one_of(
    mp_capable(),
    st.builds(MpJoinSyn, address_id=u(8), token=u(32), nonce=u(32), backup=st.booleans(),
              reserved=u(3)),
    st.builds(MpJoinSynAck, address_id=u(8), hmac=st.binary(min_size=8, max_size=8),
              nonce=u(32), backup=st.booleans(), reserved=u(3)),
    st.builds(MpJoinAck, hmac=st.binary(min_size=20, max_size=20), reserved=u(12)),
    dss(),
    add_addr(),
    st.builds(RemoveAddr, address_ids=st.lists(u(8), min_size=1, max_size=40).map(tuple),
              reserved=u(4)),
    st.builds(MpPrio, backup=st.booleans(), reserved=u(3)),
    st.builds(MpFail, dsn=u(64), reserved=u(12)),
    st.builds(MpFastclose, receiver_key=u(64), reserved=u(12)),
    st.builds(MpTcpRst, reason=u(8), transient=st.booleans(), reserved=u(3)),
    st.builds(MpsSubflow, subflow_id=u(32), reason=u(8)),
    st.builds(MpsWindow, edge=u(64), reserved=u(8)),
)

RECORDS: st.SearchStrategy[Record] = st.builds(
    Record,
    type=st.sampled_from(list(RecordType)).map(int),
    flags=u(8),
    options=st.binary(max_size=255),
    body=st.binary(max_size=2048),
)


@pytest.fixture(scope="session")
def option_st() -> st.SearchStrategy[MptcpOption]:
    return OPTIONS


@pytest.fixture(scope="session")
def record_st() -> st.SearchStrategy[Record]:
    return RECORDS

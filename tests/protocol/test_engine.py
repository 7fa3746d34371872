"""The engine without sockets: joins, 0-RTT data, replay, flow control, timers, signals."""

from __future__ import annotations

import os

import pytest

from mptcpsec.crypto.keyschedule import Role, Secret
from mptcpsec.crypto.psk import PskConfig
from mptcpsec.protocol.config import ConfigError, ConnectionConfig
from mptcpsec.protocol.connection import ConnectionState, OpenSubflow
from mptcpsec.protocol.endpoint import Rejected
from mptcpsec.protocol.events import RefusalReason

from .loopback import Loopback


def psk_config(**kw) -> ConnectionConfig:
    cfg = ConnectionConfig(key_exchange="psk", **kw)
    cfg.psk = PskConfig(Role.CLIENT, Secret(b"\x17" * 32))
    return cfg


def established(cfg: ConnectionConfig | None = None) -> Loopback:
    lb = Loopback(cfg or psk_config())
    lb.open(1)
    lb.pump()
    assert lb.client.established and lb.server is not None and lb.server.established
    return lb


def test_split_path_handshake_needs_both_paths_and_completes() -> None:
    lb = Loopback(ConnectionConfig(key_exchange="split-path"))
    lb.open(1)
    lb.pump()
    assert not lb.client.established  # waits for its second path
    lb.open(2)
    lb.pump()
    assert lb.client.established and lb.server.established
    assert [e.kind for e in lb.client_events].count("subflow_established") == 2


def test_zero_rtt_join_delivers_its_data_before_the_join_completes() -> None:
    lb = established()
    lb.client.update_path(0, send_space=0)  # the first path is full: data must use the join
    sid = lb.open(2)
    lb.client.send(b"early bytes")
    # Route only the client's first flight: JOIN SYN plus the early-key DATA record.
    for s, data in lb.client.data_to_send(lb.now):
        lb.deliver_raw(lb.links[s], data)
    assert lb.server.read() == b"early bytes"
    assert lb.server.early_data_received == len(b"early bytes")
    lb.pump()
    kinds = [e.kind for e in lb.server_events]
    assert "subflow_established" in kinds
    assert lb.client.subflows[sid].state.value == "established"


def test_replayed_join_is_refused() -> None:
    lb = established()
    sid = lb.open(2)
    lb.pump()
    assert lb.server.subflows[1].state.value == "established"
    recorded = b"".join(lb.links[sid].c2s)
    # An attacker replays the client's join flight on a new TCP connection.
    handle = object()
    lb.endpoint.accept(handle, ("127.0.0.2", 7000), ("127.0.0.9", 50000), lb.now)
    r = lb.endpoint.receive(handle, recorded, lb.now)
    assert isinstance(r, Rejected)
    assert r.code in (RefusalReason.SUBFLOW_ID_IN_USE, RefusalReason.REPLAYED_NONCE)
    assert lb.endpoint.refused and lb.server.subflows[1].state.value == "established"


def test_replayed_join_nonce_on_a_fresh_subflow_id_is_refused() -> None:
    lb = established()
    sid = lb.open(2)
    lb.pump()
    first = lb.links[sid].c2s[0]
    # Same JOIN (same client nonce), but claiming an unused subflow id 7.
    from mptcpsec.wire.header import HEADER_LEN
    from mptcpsec.wire.options import MpJoinSyn, decode_options
    from mptcpsec.wire.records import join_record

    opt_len = first[3]
    syn = decode_options(first[HEADER_LEN:HEADER_LEN + opt_len])[0]
    assert isinstance(syn, MpJoinSyn)
    body = first[HEADER_LEN + opt_len:HEADER_LEN + opt_len + 32]
    handle = object()
    lb.endpoint.accept(handle, ("127.0.0.2", 7000), ("127.0.0.2", 50001), lb.now)
    r = lb.endpoint.receive(handle, join_record(syn, 7, body), lb.now)
    assert isinstance(r, Rejected) and r.code is RefusalReason.REPLAYED_NONCE


def test_join_with_wrong_token_or_forged_mac_is_refused() -> None:
    lb = established()
    from mptcpsec.wire.options import MpJoinSyn
    from mptcpsec.wire.records import join_record

    handle = object()
    lb.endpoint.accept(handle, ("127.0.0.2", 7000), ("127.0.0.2", 50002), lb.now)
    nonce = os.urandom(32)
    syn = MpJoinSyn(address_id=0, token=0x12345678, nonce=int.from_bytes(nonce[:4], "big"))
    r = lb.endpoint.receive(handle, join_record(syn, 3, nonce), lb.now)
    assert isinstance(r, Rejected) and r.code is RefusalReason.UNKNOWN_TOKEN


def test_receive_window_bounds_what_a_fast_sender_puts_in_flight() -> None:
    cfg = psk_config(receive_window=256 * 1024, send_buffer=1 << 30)
    lb = established(cfg)
    lb.client.send(os.urandom(4 * 1024 * 1024))
    lb.pump()
    # Nobody reads at the server: it buffers at most its window, the rest waits at the client.
    assert lb.server.recvbuf.buffered <= 256 * 1024
    assert lb.client.sendbuf.next_dsn - lb.client.sendbuf.base <= 256 * 1024
    got = bytearray()
    for _ in range(200):
        got += lb.server.read()
        lb.pump()
        if len(got) == 4 * 1024 * 1024:
            break
    assert len(got) == 4 * 1024 * 1024


def test_handshake_timeout_fails_with_a_clear_error() -> None:
    lb = Loopback(psk_config(handshake_timeout=2.0))
    lb.open(1)
    lb.client.data_to_send(lb.now)  # the server never answers
    assert lb.client.get_timer() == pytest.approx(2.0)
    lb.client.handle_timer(2.0)
    assert lb.client.state is ConnectionState.FAILED
    assert "did not finish within 2 s" in lb.client.error


def test_server_announces_addresses_and_client_is_asked_to_join() -> None:
    cfg = psk_config(announce=[("127.0.0.3", 7000), ("::1", 7001)])
    lb = established(cfg)
    cmds = lb.open_requests
    assert OpenSubflow(("127.0.0.3", 7000), None, False, 1) in cmds
    assert OpenSubflow(("::1", 7001), None, False, 2) in cmds
    kinds = [e.kind for e in lb.client_events]
    assert kinds.count("address_announced") == 2
    lb.server.withdraw_address(1)
    lb.pump()
    removed = [e for e in lb.client_events if e.kind == "address_announced" and e.removed]
    assert [e.address_id for e in removed] == [1]


def test_no_join_ignores_announcements() -> None:
    cfg = psk_config(announce=[("127.0.0.3", 7000)], join_announced=False)
    lb = established(cfg)
    assert lb.open_requests == []
    assert [e.kind for e in lb.client_events].count("address_announced") == 1


def test_fastclose_aborts_the_peer() -> None:
    lb = established()
    lb.client.abort("test over")
    lb.pump()
    assert lb.client.state is ConnectionState.FAILED
    assert lb.server.state is ConnectionState.FAILED
    assert "MP_FASTCLOSE" in lb.server.error


def test_clean_close_both_ways_wipes_keys() -> None:
    lb = established()
    lb.client.send(b"ping")
    lb.client.close()
    lb.pump()
    assert lb.server.read() == b"ping"
    lb.server.read()
    lb.server.send(b"pong")
    lb.server.close()
    lb.pump()
    assert lb.client.read() == b"pong"
    lb.client.read()
    lb.pump()
    assert lb.client.state is ConnectionState.CLOSED and lb.server.state is ConnectionState.CLOSED
    assert lb.client.kx_result.connection_secret.wiped
    assert all(s.sealer is None and s.opener is None for s in lb.client.subflows.values())


def test_config_errors_are_typed() -> None:
    for bad in (dict(mode="quic"), dict(key_exchange="dh"), dict(max_record=0),
                dict(receive_window=10), dict(rejoin_poisoned="sometimes")):
        with pytest.raises(ConfigError):
            ConnectionConfig(**bad).validate()


def test_path_manager_by_name() -> None:
    cfg = psk_config(announce=[("127.0.0.3", 7000)], path_manager="configured")
    lb = established(cfg)
    assert lb.open_requests == [] and lb.client.path_manager.name == "configured"
    with pytest.raises(ConfigError, match="choose one of"):
        psk_config(path_manager="random").validate()


def _poison_first_data_on(lb: Loopback, sid: int) -> None:
    """Flip a ciphertext bit of the next record the client sends on subflow `sid`."""
    for s, data in lb.client.data_to_send(lb.now):
        if s == sid:
            data = bytearray(data)
            data[-3] ^= 0x10
            data = bytes(data)
        lb.deliver_raw(lb.links[s], data)
    lb.pump()


@pytest.mark.parametrize("policy", ["never", "allow"])
def test_poisoned_address_pair_rejoin_policy(policy: str) -> None:
    lb = established(psk_config(rejoin_poisoned=policy, scheduler="round-robin"))
    sid = lb.open(2)
    lb.pump()
    lb.client.update_path(0, send_space=0)  # force the next data onto subflow 2
    lb.client.send(b"x" * 1000)
    _poison_first_data_on(lb, sid)
    poisoned = [e for e in lb.server_events if e.kind == "subflow_poisoned"]
    assert poisoned and poisoned[0].reason == "authentication"
    assert lb.client.subflows[sid].state.value == "poisoned"
    assert lb.server.read() == b"x" * 1000  # re-injected on subflow 0, delivered once
    if policy == "never":
        with pytest.raises(Exception, match="poisoned on this connection"):
            lb.open(2)
    else:
        again = lb.open(2)
        lb.pump()
        assert lb.client.subflows[again].state.value == "established"


def test_join_mac_binds_the_backup_flag_and_address_id() -> None:
    from mptcpsec.wire.header import HEADER_LEN
    from mptcpsec.wire.options import MpJoinSyn, decode_options, encode_options

    lb = established()
    sid = lb.open(2)
    out = dict(lb.client.data_to_send(lb.now))
    syn_record = bytearray(out[sid])
    opt_len = syn_record[3]
    opts = decode_options(bytes(syn_record[HEADER_LEN:HEADER_LEN + opt_len]))
    assert isinstance(opts[0], MpJoinSyn) and not opts[0].backup
    from dataclasses import replace

    forged = encode_options([replace(opts[0], backup=True), *opts[1:]])  # attacker demotes it
    syn_record[HEADER_LEN:HEADER_LEN + opt_len] = forged
    lb.deliver_raw(lb.links[sid], bytes(syn_record))
    lb.pump()
    client_sub = lb.client.subflows[sid]
    assert client_sub.state.value == "poisoned" and "join" in client_sub.reason
    assert lb.server.subflows.get(1) is None or lb.server.subflows[1].state.value != "established"


def test_a_failed_join_does_not_lock_the_pair_out() -> None:
    lb = established()
    sid = lb.open(2)
    out = dict(lb.client.data_to_send(lb.now))
    bad = bytearray(out[sid])
    bad[-1] ^= 0x01  # corrupt the client nonce: the join cannot complete
    lb.deliver_raw(lb.links[sid], bytes(bad))
    lb.pump()
    assert lb.client.subflows[sid].state.value in ("poisoned", "failed")
    again = lb.open(2)  # the same address pair joins fine afterwards
    lb.pump()
    assert lb.client.subflows[again].state.value == "established"


def test_engine_measures_each_paths_round_trip() -> None:
    """The RTT the scheduler uses covers the whole path, not just the first TCP hop."""
    lb = established(psk_config(scheduler="round-robin"))
    sid = lb.open(2)
    lb.pump()
    lb.client.update_path(0, rtt=0.0001)  # kernel RTTs: both tiny (say, relays ACK at once)
    lb.client.update_path(sid, rtt=0.0001)
    for _ in range(6):
        lb.client.send(b"a" * 100_000)
        out = lb.client.data_to_send(lb.now)
        # Path 0 answers after 2 ms, path 2 after 40 ms.
        for s, data in out:
            lb.links[s].c2s.append(data)
        lb.now += 0.002
        for s, data in out:
            if s == 0:
                lb.deliver_raw(lb.links[s], data)
        lb.pump(hold={sid})
        lb.now += 0.038
        for s, data in out:
            if s == sid:
                lb.deliver_raw(lb.links[s], data)
        lb.pump()
        lb.now += 0.01
    fast, slow = lb.client.subflows[0], lb.client.subflows[sid]
    assert fast.srtt is not None and slow.srtt is not None
    assert slow.rtt > 5 * fast.rtt
    assert slow.stats()["rtt_ms"] > 10


def test_full_pending_table_evicts_the_oldest_silent_socket() -> None:
    from mptcpsec.protocol.endpoint import ServerEndpoint

    ep = ServerEndpoint(psk_config(), max_pending=3)
    for i in range(3):
        assert ep.accept(f"silent{i}", ("127.0.0.1", 7000), ("127.0.0.9", 1000 + i), float(i))
    assert ep.pop_evicted() == []
    assert ep.accept("fresh", ("127.0.0.1", 7000), ("127.0.0.1", 2000), 3.0)
    assert ep.pop_evicted() == ["silent0"]  # the oldest made room; the table stays bounded
    assert len(ep._pending) == 3


def test_ended_subflows_are_forgotten_beyond_a_bound() -> None:
    from mptcpsec.protocol.connection import MAX_ENDED_SUBFLOWS

    lb = established(psk_config(max_subflows=64))
    for _ in range(MAX_ENDED_SUBFLOWS + 10):  # a path that keeps failing and coming back
        sid = lb.open(2)
        lb.pump()
        assert lb.client.subflows[sid].state.value == "established"
        lb.client.transport_closed(sid, lb.now, reset=True)
        lb.links[sid].closed = True
        lb.pump()
    ended = [s for s in lb.client.subflows.values() if s.state.ended]
    assert len(ended) <= MAX_ENDED_SUBFLOWS
    assert lb.client.subflows[0].state.value == "established"
    lb.client.send(b"still fine")
    lb.pump()
    assert lb.server.read() == b"still fine"

"""Engine bugs the adversarial suite found, each pinned by the smallest reproduction.

The tamper matrix covers the rest (a lost DATA_FIN, a join that times out last, acks on a
path that swallows records, DATA after our CLOSE, HANDSHAKE option rules, SYN/ACK nonce).
"""

from __future__ import annotations

from mptcpsec.crypto.keyschedule import Role, Secret
from mptcpsec.crypto.psk import PskConfig
from mptcpsec.protocol.config import ConnectionConfig

from ..protocol.loopback import Loopback


def psk(**kw) -> ConnectionConfig:
    return ConnectionConfig(key_exchange="psk", psk=PskConfig(Role.CLIENT, Secret(b"\x17" * 32)),
                            **kw)


def test_a_write_after_a_long_idle_period_does_not_fail_the_path() -> None:
    lb = Loopback(psk(subflow_timeout=5.0))
    lb.open(1)
    lb.pump()
    lb.now += 40  # idle for much longer than the progress timeout
    lb.client.send(b"x" * 5000)
    flight = lb.client.data_to_send(lb.now)  # in flight, not yet acknowledged
    lb.client.handle_timer(lb.now + 0.001)
    assert lb.client.established, lb.client.error
    for sid, data in flight:
        lb.deliver_raw(lb.links[sid], data)
    lb.pump()
    assert lb.server.read() == b"x" * 5000


def test_zero_rtt_join_data_past_the_key_update_limit_is_accepted() -> None:
    lb = Loopback(psk(key_update_records=4, max_record=1024))
    lb.open(1)
    lb.pump()
    lb.client.update_path(0, send_space=0)  # the first path is full: data uses the join
    lb.open(2)
    lb.client.send(bytes(range(256)) * 64)  # 16 records under the early keys
    for sid, data in lb.client.data_to_send(lb.now):
        lb.deliver_raw(lb.links[sid], data)  # the whole 0-RTT flight before the SYN/ACK
    assert lb.server.read() == bytes(range(256)) * 64
    lb.pump()
    assert not [e for e in lb.server_events if e.kind == "subflow_poisoned"]
    assert lb.client.subflows[1].state.value == "established"

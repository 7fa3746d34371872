"""Connection configuration: one dataclass, validated once, shared by engine and adapter."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..crypto.aead import Algorithm
from ..crypto.psk import PskConfig
from ..crypto.splitpath import SplitPathConfig
from ..crypto.tls_keys import TlsConfig
from ..errors import ConfigError
from ..wire.header import DEFAULT_MAX_PLAINTEXT, MAX_PLAINTEXT

MODES = ("mptcpsec", "plain", "tls-over-plain")
KEY_EXCHANGES = ("tls", "split-path", "psk")
REJOIN_POLICIES = ("never", "allow")

__all__ = ["KEY_EXCHANGES", "MODES", "REJOIN_POLICIES", "ConfigError", "ConnectionConfig"]


@dataclass
class ConnectionConfig:
    """Everything an endpoint needs; the key-exchange configs carry role-specific parts.

    `tls`, `split_path` and `psk` hold the settings of the chosen key exchange; the engine
    builds the exchange with the right role from them.
    """

    mode: str = "mptcpsec"
    key_exchange: str = "split-path"
    algorithm: Algorithm = Algorithm.AES_128_GCM
    tls: TlsConfig | None = None
    split_path: SplitPathConfig | None = None
    psk: PskConfig | None = None
    #: Largest plaintext per record we send, and the largest body we accept.
    max_record: int = DEFAULT_MAX_PLAINTEXT
    #: Bytes we buffer for the application beyond what it has read (flow control).
    receive_window: int = 4 * 1024 * 1024
    #: Unacknowledged bytes the writer may have outstanding before drain() waits.
    send_buffer: int = 4 * 1024 * 1024
    scheduler: str = "lowest-rtt"
    #: Whether an address pair whose subflow was poisoned may join this connection again.
    rejoin_poisoned: str = "never"
    #: Records per key before a key update (None: half the algorithm's safe limit).
    key_update_records: int | None = None
    max_subflows: int = 8
    #: Failed join attempts (bad MAC, replayed or malformed) a connection tolerates before
    #: refusing every further join.
    max_join_attempts: int = 64
    handshake_timeout: float = 10.0
    #: Seconds without any progress on a subflow holding unacknowledged data: path failure.
    subflow_timeout: float = 30.0
    #: Addresses the server announces with ADD_ADDR: (host, port) pairs.
    announce: list[tuple[str, int]] = field(default_factory=list)
    #: Client: open subflows to announced addresses (full mesh over local addresses).
    #: False selects the "configured" path manager: exactly the paths given are used.
    join_announced: bool = True
    #: Path manager by name (protocol/pathmanager.py); None: from join_announced.
    path_manager: str | None = None
    #: Delayed acknowledgement: ack at least every this many bytes, or after ack_delay.
    ack_every: int = 64 * 1024
    ack_delay: float = 0.005
    #: Bytes the engine seals per scheduling decision.
    batch_bytes: int = 256 * 1024

    def validate(self) -> None:
        """Raise ConfigError for a field that cannot work (SPEC section 8 limits)."""
        if self.mode not in MODES:
            raise ConfigError(f"mode {self.mode!r}: choose one of {', '.join(MODES)}")
        if self.key_exchange not in KEY_EXCHANGES:
            raise ConfigError(f"key exchange {self.key_exchange!r}: choose one of "
                              f"{', '.join(KEY_EXCHANGES)}")
        self.algorithm = Algorithm.parse(self.algorithm)
        if not 1 <= self.max_record <= MAX_PLAINTEXT:
            raise ConfigError(f"max_record {self.max_record}: must be 1..{MAX_PLAINTEXT}")
        if self.receive_window < self.max_record:
            raise ConfigError("receive_window must hold at least one maximum record")
        if self.send_buffer < 1:
            raise ConfigError("send_buffer must be positive")
        if self.rejoin_poisoned not in REJOIN_POLICIES:
            raise ConfigError(f"rejoin_poisoned {self.rejoin_poisoned!r}: choose one of "
                              f"{', '.join(REJOIN_POLICIES)}")
        if self.key_update_records is not None and self.key_update_records < 1:
            raise ConfigError("key_update_records must be positive")
        from .pathmanager import PATH_MANAGERS

        if self.path_manager is not None and self.path_manager not in PATH_MANAGERS:
            raise ConfigError(f"path manager {self.path_manager!r}: choose one of "
                              f"{', '.join(PATH_MANAGERS)}")
        if self.max_subflows < 1 or self.max_join_attempts < 1:
            raise ConfigError("max_subflows and max_join_attempts must be positive")

    @property
    def path_manager_name(self) -> str:
        """The path manager to use by name (SPEC section 10.6)."""
        if self.path_manager is not None:
            return self.path_manager
        return "fullmesh" if self.join_announced else "configured"

    @property
    def update_after(self) -> int:
        """Records per key before a key update (SPEC sections 6.2, 10.3)."""
        if self.key_update_records is not None:
            return self.key_update_records
        return self.algorithm.safe_record_limit // 2

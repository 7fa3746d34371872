"""Names of the packet-level attacks (no scapy import: the CLI lists them cheaply)."""

GENERIC = ("bitflip", "inject", "replay", "drop", "rst")
MPTCP_AWARE = ("add-addr", "remove-addr", "mp-prio", "mp-fastclose", "mp-tcprst",
               "data-fin", "strip-mpc")
ATTACKS = GENERIC + MPTCP_AWARE

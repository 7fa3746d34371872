"""The converter: ordinary TCP connections in (SOCKS5, forwards, transparent redirect,
stdio), over mptcpsec, out at a gateway towards the real destination (SPEC §Converter)."""

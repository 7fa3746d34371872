"""The asyncio adapter: sockets, timers and files around the sans-I/O engine.

- ``api``: ``connect``, ``serve``, the ``MptcpsecStream`` an application reads and writes.
- ``driver``: moves one connection's bytes between the engine and its TCP sockets.
- ``kx``: one key exchange alone over sockets (tests, experiments).
- ``keylog``: key log files (``SSLKEYLOGFILE``), papers/SPEC.md section 7.5.
- ``stores``: the known_hosts file (section 7.3) and PSK files or variables (section 7.4).
- ``capture``: pcap and records-trace files (section 9).
"""

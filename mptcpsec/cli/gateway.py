"""`mptcpsec gateway`: the converter's exit (SPEC §Converter): authenticated mptcpsec
connections in, plain TCP to allowed destinations out."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from pathlib import Path

from ._common import (
    CliError,
    add_connection_args,
    address,
    build_config,
    key_log_from_args,
    resolve_key_exchange,
    run_async,
)

EPILOG = """\
examples:
  # clients.psk: one "IDENTITY HEXKEY" a line (e.g. `echo "laptop $(openssl rand -hex 32)"`)
  mptcpsec gateway -l 127.0.0.1:7000 -l 127.0.0.2:7000 -k psk --psk-clients clients.psk \\
                   --allow 127.0.0.0/8:80,443 --allow 192.0.2.0/24
  # tls with client certificates signed by clients-ca.pem:
  mptcpsec gateway -l 127.0.0.1:7000 -k tls --cert gw.pem --key gw.key --client-cert \\
                   --cafile clients-ca.pem --allow 0.0.0.0/0:443

  # split-path: clients.keys lists "NAME ed25519 HEXKEY" (what the tunnel prints)
  mptcpsec gateway -l 127.0.0.1:7000 -l 127.0.0.2:7000 --allowed-clients clients.keys \
                   --identity gw.id --allow 192.0.2.0/24

The gateway is never an open proxy: it refuses to start without a key exchange that
authenticates clients (psk with --psk-clients, tls with --client-cert, or split-path with
--allowed-clients) and without at least one --allow. Rules are CIDR[:PORTS]
([CIDR]:PORTS for IPv6; PORTS like 80,443 or 1000-2000); names are resolved first and
only allowed addresses are connected to.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gateway", help="the converter's exit: relay authenticated tunnel connections",
        description="Accept mptcpsec connections from `mptcpsec tunnel`, read each one's "
        "CONNECT request, connect with plain TCP to the destination if an --allow rule "
        "lets it through, and relay both ways with half-close.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", "-l", action="append", required=True, metavar="HOST:PORT",
                   type=address, help="an address to listen on (repeat for each path)")
    p.add_argument("--allow", action="append", default=[], metavar="CIDR[:PORTS]",
                   help="destinations clients may reach (repeat; at least one)")
    p.add_argument("--psk-clients", metavar="FILE",
                   help="psk: one client a line, IDENTITY KEY (hex or base64:...)")
    p.add_argument("--allowed-clients", metavar="FILE",
                   help="split-path: the clients allowed in, one 'NAME ed25519 HEXKEY' a line "
                   "(the key `mptcpsec tunnel --client-identity` prints)")
    p.add_argument("--max-connections", type=int, default=1024, metavar="N",
                   help="connections relayed at once (default: %(default)s)")
    p.add_argument("--max-per-client", type=int, default=256, metavar="N",
                   help="connections at once per client identity (default: %(default)s)")
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="S",
                   help="TCP connect to a destination (default: %(default)s)")
    p.add_argument("--idle-timeout", type=float, default=300.0, metavar="S",
                   help="close a relay with no byte either way for this long "
                   "(default: %(default)s)")
    p.add_argument("--request-timeout", type=float, default=60.0, metavar="S",
                   help="time for the CONNECT request after the key exchange; a tunnel's "
                   "pooled connections wait this long at most (default: %(default)s)")
    p.add_argument("--announce", action="append", default=[], metavar="HOST:PORT",
                   type=address, help="announce this address to clients (ADD_ADDR)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON summary (totals, refusals by reason) on exit")
    p.add_argument("--quiet", "-q", action="store_true", help="no log lines on stderr")
    p.add_argument("--no-live", action="store_true",
                   help="plain log lines even on a terminal")
    add_connection_args(p, "server")
    p.set_defaults(func=_run)


def _config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    if args.mode != "mptcpsec":
        raise CliError("a gateway runs --mode mptcpsec only")
    kx = resolve_key_exchange(args)
    if kx == "psk":
        from ..crypto.keyschedule import Role
        from ..crypto.psk import PskConfig
        from ..protocol.config import ConnectionConfig
        from ..tunnel.clients import parse_psk_clients

        if not args.psk_clients:
            raise CliError("gateway -k psk: give --psk-clients FILE (one IDENTITY KEY a "
                           "line), so that each client is known by its identity")
        try:
            text = Path(args.psk_clients).read_text(encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot read {args.psk_clients!r}: {exc.strerror}") from None
        table = parse_psk_clients(text, args.psk_clients)
        from ..crypto.aead import Algorithm

        cfg = ConnectionConfig(mode="mptcpsec", key_exchange="psk",
                               algorithm=Algorithm(args.algorithm), scheduler=args.scheduler)
        cfg.psk = PskConfig(Role.SERVER, table, b"", key_log_from_args(args))
        cfg.validate()
        return cfg, {"clients": len(table.identities)}
    if kx == "tls":
        if not args.client_cert:
            raise CliError("gateway -k tls: give --client-cert with --cafile (or --pin), so "
                           "that only clients with a certificate get in")
        return build_config(args, "server")
    if kx == "split-path":
        if not args.allowed_clients:
            raise CliError("gateway -k split-path: give --allowed-clients FILE (one 'NAME "
                           "ed25519 HEXKEY' a line), so that only known clients get in")
        from ..crypto.known_hosts import parse_known_hosts
        from ..errors import MptcpsecError

        try:
            text = Path(args.allowed_clients).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            raise CliError(f"cannot read {args.allowed_clients!r}") from None
        try:
            names = parse_known_hosts(text)
        except MptcpsecError as exc:
            raise CliError(f"{args.allowed_clients}: {exc}") from None
        if not names:
            raise CliError(f"{args.allowed_clients}: no clients")
        cfg, info = build_config(args, "server")
        assert cfg.split_path is not None
        cfg.split_path.allowed_clients = {key: name for name, key in names.items()}
        return cfg, {**info, "clients": len(names)}
    raise CliError(f"gateway: key exchange {kx} does not authenticate clients")


def _run(args: argparse.Namespace) -> int:
    from ..aio.api import serve
    from ..aio.capture import open_sink
    from ..tunnel.gateway import Gateway
    from ..tunnel.policy import Limits, Policy
    from ..tunnel.status import StatusView, paths_cell

    if not args.allow:
        raise CliError("gateway: give at least one --allow CIDR[:PORTS]; a gateway is never "
                       "an open proxy")
    policy = Policy.from_texts(args.allow)
    limits = Limits(max_connections=args.max_connections, max_per_client=args.max_per_client,
                    connect_timeout=args.connect_timeout, idle_timeout=args.idle_timeout,
                    request_timeout=args.request_timeout)
    limits.validate()
    cfg, info = _config(args)
    cfg.announce = list(args.announce)

    holder: dict[str, Gateway] = {}

    def rows():  # type: ignore[no-untyped-def]
        for c in list(holder["gw"].active.values()):
            yield {"number": c.number, "source": c.client, "destination": c.destination,
                   "state": c.state, "out": c.to_destination, "back": c.to_client,
                   "paths": paths_cell(c.stream)}

    def footer() -> str:
        s = holder["gw"].summary()
        refused = ", ".join(f"{k}: {v}" for k, v in s["refused"].items()) or "none"
        return (f"{s['accepted']} accepted, {s['active']} active, "
                f"{s['poisoned_subflows']} subflows poisoned; refused: {refused}")

    view = StatusView("mptcpsec gateway", rows, footer, quiet=args.quiet,
                      live=False if args.no_live else None)
    gw = Gateway(policy, limits, log=view.log)
    holder["gw"] = gw

    class _Trace:
        """Server events: to the --trace file, and key exchange refusals to the gateway."""

        def __init__(self, path: str | None) -> None:
            from ..protocol.events import TraceWriter

            self._file = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115
            self._writer = TraceWriter(self._file) if self._file else None

        def write(self, event) -> None:  # type: ignore[no-untyped-def]
            gw.trace_write(event)
            if self._writer is not None:
                self._writer.write(event)

        def close(self) -> None:
            if self._file is not None:
                self._file.close()

    async def main(stop: asyncio.Event) -> int:
        trace = _Trace(args.trace)
        sink = open_sink(pcap=args.pcap, trace=None)
        try:
            server = await serve(gw, args.listen, cfg, trace=trace, sink=sink)  # type: ignore[arg-type]
        except OSError as exc:
            raise CliError(f"cannot listen: {exc.strerror or exc}") from None
        view.log("gateway listening on " + ", ".join(f"{h}:{p}" for h, p in server.addresses)
                 + f" (key exchange {cfg.key_exchange}; allow "
                 + ", ".join(str(r) for r in policy.rules) + ")")
        if "fingerprint" in info:
            view.log(f"tls certificate fingerprint: {info['fingerprint']}")
        live = asyncio.ensure_future(view.run())
        try:
            await stop.wait()
        finally:
            live.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await live
            # Ctrl-C: end every relayed connection with DATA_FIN, then stop.
            for c in list(gw.active.values()):
                if c.stream is not None:
                    with contextlib.suppress(Exception):
                        c.stream.close()
            for _ in range(60):
                if not gw.active:
                    break
                await asyncio.sleep(0.05)
            server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 3)
            if sink is not None:
                sink.close()
            trace.close()
        if args.json:
            print(json.dumps({"gateway": gw.summary()}), flush=True)
        view.log("stopped")
        return 0

    return int(run_async(main))

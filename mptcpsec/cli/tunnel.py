"""`mptcpsec tunnel`: the converter's entry (SPEC §Converter): SOCKS5, forwards,
transparent redirect and stdio, each application connection over mptcpsec to a gateway."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Callable

from ._common import (
    CliError,
    add_connection_args,
    address,
    build_config,
    resolve_key_exchange,
    run_async,
)

EPILOG = """\
examples:
  # SOCKS5 on 127.0.0.1:1080, two paths to the gateway:
  mptcpsec tunnel -c 127.0.0.1:7000 -c 127.0.0.2:7000 -k psk --psk-file me.psk \\
                  --psk-identity laptop --socks 127.0.0.1:1080
  curl --socks5-hostname 127.0.0.1:1080 http://example.test/
  # like ssh -L: 127.0.0.1:8080 reaches 203.0.113.5:80 through the gateway:
  mptcpsec tunnel -c GW1:7000 -c GW2:7000 -k psk ... --forward 127.0.0.1:8080=203.0.113.5:80
  # ssh over both paths:
  ssh -o ProxyCommand='mptcpsec tunnel -c GW1:7000 -c GW2:7000 -k psk ... --stdio %h:%p' host
  # transparent: iptables -t nat -A OUTPUT -p tcp -d 198.51.100.0/24 -j REDIRECT --to-ports 1234
  mptcpsec tunnel -c GW1:7000 -c GW2:7000 -k psk ... --transparent 0.0.0.0:1234

Each --connect is one path to the gateway; --bind gives the local address of the path in
the same position. Every application connection gets its own mptcpsec connection; --pool N
keeps N connections with their key exchange done, so a new application connection does not
wait for a handshake.
"""


def _forward(text: str) -> tuple[tuple[str, int], tuple[str, int]]:
    local, sep, dest = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LHOST:LPORT=DHOST:DPORT")
    return address(local, "127.0.0.1"), address(dest)


def _user(text: str) -> tuple[str, str]:
    user, sep, password = text.partition(":")
    if not sep or not user or len(user) > 255 or len(password) > 255:
        raise argparse.ArgumentTypeError(f"{text!r}: expected USER:PASSWORD (1..255 bytes each)")
    return user, password


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tunnel", help="the converter's entry: SOCKS5, forwards, transparent, stdio",
        description="Carry ordinary TCP connections over mptcpsec to `mptcpsec gateway`, "
        "which connects to their destination. Give one or more listeners.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connect", "-c", action="append", required=True, type=address,
                   metavar="HOST:PORT", help="a gateway address: one path (repeat)")
    p.add_argument("--bind", "-b", action="append", default=[], metavar="HOST",
                   help="local address of the path at the same position (repeat)")
    p.add_argument("--no-join", action="store_true",
                   help="use exactly these paths: ignore addresses the gateway announces")
    lst = p.add_argument_group("listeners (any mix; at least one)")
    lst.add_argument("--socks", action="append", default=[], type=address,
                     metavar="HOST:PORT", help="a SOCKS5 server (CONNECT; names resolved by "
                     "the gateway, as curl --socks5-hostname wants)")
    lst.add_argument("--socks-user", action="append", default=[], type=_user,
                     metavar="USER:PASSWORD", help="require RFC 1929 username/password (repeat)")
    lst.add_argument("--forward", "-L", action="append", default=[], type=_forward,
                     metavar="LHOST:LPORT=DHOST:DPORT", help="like ssh -L (repeat)")
    lst.add_argument("--transparent", action="append", default=[], type=address,
                     metavar="HOST:PORT", help="connections REDIRECTed here by iptables/"
                     "nftables; the destination is read with SO_ORIGINAL_DST")
    lst.add_argument("--stdio", type=address, metavar="DHOST:DPORT",
                     help="one connection on stdin/stdout, for ssh's ProxyCommand")
    p.add_argument("--client-identity", metavar="FILE",
                   help="split-path: prove this Ed25519 identity to the gateway (hex seed; "
                   "created 0600 if missing); the public key to list in the gateway's "
                   "--allowed-clients is printed")
    p.add_argument("--pool", type=int, default=0, metavar="N",
                   help="keep N connections with the key exchange done (default: %(default)s)")
    p.add_argument("--socks-early-reply", action="store_true",
                   help="SOCKS: answer 'succeeded' at once and send the client's first bytes "
                   "with the request (one round trip less; a refusal is then a reset)")
    p.add_argument("--no-pipeline", action="store_true",
                   help="forwards, transparent, stdio: wait for the gateway's status before "
                   "relaying the client's bytes (default: they follow the request at once)")
    p.add_argument("--eager-join", action="store_true",
                   help="open every path at once (default: the paths beyond the key "
                   "exchange's join once the first answer came back, or after 1 s)")
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="S",
                   help="give up on the gateway after this long (default: %(default)s)")
    p.add_argument("--idle-timeout", type=float, default=None, metavar="S",
                   help="close a connection with no byte either way for this long")
    p.add_argument("--json", action="store_true", help="print a JSON summary on exit")
    p.add_argument("--quiet", "-q", action="store_true", help="no log lines on stderr")
    p.add_argument("--no-live", action="store_true",
                   help="plain log lines even on a terminal")
    add_connection_args(p, "client")
    p.set_defaults(func=_run)


def tunnel_hint(text: str, args: argparse.Namespace) -> str | None:
    """A hint for a tunnel log line that reports a failed connection to the gateway, in
    the words `connect` uses (cli/_hints.py); None for other lines."""
    from ._hints import handshake_hint, local_settings

    gw = f"{args.connect[0][0]}:{args.connect[0][1]}"
    low = text.lower()
    if "gateway unreachable" in low or "cannot connect to the gateway" in low:
        if "refused" in low or "[errno 111]" in low:
            return (f"connection refused at {gw}: is `mptcpsec gateway` running there, "
                    "on every --connect address?")
        if "timed out" in low or "timeout" in low:
            return (f"no mptcpsec answer from {gw} within --connect-timeout "
                    f"{args.connect_timeout:g} s: is `mptcpsec gateway` running there, "
                    f"with {local_settings(args)}?")
        return f"cannot reach the gateway at {gw}: is it running there?"
    if "gateway refused us" in low:
        return ("the gateway does not admit this client: check its --psk-clients / "
                "--allowed-clients and this tunnel's credentials")
    if ": gateway: " in text:
        return handshake_hint(text.split(": gateway: ", 1)[1], args)
    return None


def _hinted(log: Callable[[str], None], args: argparse.Namespace) -> Callable[[str], None]:
    """The tunnel's log with a hint after each failed gateway connection (each hint once);
    with --stdio, whose log is quiet, those lines still reach stderr."""
    shown: set[str] = set()

    def out(text: str) -> None:
        hint = tunnel_hint(text, args)
        if hint is not None and args.stdio and not args.quiet:
            print(f"mptcpsec tunnel: {text}", file=sys.stderr, flush=True)
        else:
            log(text)
        if hint is not None and hint not in shown:
            shown.add(hint)
            if args.stdio and not args.quiet:
                print(f"mptcpsec tunnel: hint: {hint}", file=sys.stderr, flush=True)
            else:
                log(f"hint: {hint}")
    return out


def _run(args: argparse.Namespace) -> int:
    from ..aio.api import Path
    from ..tunnel.entry import Tunnel, TunnelOptions
    from ..tunnel.request import Status
    from ..tunnel.status import StatusView, paths_cell

    if not (args.socks or args.forward or args.transparent or args.stdio):
        raise CliError("tunnel: give at least one listener: --socks, --forward, "
                       "--transparent or --stdio")
    if args.stdio and (args.socks or args.forward or args.transparent):
        raise CliError("--stdio carries one connection and cannot be mixed with listeners")
    if len(args.bind) > len(args.connect):
        raise CliError("more --bind than --connect: give one --bind per path, in order")
    if args.mode != "mptcpsec":
        raise CliError("a tunnel runs --mode mptcpsec only")
    resolve_key_exchange(args)
    if args.key_exchange == "split-path":
        if not args.client_identity:
            raise CliError("the gateway authenticates split-path clients by their identity: "
                           "give --client-identity FILE (or use -k psk / -k tls)")
        if len(args.connect) < 2:
            raise CliError("split-path needs two paths: give two --connect")
    if args.pool < 0 or args.pool > 64:
        raise CliError("--pool must be 0..64")
    cfg, _ = build_config(args, "client", first_remote=args.connect[0])
    identity_line = None
    if args.key_exchange == "split-path":
        from ..crypto.splitpath import identity_public_key
        from ._common import load_identity

        assert cfg.split_path is not None
        seed = load_identity(args.client_identity)
        cfg.split_path.client_identity_seed = seed
        identity_line = f"NAME ed25519 {identity_public_key(seed).hex()}"
    if args.no_join:
        cfg.join_announced = False
    binds = args.bind + [None] * (len(args.connect) - len(args.bind))
    paths = [Path(remote, local=b) for remote, b in zip(args.connect, binds, strict=True)]
    opts = TunnelOptions(paths=paths, config=cfg, pool=args.pool,
                         connect_timeout=args.connect_timeout, idle_timeout=args.idle_timeout,
                         socks_users=dict(args.socks_user) or None,
                         pipeline=not args.no_pipeline,
                         socks_early_reply=args.socks_early_reply,
                         join_after_first_byte=not args.eager_join)
    holder: dict[str, Tunnel] = {}

    def rows():  # type: ignore[no-untyped-def]
        for c in list(holder["t"].active.values()):
            yield {"number": c.number, "source": c.source, "destination": c.destination,
                   "state": c.state, "out": c.sent, "back": c.received,
                   "paths": paths_cell(c.stream)}

    def footer() -> str:
        s = holder["t"].summary()
        refused = ", ".join(f"{k}: {v}" for k, v in s["refused"].items()) or "none"  # type: ignore[union-attr]
        return (f"{s['connections']} connections, {s['active']} active, "
                f"{s['poisoned_subflows']} subflows poisoned; refused: {refused}")

    view = StatusView("mptcpsec tunnel", rows, footer, quiet=args.quiet or bool(args.stdio),
                      live=False if (args.no_live or args.stdio) else None)
    tunnel = Tunnel(opts, log=_hinted(view.log, args))
    holder["t"] = tunnel

    async def main(stop: asyncio.Event) -> int:
        status = Status.SUCCESS
        try:
            if args.stdio:
                status = await tunnel.stdio(args.stdio)
            else:
                try:
                    for a in args.socks:
                        view.log(f"socks5 on {a[0]}:{a[1]} (bound "
                                 f"{':'.join(map(str, await tunnel.socks(a)))})")
                    for local, dest in args.forward:
                        await tunnel.forward(local, dest)
                        view.log(f"forward {local[0]}:{local[1]} -> {dest[0]}:{dest[1]}")
                    for a in args.transparent:
                        await tunnel.transparent(a)
                        view.log(f"transparent on {a[0]}:{a[1]}")
                except OSError as exc:
                    raise CliError(f"cannot listen: {exc.strerror or exc}") from None
                if identity_line:
                    view.log(f"client identity (for the gateway's --allowed-clients): "
                             f"{identity_line}")
                view.log("gateway paths: " + ", ".join(f"{h}:{p}" for h, p in args.connect))
                tunnel.start_pool()
                live = asyncio.ensure_future(view.run())
                try:
                    await stop.wait()
                finally:
                    live.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await live
        finally:
            await tunnel.close()
        if args.json:
            print(json.dumps({"tunnel": tunnel.summary()}), file=sys.stderr if args.stdio
                  else sys.stdout, flush=True)
        view.log("stopped")
        return 0 if status is Status.SUCCESS else 1

    return int(run_async(main))

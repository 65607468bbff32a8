"""``mpyc-webrtc-server``: the command line, a TOML config file, and the start-up session."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from aiohttp import web

from mpyc_webrtc import wire
from mpyc_webrtc.ice import parse_ice_server

from .app import DEFAULTS, SESSIONS, AccessLog, bind_udp, create_app, drain
from .ice_servers import DEFAULT_STUN_PORT, IceConfig, names_stun, own_stun_url
from .redis_store import RedisUnavailable

log = logging.getLogger("signaling")

#: Of ``--shutdown-timeout``, the share the parties get to close their WebSockets; the rest
#: is for HTTP requests still being answered.
DRAIN_SHARE = 0.75


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="mpyc-webrtc-server",
        description="Signaling server for MPyC sessions over WebRTC.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on")
    parser.add_argument("--config", metavar="FILE",
                        help="a TOML file of options, named as on the command line without "
                             "the dashes (turn_secret = \"...\", turn = [\"turn:...\"]); "
                             "the command line overrides it")
    ice = parser.add_argument_group(
        "STUN and TURN", "Parties behind NATs and firewalls find each other with STUN and, "
        "where no direct path exists, talk through a TURN relay such as coturn. The server "
        "answers STUN itself (--stun-port); a relay it does not do.")
    ice.add_argument("--stun-port", type=int, default=argparse.SUPPRESS, metavar="PORT",
                     help="UDP port of the server's own STUN service, on the --host "
                          "address(es); it is handed to parties as stun:HOST:PORT, HOST "
                          "being --public-url's host, else --host. 0: no STUN service. "
                          f"Default: {DEFAULT_STUN_PORT}, or none if --stun or a stun: "
                          "--ice-server names another STUN server")
    ice.add_argument("--stun", action="append", default=[], metavar="URL",
                     help="STUN server handed to every party (stun:HOST:PORT); repeatable")
    ice.add_argument("--turn", action="append", default=[], metavar="URL",
                     help="TURN relay handed to every party with fresh credentials "
                          "(turn:HOST:PORT?transport=udp, ...?transport=tcp); repeatable; "
                          "needs --turn-secret")
    ice.add_argument("--turn-secret", metavar="SECRET",
                     help="the relay's shared secret (coturn: use-auth-secret, "
                          "static-auth-secret); better put in --config than on the "
                          "command line, where other users of the machine can see it")
    ice.add_argument("--turn-ttl", type=float, default=24 * 3600.0, metavar="SECONDS",
                     help="the longest each party's TURN credentials stay valid; they "
                          "expire with its session (--max-age) if that is sooner")
    ice.add_argument("--ice-server", action="append", default=[], metavar="URL",
                     help="STUN/TURN server with fixed credentials handed to every party "
                          "(stun:HOST:PORT or turn:USER:PASSWORD@HOST:PORT); repeatable")
    parser.add_argument("--public-url", help="base URL in join links, if not the listen address")
    parser.add_argument("--session", metavar="PROGRAM:PARTIES",
                        help="create a session at start-up and print its join URL, e.g. sum:3")
    parser.add_argument("--redis", metavar="URL",
                        help="share sessions with every other server process that uses this "
                             "Redis (redis://HOST:PORT/DB): parties of one session may then "
                             "reach different processes (behind a load balancer), and a "
                             "process may restart without losing a session")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every message")
    parser.add_argument("--metrics", action=argparse.BooleanOptionalAction, default=True,
                        help="serve GET /metrics (Prometheus text: counts only, no session "
                             "ids or addresses; block it at a reverse proxy, or turn it off, "
                             "if the counts are nobody else's business)")
    parser.add_argument("--shutdown-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="on SIGTERM or SIGINT, tell every party, close the WebSockets "
                             "and exit within this long")
    limits = parser.add_argument_group("limits")
    d = DEFAULTS
    limits.add_argument("--idle-timeout", type=float, default=d["idle_timeout"],
                        metavar="SECONDS",
                        help="close sessions that nobody is connected to and that saw no "
                        "activity for this long")
    limits.add_argument("--max-age", type=float, default=d["max_age"], metavar="SECONDS",
                        help="close every session at this age")
    limits.add_argument("--max-sessions", type=int, default=d["max_sessions"], metavar="N",
                        help="open sessions in all")
    limits.add_argument("--max-sessions-per-client", type=int,
                        default=d["max_sessions_per_client"], metavar="N",
                        help="open sessions created from one client address")
    limits.add_argument("--max-connections", type=int, default=d["max_connections"],
                        metavar="N", help="open WebSocket connections in all")
    limits.add_argument("--max-connections-per-client", type=int,
                        default=d["max_connections_per_client"], metavar="N",
                        help="open WebSocket connections from one client address (an IPv6 "
                             "address counts as its /64)")
    limits.add_argument("--session-messages", type=int, default=d["session_messages"],
                        metavar="N",
                        help="the parties of an m-party session may send N x m x m messages "
                             "in all; then the session is closed")
    limits.add_argument("--resume-grace", type=float, default=d["resume_grace"],
                        metavar="SECONDS",
                        help="a party whose connection to the server is lost (in the lobby "
                             "or after the start) is reconnecting this long, and keeps its "
                             "place")
    limits.add_argument("--join-timeout", type=float, default=d["join_timeout"],
                        metavar="SECONDS",
                        help="close a WebSocket that has not joined a session after this long")
    limits.add_argument("--message-rate", type=float, default=d["message_rate"],
                        metavar="PER_SECOND",
                        help="messages per second one WebSocket may send, sustained")
    limits.add_argument("--message-burst", type=int, default=d["message_burst"], metavar="N",
                        help="messages one WebSocket may send at once")
    limits.add_argument("--heartbeat", type=float, default=d["heartbeat"], metavar="SECONDS",
                        help="ping every WebSocket this often; drop it if no pong comes "
                             "within half of it")
    limits.add_argument("--max-outbox", type=int, default=d["max_outbox"], metavar="N",
                        help="drop a client that lets more messages than this wait for it")
    limits.add_argument("--max-outbox-bytes", type=int, default=d["max_outbox_bytes"],
                        metavar="BYTES",
                        help="drop a client that lets more bytes than this wait for it")
    limits.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                        help="also accept WebSockets from pages at this origin "
                             "(scheme://host[:port]); the server's own origin and "
                             "--public-url's are always accepted; repeatable")
    limits.add_argument("--trust-forwarded-for", action="store_true",
                        help="count sessions per the last address in X-Forwarded-For instead "
                             "of the TCP peer; only behind a reverse proxy that sets it")
    args = parser.parse_args(argv)
    if args.config:
        parser.set_defaults(**read_config(parser, args.config))
        args = parser.parse_args(argv)
    return args


def read_config(parser: argparse.ArgumentParser, path: str) -> dict[str, Any]:
    """Option defaults from a TOML file; an unknown key or a wrong type is an error."""
    import tomllib

    try:
        with open(path, "rb") as file:
            config = tomllib.load(file)
    except OSError as exc:
        parser.error(f"cannot read the config file {path}: {exc.strerror or exc}")
    except tomllib.TOMLDecodeError as exc:
        parser.error(f"the config file {path} is not valid TOML: {exc}")
    known = {a.dest: a for a in parser._actions if a.dest not in ("help", "config")}
    for key, value in config.items():
        action = known.get(key.replace("-", "_"))
        if action is None:
            parser.error(f"the config file {path} has an unknown option {key!r}")
        want: type | tuple[type, ...] = (list if isinstance(action, argparse._AppendAction)
                                         else bool if action.nargs == 0
                                         else action.type or str)
        if want is float:
            want = (int, float)
        if not isinstance(value, want) or (isinstance(value, bool) and want is not bool):
            parser.error(f"the config file {path}: {key} has the wrong type "
                         f"({type(value).__name__})")
    return {key.replace("-", "_"): value for key, value in config.items()}


def fail(message: str) -> NoReturn:
    """End start-up with ``message`` for a person, and exit status 2 (as argparse does)."""
    print(f"mpyc-webrtc-server: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def port_taken(what: str, host: str, port: int, exc: OSError) -> str:
    """Why ``what`` cannot listen on ``host``:``port``, and what to do about it."""
    where = f"{what} port {port} on {host or 'every address'}"
    if exc.errno == errno.EADDRINUSE:
        text = f"{where} is taken by another program"
    elif exc.errno == errno.EACCES:
        text = f"this user may not use {where}"
    else:
        text = f"cannot listen on {where}: {exc.strerror or exc}"
    if what == "UDP":
        return (f"{text} (the server's own STUN service; perhaps a STUN or TURN server such "
                "as coturn, or another mpyc-webrtc-server). Choose another port with "
                "--stun-port PORT, or none with --stun-port 0; a STUN server that already "
                "runs there can be handed out with --stun stun:HOST:PORT.")
    return f"{text}. Choose another with --port PORT (or --host)."


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s")
    try:
        static = tuple(parse_ice_server(u) for u in args.ice_server)
    except ValueError as exc:
        raise SystemExit(f"mpyc-webrtc-server: {exc}") from None
    # The server's own STUN service: on unless told otherwise, or another STUN server is
    # named (which parties get instead, so that ours would only hold a port).
    other_stun = names_stun(args.stun, static)
    stun_port = getattr(args, "stun_port", None)
    if stun_port is None:
        stun_port = 0 if other_stun else DEFAULT_STUN_PORT
    if not 0 <= stun_port <= 0xFFFF:
        fail(f"--stun-port {stun_port}: a UDP port is 1 to 65535 (0: no STUN service).")
    stun_sockets = []
    if stun_port:
        try:
            stun_sockets = bind_udp(args.host, stun_port)
        except OSError as exc:
            fail(port_taken("UDP", args.host, stun_port, exc))
    own_stun = None if other_stun or not stun_port else \
        own_stun_url(args.public_url, args.host, stun_port)
    try:
        ice = IceConfig(stun=(*args.stun, *([own_stun] if own_stun else [])),
                        turn=tuple(args.turn), turn_secret=args.turn_secret,
                        turn_ttl=args.turn_ttl, static=static)
    except ValueError as exc:
        raise SystemExit(f"mpyc-webrtc-server: {exc}") from None
    base = args.public_url or f"http://{args.host}:{args.port}"
    limits = {name: getattr(args, name) for name in DEFAULTS}
    app = create_app(**limits, ice=ice, public_url=args.public_url or base,
                     allow_origins=args.allow_origin,
                     trust_forwarded_for=args.trust_forwarded_for, metrics=args.metrics,
                     stun_sockets=stun_sockets, redis=args.redis)
    lines = [f"mpyc-webrtc server on {base}",
             f"Create a session in your browser: {base}/",
             f"  or from a terminal: mpyc-webrtc-peer create {base} --parties 3 "
             "--program average"]
    if stun_port:
        lines.append(f"STUN on UDP port {stun_port}, handed to parties as {own_stun}"
                     if own_stun else
                     f"STUN on UDP port {stun_port}, handed to no party: "
                     + ("--stun or --ice-server names another STUN server" if other_stun
                        else "--host listens on every address; say which one parties "
                        "reach with --public-url"))
    if args.redis:
        lines.append(f"Sessions are shared through Redis at {args.redis}")

    async def start_session() -> list[str]:
        """The ``--session`` the operator asked for (created once the app runs: with
        ``--redis`` it goes to Redis)."""
        if not args.session:
            return []
        from mpyc_webrtc.sealing import JoinSecret

        program, _, parties = args.session.partition(":")
        try:
            secret = JoinSecret.create({"name": program, "args": []})
            count = int(parties or 3)
            session = await app[SESSIONS].create({"program": program, "parties": count,
                                                  "token_hash": secret.token_hash,
                                                  "descriptor": secret.descriptor(count, [])},
                                                 None)
        except (ValueError, KeyError, OSError, wire.SignalingError) as exc:
            raise SystemExit(f"mpyc-webrtc-server: --session {args.session}: {exc}") from None
        url = secret.link(f"{base}/join/{session.id}")
        return [f"A session for {session.parties} parties running {program!r} is open. "
                "Each party opens this link in a browser, or runs",
                f"    mpyc-webrtc-peer join '{url}' --input YOUR_INPUT",
                url]

    try:
        asyncio.run(serve(app, args.host, args.port, "\n".join(lines), args.shutdown_timeout,
                          start_session))
    except RedisUnavailable as exc:
        fail(str(exc))


async def serve(app: web.Application, host: str, port: int, banner: str,
                shutdown_timeout: float,
                more: Callable[[], Awaitable[list[str]]] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then shut down within ``shutdown_timeout`` seconds.

    Not aiohttp's ``run_app``: it stops listening before anything else, so ``/healthz``
    could never say ``draining``, and its parties would only see their sockets drop. Here
    the server keeps answering while it drains (``app.drain``), then stops listening and
    gives the HTTP requests still running the rest of the time. It returns (exit status 0)
    once done.
    """
    runner = web.AppRunner(app, access_log_class=AccessLog,
                           shutdown_timeout=max(0.1, shutdown_timeout * (1 - DRAIN_SHARE)))
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                raise
            fail(port_taken("TCP", host, port, exc))
        if more is not None:
            banner = "\n".join([banner, *await more()])
        print(banner, flush=True)  # once the port is bound: testbed.netns.Server waits for it
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):  # Windows: Ctrl+C ends it at once
                loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        log.info("session - party -: shutting down (at most %gs)", shutdown_timeout)
        await drain(app, shutdown_timeout * DRAIN_SHARE)
    finally:
        await runner.cleanup()
    log.info("session - party -: stopped")


if __name__ == "__main__":
    main()

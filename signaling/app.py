"""The signaling server: aiohttp I/O around the ``mpyc_webrtc.session`` core.

The server never sees MPC traffic: it hands out pids, relays SDP offers/answers
and ICE candidates between parties, and forgets sessions when they go idle.

Abuse limits (``create_app`` arguments and ``mpyc-webrtc-server`` options, defaults in
``DEFAULTS``); every refusal is a JSON ``error`` with a code and a sentence for a person:

- messages per connection: bursts of ``message_burst`` (200), ``message_rate`` (50) per
  second sustained, else ``rate_limited``; a connection sending 3x that is closed;
- sessions: ``max_sessions`` (1000) in all (HTTP 503 ``server_busy``) and
  ``max_sessions_per_client`` (20) open sessions per client address (HTTP 429
  ``too_many_sessions``). The client address is the TCP peer's: behind a reverse proxy
  that is the proxy, so all clients share one count, unless ``trust_forwarded_for`` takes
  the last address of ``X-Forwarded-For`` (enable it only behind a proxy that sets it);
- connections: ``max_connections`` (5000) WebSockets, more are closed with ``server_busy``;
  a WebSocket that has not joined after ``join_timeout`` (60 s) is closed; ``heartbeat``
  (30 s) pings drop dead connections; a client that does not read its messages is
  dropped once ``max_outbox`` (1000) messages or ``max_outbox_bytes`` (4 MiB) wait for it;
- sessions expire after ``idle_timeout`` (600 s) without activity, joined or not, and at
  ``max_age`` (24 h);
- a WebSocket whose ``Origin`` header is not this server's own origin (the request's
  scheme://host, or ``public_url``'s) nor one of ``allow_origins`` is refused with HTTP 403
  ``forbidden_origin``; clients without an ``Origin`` (native peers) are let in;
- messages over ``wire.MAX_MESSAGE_BYTES`` and request bodies over ``MAX_REQUEST_BYTES``.

Anything unexpected becomes a JSON 500 ``internal_error`` (the traceback goes to the log,
never to the client); unknown ``/api/`` routes answer JSON 404/405. Log lines about a
session say ``session ID party PID``; no request or message content is logged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
from collections import deque
from typing import Any

from aiohttp import WSMsgType, hdrs, web
from yarl import URL

from mpyc_webrtc import programs, wire
from mpyc_webrtc.ice import IceConfig, parse_ice_server
from mpyc_webrtc.session import INTERNAL_ERROR, Endpoint, Registry, Session

from .assets import ASSETS, Assets, add_routes
from .assets import load as load_assets

log = logging.getLogger("signaling")

REGISTRY = web.AppKey("registry", Registry)
PUBLIC_URL = web.AppKey("public_url", str)
LIMITS = web.AppKey("limits", dict)
#: aiohttp's own frame limit, kept above ours so oversize messages get a JSON error.
WS_FRAME_LIMIT = 4 * wire.MAX_MESSAGE_BYTES
MAX_REQUEST_BYTES = 512 * 1024

#: Every limit's default (``create_app``'s keyword arguments, ``--option-name`` on the CLI).
DEFAULTS: dict[str, Any] = {
    "idle_timeout": 600.0,
    "max_age": 24 * 3600.0,
    "max_sessions": 1000,
    "max_sessions_per_client": 20,
    "max_connections": 5000,
    "join_timeout": 60.0,
    "message_rate": 50.0,
    "message_burst": 200,
    "heartbeat": 30.0,
    "max_outbox": 1000,
    "max_outbox_bytes": 4 * 1024 * 1024,
}
#: How long a closing WebSocket may take to send what is queued and say goodbye.
CLOSE_GRACE = 5.0


def create_app(*, idle_timeout: float = DEFAULTS["idle_timeout"],
               max_age: float = DEFAULTS["max_age"],
               max_sessions: int = DEFAULTS["max_sessions"],
               max_sessions_per_client: int = DEFAULTS["max_sessions_per_client"],
               max_connections: int = DEFAULTS["max_connections"],
               join_timeout: float = DEFAULTS["join_timeout"],
               message_rate: float = DEFAULTS["message_rate"],
               message_burst: int = DEFAULTS["message_burst"],
               heartbeat: float = DEFAULTS["heartbeat"],
               max_outbox: int = DEFAULTS["max_outbox"],
               max_outbox_bytes: int = DEFAULTS["max_outbox_bytes"],
               allow_origins: list[str] | tuple[str, ...] = (),
               trust_forwarded_for: bool = False,
               ice_servers: list[dict[str, Any]] | None = None,
               ice: IceConfig | None = None,
               sweep_interval: float | None = None,
               public_url: str | None = None,
               assets: Assets | None = None) -> web.Application:
    if sweep_interval is None:
        sweep_interval = min(10.0, idle_timeout / 4, join_timeout / 4)
    app = web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=[json_errors])
    app[REGISTRY] = Registry(idle_timeout=idle_timeout, max_age=max_age,
                             max_sessions=max_sessions,
                             max_sessions_per_client=max_sessions_per_client,
                             max_connections=max_connections, join_timeout=join_timeout,
                             message_rate=message_rate, message_burst=message_burst,
                             ice_servers=ice_servers or [], ice=ice)
    app[PUBLIC_URL] = public_url or ""
    origins = {normalize_origin(o) for o in allow_origins}
    if public_url:
        origins.add(normalize_origin(public_url))
    origins.discard(None)
    app[LIMITS] = {"heartbeat": heartbeat, "max_outbox": max_outbox,
                   "max_outbox_bytes": max_outbox_bytes, "allow_origins": frozenset(origins),
                   "trust_forwarded_for": trust_forwarded_for}
    app.router.add_post("/api/sessions", create_session)
    app.router.add_get("/api/sessions/{id}", get_session)
    app.router.add_get("/api/programs", get_programs)
    app.router.add_get("/api/protocol", get_protocol)
    app.router.add_get("/api/config", get_config)
    app.router.add_get("/", create_page)
    app.router.add_get("/ws", websocket)
    app.router.add_get("/join/{id}", join_page)
    add_routes(app, assets or load_assets())

    async def sweeper(app: web.Application):
        async def sweep():
            while True:
                await asyncio.sleep(sweep_interval)
                try:
                    app[REGISTRY].sweep()
                except Exception:  # a bug here must not stop the sweeping
                    log.exception("session - party -: sweep failed")

        task = asyncio.create_task(sweep())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(sweeper)
    return app


#: HTTP status of each error code the HTTP API returns; anything else is 400.
HTTP_STATUS = {
    wire.ErrorCode.UNKNOWN_SESSION: 404,
    wire.ErrorCode.SERVER_BUSY: 503,
    wire.ErrorCode.MESSAGE_TOO_LARGE: 413,
    wire.ErrorCode.TOO_MANY_SESSIONS: 429,
    wire.ErrorCode.RATE_LIMITED: 429,
    wire.ErrorCode.FORBIDDEN_ORIGIN: 403,
}


def error_response(exc: wire.SignalingError) -> web.Response:
    status = HTTP_STATUS.get(exc.code, 400)
    headers = {"Retry-After": "60"} if status in (429, 503) else None
    return web.json_response(exc.to_message(), status=status, headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Unknown ``/api/`` routes and methods as JSON; any unexpected exception as JSON 500."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or not request.path.startswith("/api/"):
            raise
        if exc.status == 404:
            text = f"There is no {request.path} in this server's API."
        elif exc.status == 405:
            allowed = exc.headers.get(hdrs.ALLOW, "")
            text = f"{request.method} is not allowed on {request.path}; use {allowed}."
        elif exc.status == 413:
            text = f"The request is larger than {MAX_REQUEST_BYTES // 1024} KiB."
        else:
            text = f"The request was refused ({exc.status} {exc.reason})."
        code = wire.ErrorCode.MESSAGE_TOO_LARGE if exc.status == 413 else \
            wire.ErrorCode.INVALID_REQUEST
        headers = {hdrs.ALLOW: exc.headers[hdrs.ALLOW]} if hdrs.ALLOW in exc.headers else None
        return web.json_response(wire.error_message(code, text), status=exc.status,
                                 headers=headers)
    except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
        raise
    except Exception:
        log.exception("session - party -: internal error answering %s %s", request.method,
                      request.path)
        return web.json_response(wire.error_message(
            INTERNAL_ERROR,  # type: ignore[arg-type]
            "Something went wrong inside the server. Try again; if it keeps happening, tell "
            "the server's operator."), status=500)


def normalize_origin(text: str) -> str | None:
    """``scheme://host:port`` of a URL or Origin, lower case, the port always spelled out."""
    try:
        url = URL(text.strip())
        if url.scheme not in ("http", "https") or not url.host or url.port is None:
            return None
        return f"{url.scheme}://{url.host.lower()}:{url.port}"
    except (ValueError, TypeError):
        return None


def origin_allowed(request: web.Request) -> bool:
    """No Origin (a native peer), or the server's own origin, or one that is allowed."""
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None:
        return True
    got = normalize_origin(origin)
    if got is None:
        return False
    own = normalize_origin(f"{request.scheme}://{request.host}")
    return got == own or got in request.app[LIMITS]["allow_origins"]


def client_address(request: web.Request) -> str:
    """The address sessions are counted against (see the module's docstring)."""
    if request.app[LIMITS]["trust_forwarded_for"]:
        forwarded = [a.strip() for a in request.headers.get("X-Forwarded-For", "").split(",")]
        forwarded = [a for a in forwarded if a]
        if forwarded:
            return forwarded[-1][:100]
    return request.remote or "unknown"


def join_url(request: web.Request, session: Session) -> str:
    base = request.app[PUBLIC_URL] or f"{request.scheme}://{request.host}"
    return f"{base.rstrip('/')}/join/{session.id}"


async def create_session(request: web.Request) -> web.Response:
    try:
        try:
            # JSON is UTF-8 (RFC 8259): the bytes, whatever charset the header claims.
            body = json.loads(await request.read())
        except web.HTTPRequestEntityTooLarge:
            raise wire.SignalingError(
                wire.ErrorCode.MESSAGE_TOO_LARGE,
                f"The request is larger than {MAX_REQUEST_BYTES // 1024} KiB.") from None
        except (ValueError, RecursionError):
            raise wire.SignalingError(
                wire.ErrorCode.MALFORMED_JSON, "The request body is not valid JSON.") from None
        try:
            session = request.app[REGISTRY].create(body, client_address(request))
        except (RecursionError, MemoryError):
            # compile() gives up on some deeply nested sources (x=1+1+...+1) this way.
            raise wire.SignalingError(
                wire.ErrorCode.INVALID_REQUEST,
                "The program is nested too deeply for Python to compile it.") from None
    except wire.SignalingError as exc:
        return error_response(exc)
    url = join_url(request, session)
    return web.json_response({**session.describe(), "join_url": url}, status=201)


async def get_session(request: web.Request) -> web.Response:
    try:
        session = request.app[REGISTRY].get(request.match_info["id"])
    except wire.SignalingError as exc:
        return error_response(exc)
    return web.json_response({**session.describe(), "join_url": join_url(request, session)})


async def get_protocol(request: web.Request) -> web.Response:
    return web.json_response(wire.schema_document())


async def get_config(request: web.Request) -> web.Response:
    """What the create page may offer: relay-only sessions need a TURN relay."""
    ice = request.app[REGISTRY].ice
    return web.json_response({"relay": ice.has_relay,
                              "stun": bool(ice.stun) or bool(ice.static)})


async def get_programs(request: web.Request) -> web.Response:
    """The program library for the create page: what each asks and computes, and its code."""
    library = [{**entry, "source": programs.source(entry["name"])}
               for entry in programs.catalog_json()]
    return web.json_response(library)


async def create_page(request: web.Request) -> web.StreamResponse:
    page = request.app[ASSETS].web_dir / "create.html"
    return web.FileResponse(page, headers={"Cache-Control": "no-cache"})


async def join_page(request: web.Request) -> web.StreamResponse:
    if "text/html" in request.headers.get("Accept", ""):
        # The page itself shows "no such session" in plain words if need be.
        page = request.app[ASSETS].web_dir / "join.html"
        return web.FileResponse(page, headers={"Cache-Control": "no-cache"})
    try:
        session = request.app[REGISTRY].get(request.match_info["id"])
    except wire.SignalingError as exc:
        return web.Response(text=exc.message + "\n", status=404)
    url = join_url(request, session)
    program = session.program.name
    text = (
        f"MPyC session {session.id}: {session.parties} parties, program {program!r} "
        f"({len(session.members)} joined so far).\n\n"
        "Join from a terminal with the whole link you were given, including its secret "
        "part after the # sign (this server never sees that part):\n"
        f"    mpyc-webrtc-peer join '{url}#k=...&p=...'"
        + (" --input YOUR_INPUT" if program in programs.BUILTIN and
           session.program.source is None else "")
        + "\n"
    )
    return web.Response(text=text)


class Connection:
    """One WebSocket's outbox and writer: the ``send``/``close`` the core is given.

    Messages are encoded when queued (so their size is known) and written in order by one
    task. Consecutive rosters waiting to be written collapse into the newest, which says
    everything the older ones said. A client that lets more than ``max_messages`` messages
    or ``max_bytes`` bytes pile up (it does not read) is dropped at once: its queue is
    freed and its TCP connection aborted, rather than growing the server's memory.
    """

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, max_messages: int,
                 max_bytes: int):
        self.ws = ws
        self.request = request
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.queue: deque[tuple[str, str]] = deque()
        self.queued_bytes = 0
        self.closing = False
        self.aborted = False
        self.endpoint: Endpoint | None = None
        self._wakeup = asyncio.Event()
        self.task = asyncio.create_task(self._write())

    def label(self) -> str:
        e = self.endpoint
        if e is None or e.session is None:
            return "session - party -"
        return f"session {e.session.id} party {e.pid}"

    def send(self, msg: dict[str, Any]) -> None:
        if self.closing or self.aborted:
            return
        type_ = msg.get("type", "")
        text = wire.encode(msg)  # ASCII (json.dumps escapes the rest): len() is bytes
        if type_ == "roster" and self.queue and self.queue[-1][0] == "roster":
            self.queued_bytes -= len(self.queue.pop()[1])
        if len(self.queue) >= self.max_messages or \
                self.queued_bytes + len(text) > self.max_bytes:
            self.abort(f"it does not read its messages ({len(self.queue)} messages, "
                       f"{self.queued_bytes} bytes waiting)")
            return
        self.queue.append((type_, text))
        self.queued_bytes += len(text)
        self._wakeup.set()

    def close(self) -> None:
        """Write what is queued, then close the WebSocket."""
        self.closing = True
        self._wakeup.set()

    def abort(self, why: str) -> None:
        """Drop the connection now, queued messages and all."""
        if self.aborted:
            return
        self.aborted = True
        log.warning("%s: dropping the connection: %s", self.label(), why)
        self.queue.clear()
        self.queued_bytes = 0
        self.task.cancel()
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    async def _write(self) -> None:
        try:
            while True:
                while self.queue:
                    _, text = self.queue.popleft()
                    self.queued_bytes -= len(text)
                    await self.ws.send_str(text)
                if self.closing:
                    break
                self._wakeup.clear()
                await self._wakeup.wait()
            await self.ws.close()
        except (ConnectionError, RuntimeError) as exc:  # the peer went away meanwhile
            log.debug("%s: writer stopped: %r", self.label(), exc)
            self.closing = True  # nothing more will be written: queue nothing more
            self.queue.clear()
            self.queued_bytes = 0

    async def finish(self) -> None:
        """Close, and give the writer ``CLOSE_GRACE`` seconds to finish."""
        self.close()
        done, _ = await asyncio.wait({self.task}, timeout=CLOSE_GRACE)
        if not done:
            self.task.cancel()
        elif not self.task.cancelled() and self.task.exception() is not None:
            log.error("%s: writer failed: %r", self.label(), self.task.exception())


async def websocket(request: web.Request) -> web.StreamResponse:
    if not origin_allowed(request):
        log.info("session - party -: refused a WebSocket from a foreign origin")
        return web.json_response(wire.error_message(
            wire.ErrorCode.FORBIDDEN_ORIGIN,
            "This server only takes WebSocket connections from its own pages. Open the join "
            "link itself instead of a page that embeds it."), status=403)
    registry = request.app[REGISTRY]
    limits = request.app[LIMITS]
    ws = web.WebSocketResponse(heartbeat=limits["heartbeat"] or None,  # 0: no heartbeat
                               max_msg_size=WS_FRAME_LIMIT)
    await ws.prepare(request)
    conn = Connection(ws, request, limits["max_outbox"], limits["max_outbox_bytes"])
    try:
        registry.check_connection_capacity()
    except wire.SignalingError as exc:
        log.warning("session - party -: refused a WebSocket, %s", exc.code)
        conn.send(exc.to_message())
        await conn.finish()
        return ws
    endpoint = conn.endpoint = Endpoint(registry, conn.send, conn.close)
    try:
        async for frame in ws:
            if frame.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                endpoint.receive(frame.data)
            elif frame.type == WSMsgType.ERROR:
                log.info("%s: websocket error: %s", conn.label(), type(ws.exception()).__name__)
    except Exception:
        log.exception("%s: websocket handler failed", conn.label())
    finally:
        endpoint.disconnected()
        await conn.finish()
    return ws


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
        "where no direct path exists, talk through a TURN relay such as coturn.")
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
                     help="how long each party's TURN credentials stay valid")
    ice.add_argument("--ice-server", action="append", default=[], metavar="URL",
                     help="STUN/TURN server with fixed credentials handed to every party "
                          "(stun:HOST:PORT or turn:USER:PASSWORD@HOST:PORT); repeatable")
    parser.add_argument("--public-url", help="base URL in join links, if not the listen address")
    parser.add_argument("--session", metavar="PROGRAM:PARTIES",
                        help="create a session at start-up and print its join URL, e.g. sum:3")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every message")
    limits = parser.add_argument_group("limits")
    d = DEFAULTS
    limits.add_argument("--idle-timeout", type=float, default=d["idle_timeout"],
                        metavar="SECONDS",
                        help="close sessions that saw no activity for this long")
    limits.add_argument("--max-age", type=float, default=d["max_age"], metavar="SECONDS",
                        help="close every session at this age")
    limits.add_argument("--max-sessions", type=int, default=d["max_sessions"], metavar="N",
                        help="open sessions in all")
    limits.add_argument("--max-sessions-per-client", type=int,
                        default=d["max_sessions_per_client"], metavar="N",
                        help="open sessions created from one client address")
    limits.add_argument("--max-connections", type=int, default=d["max_connections"],
                        metavar="N", help="open WebSocket connections in all")
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


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s")
    try:
        ice = IceConfig(stun=tuple(args.stun), turn=tuple(args.turn),
                        turn_secret=args.turn_secret, turn_ttl=args.turn_ttl,
                        static=tuple(parse_ice_server(u) for u in args.ice_server))
    except ValueError as exc:
        raise SystemExit(f"mpyc-webrtc-server: {exc}") from None
    base = args.public_url or f"http://{args.host}:{args.port}"
    limits = {name: getattr(args, name) for name in DEFAULTS}
    app = create_app(**limits, ice=ice, public_url=args.public_url or base,
                     allow_origins=args.allow_origin,
                     trust_forwarded_for=args.trust_forwarded_for)
    lines = [f"mpyc-webrtc server on {base}",
             f"Create a session in your browser: {base}/",
             f"  or from a terminal: mpyc-webrtc-peer create {base} --parties 3 "
             "--program average"]
    if args.session:
        from mpyc_webrtc.sealing import JoinSecret

        program, _, parties = args.session.partition(":")
        try:
            secret = JoinSecret.create({"name": program, "args": []})
            session = app[REGISTRY].create({"program": program, "parties": int(parties or 3),
                                            "token_hash": secret.token_hash})
        except (ValueError, KeyError, OSError, wire.SignalingError) as exc:
            raise SystemExit(f"mpyc-webrtc-server: --session {args.session}: {exc}") from None
        url = secret.link(f"{base}/join/{session.id}")
        lines += [f"A session for {session.parties} parties running {program!r} is open. "
                  "Each party opens this link in a browser, or runs",
                  f"    mpyc-webrtc-peer join '{url}' --input YOUR_INPUT",
                  url]

    async def announce(app: web.Application) -> None:
        print("\n".join(lines), flush=True)

    app.on_startup.append(announce)
    web.run_app(app, host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()

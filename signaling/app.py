"""The signaling server: aiohttp I/O around its sans-I/O core (``session``, ``registry``,
``endpoint``).

The server never sees MPC traffic: it hands out pids, relays SDP offers/answers
and ICE candidates between parties, and forgets sessions when they go idle. It also
answers STUN on UDP (``StunEndpoint`` around the sans-I/O ``stun``), so that parties
behind home routers learn their public address from it.

Abuse limits (``create_app`` arguments and ``mpyc-webrtc-server`` options, defaults in
``DEFAULTS``); every refusal is a JSON ``error`` with a code and a sentence for a person:

- messages per connection: bursts of ``message_burst`` (200), ``message_rate`` (50) per
  second sustained, else ``rate_limited``; a connection sending 3x that is closed;
- sessions: ``max_sessions`` (1000) in all (HTTP 503 ``server_busy``) and
  ``max_sessions_per_client`` (20) open sessions per client address (HTTP 429
  ``too_many_sessions``). The client address is the TCP peer's: behind a reverse proxy
  that is the proxy, so all clients share one count, unless ``trust_forwarded_for`` takes
  the last address of ``X-Forwarded-For`` (enable it only behind a proxy that sets it);
  an IPv6 address counts as its /64;
- a session's parties may send ``session_messages`` (250) x m² messages in all (m
  parties); past that the session is closed with ``too_many_messages``;
- connections: ``max_connections`` (5000) WebSockets, more are closed with ``server_busy``,
  and ``max_connections_per_client`` (64) per client address (``too_many_connections``);
  a WebSocket that has not joined after ``join_timeout`` (60 s) is closed; ``heartbeat``
  (30 s) pings drop dead connections; a client that does not read its messages is
  dropped once ``max_outbox`` (1000) messages or ``max_outbox_bytes`` (4 MiB) wait for it;
- a party whose connection is lost (in the lobby or after the start) is ``reconnecting`` for
  ``resume_grace`` (60 s) if it joined with a ``resume`` secret, to come back with it;
- sessions expire after ``idle_timeout`` (600 s) without activity, joined or not, and at
  ``max_age`` (8 h), when their parties' TURN credentials expire too;
- a WebSocket whose ``Origin`` header is not this server's own origin (the request's
  scheme://host, or ``public_url``'s) nor one of ``allow_origins`` is refused with HTTP 403
  ``forbidden_origin``; clients without an ``Origin`` (native peers) are let in;
- messages over ``wire.MAX_MESSAGE_BYTES`` and request bodies over ``MAX_REQUEST_BYTES``.

For the operator: ``GET /healthz`` (200 ``ok`` with counts while serving, 503 ``draining``
once shutdown began), ``GET /metrics`` (Prometheus text, ``signaling.metrics``; only counts,
on unless ``metrics=False``), an access log whose lines name the session (``AccessLog``),
and ``drain``, which ``mpyc-webrtc-server`` runs on SIGTERM/SIGINT: new sessions and
WebSockets are refused with ``server_shutting_down``, every connected party is told so and
its WebSocket closed with 1001 (going away).

Anything unexpected becomes a JSON 500 ``internal_error`` (the traceback goes to the log,
never to the client); unknown ``/api/`` routes answer JSON 404/405. Log lines about a
session say ``session ID party PID``; no request or message content is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import socket
from collections.abc import Sequence
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, hdrs, web
from aiohttp.abc import AbstractAccessLogger
from yarl import URL

from mpyc_webrtc import programs, sentences, wire

from .assets import ASSETS, Assets, add_routes
from .assets import load as load_assets
from .connection import Connection
from .endpoint import Endpoint
from .ice_servers import IceConfig
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import Metrics
from .redis_store import RedisStore
from .registry import ClosedSession, Registry, client_key
from .session import Encoded, Session
from .shared import SharedRegistry
from .stun import StunResponder

log = logging.getLogger("signaling")

REGISTRY = web.AppKey("registry", Registry)
#: Where the HTTP API creates and looks up sessions: ``LocalSessions`` or ``RedisStore``.
SESSIONS = web.AppKey("sessions", object)
PUBLIC_URL = web.AppKey("public_url", str)
LIMITS = web.AppKey("limits", dict)
METRICS = web.AppKey("metrics", Metrics)
#: Every open WebSocket's ``Connection``, for ``drain`` to tell and close.
CONNECTIONS = web.AppKey("connections", set)
#: Set once shutdown began (``drain``): ``/healthz`` says ``draining``, nothing new is let in.
DRAINING = web.AppKey("draining", asyncio.Event)
#: The session and pid a WebSocket joined as, for its access-log line (``AccessLog``).
JOINED_AS = web.RequestKey("joined_as", tuple)
STUN = web.AppKey("stun", StunResponder)
#: aiohttp's own frame limit, kept above ours so oversize messages get a JSON error.
WS_FRAME_LIMIT = 4 * wire.MAX_MESSAGE_BYTES
MAX_REQUEST_BYTES = 512 * 1024

#: What a browser may do with what this server sends (every response carries it, so the pages,
#: the worker script and what the worker loads all have it): run only the server's own scripts
#: (no inline script, no eval), compile WebAssembly (Pyodide, in the worker), talk only to this
#: server (fetch and the WebSocket), show images of its own or ``data:`` (the invite's QR
#: code, drawn in the page), and never be framed by another page.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self' 'wasm-unsafe-eval'",
    "connect-src 'self'",
    "img-src 'self' data:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
#: Headers on every response. The two cross-origin ones make the pages cross-origin
#: isolated, which is what lets the page share memory with Python in its worker
#: (SharedArrayBuffer, py_worker/ring.py); as a side effect no other site can open these
#: pages in a window it controls, nor embed anything of theirs.
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}

#: Every limit's default (``create_app``'s keyword arguments, ``--option-name`` on the CLI).
DEFAULTS: dict[str, Any] = {
    "idle_timeout": 600.0,
    "max_age": 8 * 3600.0,
    "max_sessions": 1000,
    "max_sessions_per_client": 20,
    "max_connections": 5000,
    "max_connections_per_client": 64,
    "session_messages": 250,
    "join_timeout": 60.0,
    "message_rate": 50.0,
    "message_burst": 200,
    "heartbeat": 30.0,
    "max_outbox": 1000,
    "max_outbox_bytes": 4 * 1024 * 1024,
    "resume_grace": 60.0,
}


def create_app(*, idle_timeout: float = DEFAULTS["idle_timeout"],
               max_age: float = DEFAULTS["max_age"],
               max_sessions: int = DEFAULTS["max_sessions"],
               max_sessions_per_client: int = DEFAULTS["max_sessions_per_client"],
               max_connections: int = DEFAULTS["max_connections"],
               max_connections_per_client: int = DEFAULTS["max_connections_per_client"],
               session_messages: int = DEFAULTS["session_messages"],
               join_timeout: float = DEFAULTS["join_timeout"],
               message_rate: float = DEFAULTS["message_rate"],
               message_burst: int = DEFAULTS["message_burst"],
               heartbeat: float = DEFAULTS["heartbeat"],
               max_outbox: int = DEFAULTS["max_outbox"],
               max_outbox_bytes: int = DEFAULTS["max_outbox_bytes"],
               resume_grace: float = DEFAULTS["resume_grace"],
               allow_origins: list[str] | tuple[str, ...] = (),
               trust_forwarded_for: bool = False,
               ice_servers: list[dict[str, Any]] | None = None,
               ice: IceConfig | None = None,
               sweep_interval: float | None = None,
               public_url: str | None = None,
               assets: Assets | None = None,
               metrics: bool = True,
               stun_sockets: Sequence[socket.socket] = (),
               redis: str | None = None, proc: str | None = None) -> web.Application:
    """The server's aiohttp app; see the module's docstring for the limits. ``metrics``:
    whether ``GET /metrics`` is served (it shows only counts, see ``signaling.metrics``);
    ``stun_sockets`` (bound UDP sockets, see ``bind_udp``) are where its own STUN service
    answers, from start-up to cleanup. ``redis``: a Redis URL, to share the sessions with
    every other server process that uses it (``signaling.shared``), as process ``proc``
    (by default host name, process id and a random part)."""
    if sweep_interval is None:
        sweep_interval = min(10.0, idle_timeout / 4, join_timeout / 4)
    app = web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=[json_errors])
    limits = dict(idle_timeout=idle_timeout, max_age=max_age, max_sessions=max_sessions,
                  max_sessions_per_client=max_sessions_per_client,
                  max_connections=max_connections, join_timeout=join_timeout,
                  message_rate=message_rate, message_burst=message_burst,
                  max_connections_per_client=max_connections_per_client,
                  session_messages=session_messages, schedule=call_later,
                  ice_servers=ice_servers or [], ice=ice, resume_grace=resume_grace)
    if redis:
        shared = SharedRegistry(proc=proc or process_name(), **limits)
        app[REGISTRY] = shared
    else:
        app[REGISTRY] = Registry(**limits)
    app[METRICS] = Metrics(app[REGISTRY])
    app[REGISTRY].observer = app[METRICS]
    if redis:
        metrics_ = app[METRICS]
        store = RedisStore(shared, redis, observe=metrics_.redis,
                           arrived=lambda when: setattr(metrics_, "frame_arrived", when))
        app[SESSIONS] = store

        async def redis_store(app: web.Application):
            await store.start()
            yield
            await store.close()

        app.cleanup_ctx.append(redis_store)
    else:
        app[SESSIONS] = LocalSessions(app[REGISTRY])
    app[CONNECTIONS] = set()
    app[DRAINING] = asyncio.Event()
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
    app.router.add_get("/api/sentences", get_sentences)
    app.router.add_get("/api/config", get_config)
    app.router.add_get("/", create_page)
    app.router.add_get("/ws", websocket)
    app.router.add_get("/join/{id}", join_page)
    app.router.add_get("/healthz", healthz)
    if metrics:
        app.router.add_get("/metrics", get_metrics)
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
    if stun_sockets:
        app[STUN] = StunResponder()

        async def stun_service(app: web.Application):
            loop = asyncio.get_running_loop()
            transports = [(await loop.create_datagram_endpoint(
                lambda: StunEndpoint(app[STUN]), sock=sock))[0] for sock in stun_sockets]
            yield
            for transport in transports:
                transport.close()
            log.info("session - party -: STUN service: %s", app[STUN].summary())

        app.cleanup_ctx.append(stun_service)
    app.on_response_prepare.append(security_headers)
    return app


class LocalSessions:
    """The sessions of this process alone, as the HTTP API asks for them (``RedisStore``
    answers the same for shared ones)."""

    def __init__(self, registry: Registry):
        self.registry = registry

    async def create(self, request: Any, client: str | None) -> Session:
        return self.registry.create(request, client)

    async def describe(self, sid: str) -> Session:
        return self.registry.get(sid)


def process_name() -> str:
    """This process among a server's: host, pid and a random part (never reused)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class StunEndpoint(asyncio.DatagramProtocol):
    """The I/O of the server's own STUN service: every datagram goes to the sans-I/O
    ``StunResponder``, and its answer, if any, back to the sender."""

    def __init__(self, responder: StunResponder) -> None:
        self.responder = responder
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's own datagram transports are no DatagramTransport subclass in 3.11.
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            answer = self.responder.answer(data, addr)
        except Exception:  # a bug here must not stop the service for everyone else
            log.exception("session - party -: the STUN service failed on a datagram")
            return
        if answer is not None and self.transport is not None:
            self.transport.sendto(answer, addr)

    def error_received(self, exc: Exception) -> None:
        # An ICMP error for an earlier answer: its client went away. Nothing to do.
        log.debug("session - party -: STUN: %s", exc)


def bind_udp(host: str | None, port: int) -> list[socket.socket]:
    """Non-blocking UDP sockets bound to ``port`` on every address ``host`` stands for
    (as aiohttp listens on them: an empty host or None is every address, IPv6 sockets
    are IPv6 only). Bound before the event loop runs, so that a taken port is an error
    at start-up (OSError), before the server says it is up."""
    sockets: list[socket.socket] = []
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_DGRAM,
                                   flags=socket.AI_PASSIVE)
        seen = set()
        for family, kind, proto, _, address in infos:
            if (family, address[0]) in seen:
                continue
            seen.add((family, address[0]))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setblocking(False)
            sock.bind(address)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``SECURITY_HEADERS`` on every response, and no ``Server`` header naming versions."""
    response.headers.popall(hdrs.SERVER, None)
    response.headers.update(SECURITY_HEADERS)


def call_later(delay: float, callback: Any) -> asyncio.TimerHandle:
    """The core's timer (``Registry``'s ``schedule``): ``callback()`` in ``delay`` seconds."""
    return asyncio.get_running_loop().call_later(delay, callback)


#: HTTP status of each error code the HTTP API returns; anything else is 400.
HTTP_STATUS = {
    wire.ErrorCode.UNKNOWN_SESSION: 404,
    wire.ErrorCode.SESSION_EXPIRED: 410,
    wire.ErrorCode.SERVER_BUSY: 503,
    wire.ErrorCode.MESSAGE_TOO_LARGE: 413,
    wire.ErrorCode.TOO_MANY_SESSIONS: 429,
    wire.ErrorCode.TOO_MANY_CONNECTIONS: 429,
    wire.ErrorCode.RATE_LIMITED: 429,
    wire.ErrorCode.FORBIDDEN_ORIGIN: 403,
    wire.ErrorCode.SERVER_SHUTTING_DOWN: 503,
}

#: What a party is told when the server shuts down (the pages and the native peer say it
#: in their own words, ``server.shutting_down.*`` in ``mpyc_webrtc.sentences``).
SHUTTING_DOWN = ("The signaling server is shutting down. Sessions that have not started are "
                 "lost; computations already running go on directly between the parties.")


#: What a party is told when a server process that shares its sessions shuts down.
RESTARTING = ("This signaling server process is shutting down, but your session is kept: "
              "join again at the same address to keep your place.")


def error_response(request: web.Request, exc: wire.SignalingError) -> web.Response:
    """``exc`` as a JSON answer with its HTTP status, counted by code for the operator."""
    status = HTTP_STATUS.get(exc.code, 400)
    headers = {"Retry-After": "60"} if status in (429, 503) else None
    return json_error(request, exc.to_message(), status, headers)


def json_error(request: web.Request, msg: dict[str, Any], status: int,
               headers: dict[str, str] | None = None) -> web.Response:
    """An ``error`` message as an HTTP answer; every HTTP error goes through here, so the
    operator's error counts (``/metrics``) include them."""
    request.app[METRICS].error(msg.get("code"))
    return web.json_response(msg, status=status, headers=headers)


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
        return json_error(request, wire.error_message(code, text), exc.status, headers)
    except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
        raise
    except Exception:
        log.exception("session - party -: internal error answering %s %s", request.method,
                      request.path)
        return json_error(request, wire.error_message(
            wire.ErrorCode.INTERNAL_ERROR,
            "Something went wrong inside the server. Try again; if it keeps happening, tell "
            "the server's operator."), 500)


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
    """The address sessions and connections are counted against (see the module's
    docstring), an IPv6 address as its /64 (``registry.client_key``)."""
    if request.app[LIMITS]["trust_forwarded_for"]:
        forwarded = [a.strip() for a in request.headers.get("X-Forwarded-For", "").split(",")]
        forwarded = [a for a in forwarded if a]
        if forwarded:
            return client_key(forwarded[-1][:100])
    return client_key(request.remote or "unknown")


def join_url(request: web.Request, session: Session) -> str:
    base = request.app[PUBLIC_URL] or f"{request.scheme}://{request.host}"
    return f"{base.rstrip('/')}/join/{session.id}"


def shutting_down() -> wire.SignalingError:
    return wire.SignalingError(wire.ErrorCode.SERVER_SHUTTING_DOWN, SHUTTING_DOWN)


async def create_session(request: web.Request) -> web.Response:
    try:
        if request.app[DRAINING].is_set():
            raise shutting_down()
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
            session = await request.app[SESSIONS].create(body, client_address(request))
        except (RecursionError, MemoryError):
            # compile() gives up on some deeply nested sources (x=1+1+...+1) this way.
            raise wire.SignalingError(
                wire.ErrorCode.INVALID_REQUEST,
                "The program is nested too deeply for Python to compile it.") from None
    except wire.SignalingError as exc:
        return error_response(request, exc)
    url = join_url(request, session)
    return web.json_response({**session.describe(), "join_url": url}, status=201)


async def get_session(request: web.Request) -> web.Response:
    try:
        session = await request.app[SESSIONS].describe(request.match_info["id"])
    except ClosedSession as exc:  # it was here: why it closed, and how to make it again
        return json_error(request, exc.to_http(), HTTP_STATUS.get(exc.code, 410))
    except wire.SignalingError as exc:
        return error_response(request, exc)
    return web.json_response({**session.describe(), "join_url": join_url(request, session)})


async def healthz(request: web.Request) -> web.Response:
    """For load balancers and supervisors: 200 while serving, 503 once shutdown began (so
    nothing new is sent here), with counts a person can read."""
    app = request.app
    registry = app[REGISTRY]
    counts = {"sessions": len(registry.sessions), "connections": len(registry.endpoints),
              "websockets": len(app[CONNECTIONS])}
    headers = {"Cache-Control": "no-store"}
    if app[DRAINING].is_set():
        return web.json_response({"status": "draining", **counts}, status=503,
                                 headers=headers)
    return web.json_response({"status": "ok", **counts}, headers=headers)


async def get_metrics(request: web.Request) -> web.Response:
    """Prometheus text: counts only (``signaling.metrics``), never an id or an address."""
    return web.Response(body=request.app[METRICS].render(),
                        headers={hdrs.CONTENT_TYPE: METRICS_CONTENT_TYPE,
                                 "Cache-Control": "no-store"})


async def get_protocol(request: web.Request) -> web.Response:
    return web.json_response(wire.schema_document())


async def get_sentences(request: web.Request) -> web.Response:
    """What a party tells its person (``mpyc_webrtc.sentences``), for the page to say, in
    the language it asks for (``?lang=``) where there is a translation."""
    return web.json_response(sentences.document(request.query.get("lang", "")))


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
        session = await request.app[SESSIONS].describe(request.match_info["id"])
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


async def websocket(request: web.Request) -> web.StreamResponse:
    if not origin_allowed(request):
        log.info("session - party -: refused a WebSocket from a foreign origin")
        return json_error(request, wire.error_message(
            wire.ErrorCode.FORBIDDEN_ORIGIN,
            "This server only takes WebSocket connections from its own pages. Open the join "
            "link itself instead of a page that embeds it."), 403)
    app = request.app
    if app[DRAINING].is_set():
        return error_response(request, shutting_down())
    limits, metrics = app[LIMITS], app[METRICS]
    ws = web.WebSocketResponse(heartbeat=limits["heartbeat"] or None,  # 0: no heartbeat
                               max_msg_size=WS_FRAME_LIMIT)
    try:
        await ws.prepare(request)
    except ConnectionResetError:  # the client left during the handshake
        return ws
    conn = Connection(ws, request, limits["max_outbox"], limits["max_outbox_bytes"], metrics)
    app[CONNECTIONS].add(conn)
    metrics.websockets.inc()
    try:
        await serve_websocket(request, conn)
    finally:
        app[CONNECTIONS].discard(conn)
        metrics.websockets.dec()
    return ws


async def serve_websocket(request: web.Request, conn: Connection) -> None:
    """Feed one WebSocket's frames to its ``Endpoint`` until it closes."""
    app = request.app
    registry, metrics, ws = app[REGISTRY], app[METRICS], conn.ws
    client = client_address(request)
    try:
        if app[DRAINING].is_set():  # shutdown began while the handshake went on
            raise shutting_down()
        registry.check_connection_capacity(client)
    except wire.SignalingError as exc:
        log.warning("session - party -: refused a WebSocket, %s", exc.code)
        conn.send(exc.to_message())
        await conn.finish()
        return
    endpoint = conn.endpoint = Endpoint(registry, conn.send, conn.close, client)
    loop = asyncio.get_running_loop()
    #: Whether the client closed the WebSocket itself, as it means to (a close frame saying
    #: normal or going away, the server not having asked): its party leaves. Anything else
    #: (the connection dropped, timed out, or the server closed it) keeps a place that a
    #: ``resume`` secret can take back.
    leaving = False
    #: Whether the client's end closed the connection without a close frame (its process
    #: or page is gone), unlike a connection lost to a timeout (the network).
    ended = False

    def lost_to_timeout() -> bool:
        return isinstance(ws.exception(), TimeoutError)  # no pong within the heartbeat

    try:
        while True:
            frame = await ws.receive()
            if frame.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                metrics.frame_arrived = loop.time()
                try:
                    endpoint.receive(frame.data)
                finally:
                    metrics.frame_arrived = None
            elif frame.type == WSMsgType.ERROR:
                log.info("%s: websocket error: %s", conn.label(), type(ws.exception()).__name__)
            elif frame.type == WSMsgType.CLOSE:
                leaving = not conn.closing and frame.data in (WSCloseCode.OK,
                                                              WSCloseCode.GOING_AWAY)
                break
            elif frame.type in (WSMsgType.CLOSING, WSMsgType.CLOSED):
                ended = frame.type == WSMsgType.CLOSED and not conn.closing \
                    and not lost_to_timeout()
                break
    except asyncio.CancelledError:
        # aiohttp cancels the handler when the connection ends, if so configured (its test
        # server is): the same as a CLOSED frame.
        ended = not conn.closing and not lost_to_timeout() and not app[DRAINING].is_set()
        raise
    except Exception:
        log.exception("%s: websocket handler failed", conn.label())
    finally:
        if endpoint.session is not None and endpoint.pid is not None:
            request[JOINED_AS] = (endpoint.session.id, endpoint.pid)
        endpoint.disconnected(leaving, ended)
        await conn.finish()


async def drain(app: web.Application, timeout: float) -> None:
    """Shut down gently: refuse new sessions and WebSockets (``server_shutting_down``,
    ``/healthz`` 503), tell every connected party, close each WebSocket with 1001 (going
    away), and wait up to ``timeout`` seconds for them to close; any still open then is
    dropped. Parties already computing lose nothing: their links are peer-to-peer."""
    if app[DRAINING].is_set():
        return
    app[DRAINING].set()
    connections = list(app[CONNECTIONS])
    log.info("session - party -: shutting down: telling %d connections, waiting at most %gs "
             "for them to close", len(connections), timeout)
    if isinstance(app[REGISTRY], SharedRegistry):
        # Their sessions live on in Redis: another process (or this one, restarted) takes
        # them, and each party its place back (its ``resume`` secret).
        told = Encoded.of(wire.error_message(wire.ErrorCode.RECONNECT, RESTARTING))
    else:
        told = Encoded.of(shutting_down().to_message())
    for conn in connections:
        conn.send(told)
        conn.close(WSCloseCode.GOING_AWAY)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while app[CONNECTIONS] and loop.time() < deadline:
        await asyncio.sleep(0.05)
    late = list(app[CONNECTIONS])
    for conn in late:
        conn.abort("the server is shutting down and it did not close in time")
    log.info("session - party -: %d WebSockets closed, %d dropped",
             len(connections) - len(late), len(late))


#: A session id as the server makes them (``secrets.token_urlsafe``), for the access log.
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: The longest request path the access log writes out (longer ones end in ``...``).
MAX_LOGGED_PATH = 200


class AccessLog(AbstractAccessLogger):
    """aiohttp's access log in the project's form: ``session ID party PID:`` first.

    The session is the one in the path (``/join/ID``, ``/api/sessions/ID``), or the one a
    WebSocket joined (``/ws``, logged when it closes). A line holds the client's address,
    the method, the path as sent (percent-encoded, so a line stays one line; at most
    ``MAX_LOGGED_PATH`` characters), the status, the bytes sent and the time taken: never
    the query string nor a header, and no secret (the join token travels inside WebSocket messages,
    the link's secret never reaches the server). ``/healthz`` and ``/metrics``, which
    monitors poll, are logged at DEBUG (``-v``).
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse,
            time: float) -> None:
        session, party = "-", "-"
        joined = request.get(JOINED_AS)
        if joined is not None:
            session, party = joined[0], str(joined[1])
        else:
            match_info = getattr(request, "match_info", None)
            found = match_info.get("id") if match_info is not None else None
            if found and _SESSION_ID.fullmatch(found):
                session = found
        path = request.rel_url.raw_path
        if len(path) > MAX_LOGGED_PATH:
            path = path[:MAX_LOGGED_PATH] + "..."
        level = logging.DEBUG if request.path in ("/healthz", "/metrics") else logging.INFO
        self.logger.log(level, "session %s party %s: %s %s %s %d %dB %.3fs", session, party,
                        request.remote or "-", request.method, path, response.status,
                        response.body_length, time)

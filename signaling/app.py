"""The signaling server: aiohttp I/O around the ``mpyc_webrtc.session`` core.

The server never sees MPC traffic: it hands out pids, relays SDP offers/answers
and ICE candidates between parties, and forgets sessions when they go idle.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
from typing import Any

import segno
from aiohttp import WSMsgType, web

from mpyc_webrtc import programs, wire
from mpyc_webrtc.ice import parse_ice_server
from mpyc_webrtc.session import Endpoint, Registry, Session

from .assets import ASSETS, Assets, add_routes
from .assets import load as load_assets

log = logging.getLogger("signaling")

REGISTRY = web.AppKey("registry", Registry)
PUBLIC_URL = web.AppKey("public_url", str)
#: aiohttp's own frame limit, kept above ours so oversize messages get a JSON error.
WS_FRAME_LIMIT = 4 * wire.MAX_MESSAGE_BYTES
MAX_REQUEST_BYTES = 512 * 1024


def create_app(*, idle_timeout: float = 600.0, max_sessions: int = 1000,
               ice_servers: list[dict[str, Any]] | None = None,
               sweep_interval: float | None = None,
               public_url: str | None = None,
               assets: Assets | None = None) -> web.Application:
    if sweep_interval is None:
        sweep_interval = min(10.0, idle_timeout / 4)
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[REGISTRY] = Registry(idle_timeout=idle_timeout, max_sessions=max_sessions,
                             ice_servers=ice_servers or [])
    app[PUBLIC_URL] = public_url or ""
    app.router.add_post("/api/sessions", create_session)
    app.router.add_get("/api/sessions/{id}", get_session)
    app.router.add_get("/api/sessions/{id}/qr.svg", get_qr)
    app.router.add_get("/api/programs", get_programs)
    app.router.add_get("/api/protocol", get_protocol)
    app.router.add_get("/", create_page)
    app.router.add_get("/ws", websocket)
    app.router.add_get("/join/{id}", join_page)
    add_routes(app, assets or load_assets())

    async def sweeper(app: web.Application):
        async def sweep():
            while True:
                await asyncio.sleep(sweep_interval)
                app[REGISTRY].expire()

        task = asyncio.create_task(sweep())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(sweeper)
    return app


def error_response(exc: wire.SignalingError) -> web.Response:
    status = {
        wire.ErrorCode.UNKNOWN_SESSION: 404,
        wire.ErrorCode.SERVER_BUSY: 503,
        wire.ErrorCode.MESSAGE_TOO_LARGE: 413,
    }.get(exc.code, 400)
    return web.json_response(exc.to_message(), status=status)


def join_url(request: web.Request, session: Session) -> str:
    base = request.app[PUBLIC_URL] or f"{request.scheme}://{request.host}"
    return f"{base.rstrip('/')}/join/{session.id}"


async def create_session(request: web.Request) -> web.Response:
    try:
        try:
            body = await request.json()
        except web.HTTPRequestEntityTooLarge:
            raise wire.SignalingError(
                wire.ErrorCode.MESSAGE_TOO_LARGE,
                f"The request is larger than {MAX_REQUEST_BYTES // 1024} KiB.") from None
        except (ValueError, UnicodeDecodeError):
            raise wire.SignalingError(
                wire.ErrorCode.MALFORMED_JSON, "The request body is not valid JSON.") from None
        session = request.app[REGISTRY].create(body)
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


async def get_programs(request: web.Request) -> web.Response:
    """The program library for the create page: what each asks and computes, and its code."""
    library = [{**entry, "source": programs.source(entry["name"])}
               for entry in programs.catalog_json()]
    return web.json_response(library)


async def get_qr(request: web.Request) -> web.Response:
    """The invite link as a QR code, for a phone's camera."""
    try:
        session = request.app[REGISTRY].get(request.match_info["id"])
    except wire.SignalingError as exc:
        return error_response(exc)
    out = io.BytesIO()
    segno.make(join_url(request, session), error="m").save(
        out, kind="svg", xmldecl=False, scale=6, border=2, dark="#1d2433",
        title="Invite link")
    return web.Response(body=out.getvalue(), content_type="image/svg+xml",
                        headers={"Cache-Control": "private, max-age=3600"})


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
        f"Join from a terminal:\n    mpyc-webrtc-peer join {url}"
        + (" --input YOUR_NUMBER" if program in programs.BUILTIN and
           session.program.source is None else "")
        + "\n"
    )
    return web.Response(text=text)


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=WS_FRAME_LIMIT)
    await ws.prepare(request)
    outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    endpoint = Endpoint(request.app[REGISTRY], outbox.put_nowait,
                        lambda: outbox.put_nowait(None))

    async def writer() -> None:
        while (msg := await outbox.get()) is not None:
            await ws.send_str(wire.encode(msg))
        await ws.close()

    write_task = asyncio.create_task(writer())
    try:
        async for frame in ws:
            if frame.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                endpoint.receive(frame.data)
            elif frame.type == WSMsgType.ERROR:
                log.info("websocket error: %s", ws.exception())
    finally:
        endpoint.disconnected()
        outbox.put_nowait(None)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(write_task, 5.0)
    return ws


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="mpyc-webrtc-server",
        description="Signaling server for MPyC sessions over WebRTC.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on")
    parser.add_argument("--ice-server", action="append", default=[], metavar="URL",
                        help="STUN/TURN server handed to every party "
                             "(stun:HOST:PORT or turn:USER:PASSWORD@HOST:PORT); repeatable")
    parser.add_argument("--idle-timeout", type=float, default=600.0, metavar="SECONDS",
                        help="close sessions that saw no activity for this long")
    parser.add_argument("--public-url", help="base URL in join links, if not the listen address")
    parser.add_argument("--session", metavar="PROGRAM:PARTIES",
                        help="create a session at start-up and print its join URL, e.g. sum:3")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every message")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s")
    try:
        ice_servers = [parse_ice_server(u) for u in args.ice_server]
    except ValueError as exc:
        raise SystemExit(f"mpyc-webrtc-server: {exc}") from None
    base = args.public_url or f"http://{args.host}:{args.port}"
    app = create_app(idle_timeout=args.idle_timeout, ice_servers=ice_servers,
                     public_url=args.public_url or base)
    lines = [f"mpyc-webrtc server on {base}",
             f"Create a session in your browser: {base}/",
             f"  or from a terminal: mpyc-webrtc-peer create {base} --parties 3 "
             "--program average"]
    if args.session:
        program, _, parties = args.session.partition(":")
        try:
            session = app[REGISTRY].create({"program": program, "parties": int(parties or 3)})
        except (ValueError, wire.SignalingError) as exc:
            raise SystemExit(f"mpyc-webrtc-server: --session {args.session}: {exc}") from None
        url = f"{base}/join/{session.id}"
        lines += [f"A session for {session.parties} parties running {program!r} is open. "
                  "Each party opens this link in a browser, or runs",
                  f"    mpyc-webrtc-peer join {url} --input YOUR_INPUT",
                  url]

    async def announce(app: web.Application) -> None:
        print("\n".join(lines), flush=True)

    app.on_startup.append(announce)
    web.run_app(app, host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()

"""A man in the middle for tests: forwards everything to the signaling server, and can
change what the server says, as a malicious server (or network) would.

Run it inside a test's network namespace, from the repository root::

    python -m testbed.tamper_proxy --listen 127.0.0.1:8081 --upstream http://127.0.0.1:8080 \\
        --mode flip-box

It prints ``tamper proxy on http://127.0.0.1:8081`` once listening. Every HTTP request
(any method and path, with its body and headers) is forwarded; the upstream's own address
in text and JSON answers (``join_url``) is replaced by the proxy's, so links made through
the proxy lead back to it. ``/ws`` is proxied frame by frame both ways. Modes (each logs
what it changed to stderr):

- ``none``: change nothing.
- ``flip-box``: flip one base64url character in the middle of the ``box`` of the first
  ``signal`` the server relays to a client.
- ``replay``: deliver the first relayed ``signal`` to its receiver twice.
- ``swap-from``: change the ``from`` of the first relayed ``signal`` to another pid of the
  session (a third party if there is one, else the receiver's own pid).
- ``swap-program``: give every party another program, in ``welcome`` and in
  ``GET /api/sessions/ID``: a built-in becomes another built-in (sum <-> max), an uploaded
  source gets a comment appended.
- ``swap-welcome``: as ``swap-program``, but only in ``welcome`` (the session's page and
  ``GET /api/sessions/ID`` stay honest).
- ``halve-parties``: say the session has half as many parties as it has (rounded down), in
  ``welcome``, ``roster``, ``start`` and ``GET /api/sessions/ID``, consistently: the places'
  names, members and pairs beyond that are left out.
- ``drop-relay-only``: say the session is not relay only (``relay_only: false``) in
  ``welcome`` and ``GET /api/sessions/ID``, although its creator chose relay only.
- ``rename-places``: give the places each other's names (the list reversed; places without
  names become "place 0", "place 1", ...), in ``welcome``, ``roster`` and ``GET
  /api/sessions/ID``.
- ``unprompted-start``: send a ``start`` for a round the party has not said it is ready
  for: right after its ``welcome`` if it joined without being ready (a page), else right
  after the first real ``start`` (a native peer joins ready, for round 1 only), for the next
  round. The proxy follows what the party said (``join``'s and ``ready``'s ``ready``).
- ``edit-protocol``: serve ``GET /api/protocol`` with the sealing's ``token_info`` replaced
  by its ``key_info``, so that a page that took the constants from there would show the
  server the sealing key as its join token.
- ``replay-typed``: deliver the first relayed ``signal`` to its receiver, then again with
  ``from`` as a string (``"0"`` instead of ``0``), as if it were another sender whose
  message numbers count apart.
- ``drop-descriptor``: hand out no sealed description of the session (``descriptor:
  null``) in ``welcome`` and ``GET /api/sessions/ID``.
- ``swap-roster-identity``: in every ``roster``, give the first two members with keys
  each other's ``identity``.
- ``rename-member``: in every ``roster``, call party 0 "Mallory" (or "Mallory 2" if that
  is its name).

An insider, who holds the join link's secret (``--link URL``, or the environment's
``TAMPER_PROXY_LINK``), can open and seal signals as any party; these modes change the
first relayed ``offer`` and seal it again, with the same number:

- ``reseal-name``: the offer claims the name "Mallory" (its signature stays the sender's).
- ``reseal-identity``: the offer names another key (a fresh one) as its sender's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import sys
from typing import Any

from aiohttp import ClientSession, ClientTimeout, WSMsgType, web
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mpyc_webrtc import launch, programs, wire
from mpyc_webrtc.identity import Identity
from mpyc_webrtc.sealing import (
    NONCE_BYTES,
    JoinSecret,
    b64url_decode,
    b64url_encode,
    compact_json,
    seal_key,
)

MODES = ("none", "flip-box", "replay", "swap-from", "swap-program", "swap-welcome",
         "halve-parties", "drop-relay-only", "rename-places", "unprompted-start",
         "edit-protocol", "replay-typed", "drop-descriptor", "swap-roster-identity",
         "rename-member", "reseal-name", "reseal-identity")
#: Modes that change the first relayed ``signal``, once.
SIGNAL_MODES = ("flip-box", "replay", "swap-from", "replay-typed")
#: Modes that change every ``roster``.
ROSTER_MODES = ("swap-roster-identity", "rename-member")
#: Modes of an insider who holds the link's secret: they change the first ``offer``.
INSIDER_MODES = ("reseal-name", "reseal-identity")
#: Headers that belong to one hop, never forwarded.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailer", "trailers", "transfer-encoding", "upgrade", "host", "content-length",
              "accept-encoding", "content-encoding"}
SWAPS = {"sum": "max", "max": "sum"}
MAX_FRAME = 16 * 1024 * 1024


def log(text: str) -> None:
    print(f"tamper proxy: {text}", file=sys.stderr, flush=True)


class Proxy:
    def __init__(self, upstream: str, public: str, mode: str, link: str | None = None):
        self.upstream = upstream.rstrip("/")
        self.public = public.rstrip("/")
        self.mode = mode
        #: The first relayed ``signal`` has been tampered with (modes that do it once).
        self.done = False
        self.http: ClientSession | None = None
        #: An insider's sealing key (from the join link's secret).
        self.aead: AESGCM | None = None
        if link is not None:
            self.aead = AESGCM(seal_key(JoinSecret.from_fragment(link.split("#", 1)[1]).secret))
        elif mode in INSIDER_MODES:
            raise SystemExit(f"mode {mode} needs the join link (--link or TAMPER_PROXY_LINK)")
        #: What the roster modes logged already (once per change, not per roster).
        self._told: set[str] = set()

    # -- what is changed ---------------------------------------------------------------

    def other_program(self, program: dict[str, Any]) -> dict[str, Any]:
        if launch.is_builtin(program):
            name = program["name"]
            other = SWAPS.get(name) or next(n for n in sorted(programs.BUILTIN) if n != name)
            log(f"program {name!r} replaced by {other!r}")
            return {**program, "name": other}
        log(f"program {program.get('name')!r}: a comment appended to its source")
        return {**program, "source": program["source"] + "\n# changed by the tamper proxy\n"}

    def half(self, parties: Any) -> Any:
        return max(1, parties // 2) if isinstance(parties, int) else parties

    def renamed(self, labels: list[str]) -> list[str]:
        new = list(reversed(labels))
        if new == labels:
            new = [f"place {i}" for i in range(len(labels))]
        return new

    def reshape(self, doc: dict[str, Any], where: str,
                state: dict[str, Any] | None = None) -> dict[str, Any]:
        """The session's shape as the shape-lying modes tell it (a ``welcome``, ``roster``,
        ``start`` or ``GET /api/sessions/ID``; ``state``: the party's connection)."""
        doc = dict(doc)
        parties = doc.get("parties")
        if self.mode == "halve-parties" and isinstance(parties, int):
            half = self.half(parties)
            doc["parties"] = half
            if isinstance(doc.get("labels"), list):
                doc["labels"] = doc["labels"][:half]
            if isinstance(doc.get("members"), list):
                doc["members"] = [m for m in doc["members"] if m.get("pid", 0) < half]
            if isinstance(doc.get("pairs"), list):
                doc["pairs"] = [p for p in doc["pairs"] if p.get("b", 0) < half]
            log(f"halve-parties: {where} says {half} parties instead of {parties}")
        elif self.mode == "drop-relay-only" and "relay_only" in doc:
            log(f"drop-relay-only: {where} says relay_only false (was {doc['relay_only']})")
            doc["relay_only"] = False
        elif self.mode == "rename-places":
            labels = doc.get("labels")
            if isinstance(labels, list):  # a welcome, GET /api/sessions/ID
                doc["labels"] = names = self.renamed(labels)
                log(f"rename-places: {where} names the places {names} instead of {labels}")
                if state is not None:
                    state["labels"] = names
            else:  # a roster: its members' labels, as this party's welcome renamed them
                names = (state or {}).get("labels")
            if names is not None and isinstance(doc.get("members"), list):
                doc["members"] = [{**m, "label": names[m["pid"]]}
                                  if isinstance(m.get("pid"), int) and 0 <= m["pid"] < len(names)
                                  else m for m in doc["members"]]
        elif self.mode == "drop-descriptor" and "descriptor" in doc:
            log(f"drop-descriptor: {where} hands out no descriptor")
            doc["descriptor"] = None
        return doc

    def retold(self, roster: dict[str, Any], me: Any) -> dict[str, Any]:
        """A ``roster`` as the roster modes tell it to party ``me``."""
        members = [dict(m) for m in roster.get("members") or [] if isinstance(m, dict)]
        members.sort(key=lambda m: m.get("pid") if isinstance(m.get("pid"), int) else -1)
        if self.mode == "swap-roster-identity":
            keyed = [m for m in members if m.get("identity")]
            if len(keyed) < 2 or keyed[0]["identity"] == keyed[1]["identity"]:
                return roster
            a, b = keyed[0], keyed[1]
            a["identity"], b["identity"] = b["identity"], a["identity"]
            self.once(f"swap-roster-identity: rosters to party {me} show party {a['pid']} "
                      f"with the key {a['identity']} and party {b['pid']} with "
                      f"{b['identity']}")
        else:  # rename-member
            first = next((m for m in members if m.get("pid") == 0), None)
            if first is None:
                return roster
            new = "Mallory 2" if first.get("name") == "Mallory" else "Mallory"
            self.once(f"rename-member: rosters to party {me} call party 0 {new!r} "
                      f"instead of {first.get('name')!r}")
            first["name"] = new
        return {**roster, "members": members}

    def once(self, line: str) -> None:
        if line not in self._told:
            self._told.add(line)
            log(line)

    def resealed(self, msg: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
        """An insider's change to the first ``offer`` relayed (else ``msg`` as it is): it
        opens the box with the link's key, changes what its mode says and seals it again
        under the same number, as the sender would have."""
        assert self.aead is not None
        sender, seq, me = msg.get("from"), msg.get("seq"), state["pid"]
        try:
            aad = wire.signal_aad(state["session"], sender, me, seq)
            data = b64url_decode(msg["box"])
            payload = json.loads(self.aead.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], aad))
        except (KeyError, TypeError, ValueError, InvalidTag) as exc:
            log(f"{self.mode}: could not open signal {seq} from party {sender}: {exc!r}")
            return msg
        if not isinstance(payload, dict) or payload.get("kind") != "offer":
            return msg
        self.done = True
        if self.mode == "reseal-name":
            changed, what = {**payload, "name": "Mallory"}, "name"
        else:
            changed, what = {**payload, "identity": Identity.generate().did}, "identity"
        nonce = secrets.token_bytes(NONCE_BYTES)
        box = b64url_encode(nonce + self.aead.encrypt(nonce, compact_json(changed), aad))
        log(f"{self.mode}: the offer in signal {seq} from party {sender} to party {me} now "
            f"says {what} {changed[what]!r} instead of {payload[what]!r}, sealed again")
        return {**msg, "box": box}

    def to_client(self, msg: dict[str, Any], state: dict[str, Any]) -> list[dict[str, Any]]:
        """The messages to deliver instead of ``msg`` (server -> client)."""
        kind = msg.get("type")
        if kind == "roster" and self.mode in ROSTER_MODES:
            return [self.retold(msg, state["pid"])]
        if kind == "signal" and self.mode in INSIDER_MODES and not self.done:
            return [self.resealed(msg, state)]
        if kind == "welcome":
            state["pid"], state["parties"] = msg.get("pid"), msg.get("parties")
            if self.mode in ("swap-program", "swap-welcome"):
                return [{**msg, "program": self.other_program(msg["program"])}]
            out = [self.reshape(msg, f"the welcome of party {msg.get('pid')}", state)]
            if self.mode == "unprompted-start" and not state["ready"] and not state["started"]:
                state["started"] = True
                log(f"unprompted-start: round 1 started for party {msg.get('pid')}, which "
                    "has not said it is ready")
                out.append({"v": msg.get("v", 1), "type": "start",
                            "parties": msg.get("parties"), "round": 1})
            return out
        if kind in ("roster", "start"):
            out = [self.reshape(msg, f"a {kind} to party {state['pid']}", state)]
            if kind == "start":
                state["ready"] = False  # the next round needs its own "ready"
                if self.mode == "unprompted-start" and not state["started"]:
                    state["started"] = True
                    later = msg.get("round", 1) + 1
                    log(f"unprompted-start: round {later} started for party {state['pid']}, "
                        "which has not said it is ready for it")
                    out.append({**msg, "round": later})
            return out
        if kind != "signal" or self.done or self.mode not in SIGNAL_MODES:
            return [msg]
        self.done = True
        where = f"signal {msg.get('seq')} from party {msg.get('from')} to party {state['pid']}"
        if self.mode == "flip-box":
            box = msg["box"]
            i = len(box) // 2
            new = box[:i] + ("A" if box[i] != "A" else "B") + box[i + 1:]
            log(f"flip-box: character {i} of the box of {where} changed")
            return [{**msg, "box": new}]
        if self.mode == "replay":
            log(f"replay: {where} delivered twice")
            return [msg, msg]
        if self.mode == "replay-typed":
            log(f"replay-typed: {where} delivered again, from {str(msg['from'])!r}")
            return [msg, {**msg, "from": str(msg["from"])}]
        sender, me, parties = msg["from"], state["pid"], state.get("parties") or 2
        others = [p for p in range(parties) if p not in (sender, me)]
        fake = others[0] if others else me
        log(f"swap-from: {where} now says it is from party {fake}")
        return [{**msg, "from": fake}]

    def from_client(self, msg: dict[str, Any], state: dict[str, Any]) -> None:
        """Follow what the party says (client -> server; forwarded unchanged)."""
        if msg.get("type") in ("join", "ready"):
            state["ready"] = msg.get("ready") is True
        if msg.get("type") == "join":
            state["session"] = msg.get("session")

    def rewrite_body(self, path: str, body: bytes, content_type: str) -> bytes:
        if not (content_type.startswith("text/") or "json" in content_type):
            return body
        text = body.decode("utf-8", "replace")
        session = re.fullmatch(r"/api/sessions/[^/]+", path)
        if self.mode == "swap-program" and session:
            try:
                info = json.loads(text)
                program = {k: info["program"][k] for k in ("name", "args", "builtin")}
                if not program["builtin"]:
                    program["source"] = info["program"]["source"]
                info["program"] = launch.describe_program(self.other_program(program))
                text = json.dumps(info)
            except (ValueError, KeyError, TypeError) as exc:
                log(f"could not swap the program in {path}: {exc}")
        elif session and self.mode in ("halve-parties", "drop-relay-only", "rename-places",
                                       "drop-descriptor"):
            try:
                info = json.loads(text)
                if "parties" in info:  # not an error
                    text = json.dumps(self.reshape(info, path))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                log(f"could not change {path}: {exc}")
        elif self.mode == "edit-protocol" and path == "/api/protocol":
            try:
                schema = json.loads(text)
                sealing = schema["sealing"]
                log(f"edit-protocol: token_info {sealing['token_info']!r} replaced by "
                    f"key_info {sealing['key_info']!r}")
                sealing["token_info"] = sealing["key_info"]
                text = json.dumps(schema)
            except (ValueError, KeyError, TypeError) as exc:
                log(f"could not edit {path}: {exc}")
        return text.replace(self.upstream, self.public).encode()

    # -- plumbing ----------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/ws" and request.headers.get("Upgrade", "").lower() == "websocket":
            return await self.websocket(request)
        assert self.http is not None
        headers = {k: v.replace(self.public, self.upstream) if k.lower() == "origin" else v
                   for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read()
        async with self.http.request(request.method, self.upstream + request.path_qs,
                                     headers=headers, data=body or None,
                                     allow_redirects=False) as reply:
            data = await reply.read()
            content_type = reply.headers.get("Content-Type", "")
            data = self.rewrite_body(request.path, data, content_type)
            out = {k: v for k, v in reply.headers.items() if k.lower() not in HOP_BY_HOP}
            if "Location" in out:
                out["Location"] = out["Location"].replace(self.upstream, self.public)
            return web.Response(status=reply.status, body=data, headers=out)

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        assert self.http is not None
        client = web.WebSocketResponse(max_msg_size=MAX_FRAME)
        await client.prepare(request)
        # The server checks Origin; a relay in the middle simply claims the server's own.
        headers = {k: v.replace(self.public, self.upstream) for k, v in request.headers.items()
                   if k.lower() in ("origin", "user-agent", "cookie")}
        state: dict[str, Any] = {"pid": None, "parties": None, "ready": False,
                                 "started": False, "session": None}
        async with self.http.ws_connect(self.upstream.replace("http", "ws", 1) + "/ws",
                                        headers=headers, max_msg_size=MAX_FRAME) as server:
            async def up() -> None:
                async for frame in client:
                    if frame.type == WSMsgType.TEXT:
                        try:
                            said = json.loads(frame.data)
                        except ValueError:
                            said = None
                        if isinstance(said, dict):
                            self.from_client(said, state)
                        await server.send_str(frame.data)
                    elif frame.type == WSMsgType.BINARY:
                        await server.send_bytes(frame.data)
                await server.close()

            async def down() -> None:
                async for frame in server:
                    if frame.type == WSMsgType.TEXT:
                        try:
                            msg = json.loads(frame.data)
                        except ValueError:
                            await client.send_str(frame.data)
                            continue
                        if not isinstance(msg, dict):
                            await client.send_str(frame.data)
                            continue
                        for out in self.to_client(msg, state):
                            await client.send_str(json.dumps(out, separators=(",", ":")))
                    elif frame.type == WSMsgType.BINARY:
                        await client.send_bytes(frame.data)
                await client.close()

            tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if not client.closed:
            await client.close()
        return client


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m testbed.tamper_proxy",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, metavar="HOST:PORT")
    parser.add_argument("--upstream", required=True, metavar="URL")
    parser.add_argument("--mode", choices=MODES, default="none")
    parser.add_argument("--link", default=os.environ.get("TAMPER_PROXY_LINK"),
                        help="the join link, for an insider's modes (default: "
                             "$TAMPER_PROXY_LINK)")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    public = f"http://{args.listen}"
    proxy = Proxy(args.upstream, public, args.mode,
                  args.link if args.mode in INSIDER_MODES else None)
    proxy.http = ClientSession(timeout=ClientTimeout(total=None), auto_decompress=False)
    app = web.Application(client_max_size=MAX_FRAME)
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, int(port)).start()
    print(f"tamper proxy on {public}", flush=True)
    log(f"mode {args.mode}, forwarding to {proxy.upstream}")
    try:
        await asyncio.Event().wait()
    finally:
        await proxy.http.close()
        await runner.cleanup()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass

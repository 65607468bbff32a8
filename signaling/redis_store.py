"""The I/O of shared sessions (``signaling.shared``): Redis, through redis-py's asyncio client.

What Redis holds, under ``PREFIX`` (``mpyc-webrtc:``):

==========================  ===============================================================
``s:ID``  (hash)            how the session was made (``spec``: the create request, when,
                            until when), ``ends`` (ms) and the creator's address ``client``
``s:ID:log``  (list)        the session's entries, in the one order all replicas apply
``sessions``  (sorted set)  every open session, scored by when it expires (ms): counted
                            against ``max_sessions``
``client:ADDR`` (sorted s.) the same for one creator's address (``max_sessions_per_client``)
``proc:NAME``  (string)     a live server process; it expires 3 heartbeats after the last
==========================  ===============================================================

and the channel ``s:ID`` carries each new entry (``SEQ JSON``) to the processes that keep a
replica. ``APPEND`` pushes and publishes in one script, so the channel's order is the
list's. A session's keys expire ``idle_timeout`` (plus a margin) after its last entry, and
never after its ``max_age``: Redis forgets idle sessions by itself (TTL); processes whose
parties are computing renew them (``touch``). A process that dies stops renewing
``proc:NAME``: the others then write that its parties lost their connection (``lost``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from mpyc_webrtc.wire import ErrorCode, error_message

from .registry import sessions_busy, too_many_sessions
from .session import Session
from .shared import Op, SharedRegistry, encode_entry, spec_of

log = logging.getLogger(__name__)

PREFIX = "mpyc-webrtc:"
#: How often a process says it is alive, and how long that lasts.
HEARTBEAT = 2.0
HEARTBEAT_TTL = 3 * HEARTBEAT
#: How many heartbeats between checks that replicas still exist (and renewals).
CHECK_EVERY = 5
#: Most appends written in one round trip.
BATCH = 256
#: How long the listener waits for a message before it lets a (un)subscription through.
LISTEN_TIMEOUT = 0.05
#: How long a process waits for Redis to confirm a subscription.
SUBSCRIBE_TIMEOUT = 5.0

CREATE = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return -1 end
if ARGV[8] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[4]) then return -2 end
end
local ttl = math.max(1, math.min(tonumber(ARGV[2]), tonumber(ARGV[6]) - now))
redis.call('HSET', KEYS[1], 'spec', ARGV[5], 'ends', ARGV[6], 'client', ARGV[8])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], now + ttl, ARGV[7])
if ARGV[8] ~= '' then
  redis.call('ZADD', KEYS[3], now + ttl, ARGV[7])
  redis.call('PEXPIRE', KEYS[3], math.max(1, tonumber(ARGV[6]) - now))
end
return 1
"""

#: KEYS: meta, log, sessions; ARGV: entry ('' only renews), now, ttl, channel, id, prefix.
APPEND = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local n = 0
if ARGV[1] ~= '' then
  n = redis.call('RPUSH', KEYS[2], ARGV[1])
  redis.call('PUBLISH', ARGV[4], n .. ' ' .. ARGV[1])
end
local now = tonumber(ARGV[2])
local ends = tonumber(redis.call('HGET', KEYS[1], 'ends'))
local ttl = math.max(1, math.min(tonumber(ARGV[3]), ends - now))
redis.call('PEXPIRE', KEYS[1], ttl)
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ttl) end
redis.call('ZADD', KEYS[3], now + ttl, ARGV[5])
local client = redis.call('HGET', KEYS[1], 'client')
if client and client ~= '' then
  redis.call('ZADD', ARGV[6] .. 'client:' .. client, now + ttl, ARGV[5])
end
if ARGV[1] == '' then return -1 end
return n
"""

#: KEYS: meta, log, sessions; ARGV: id, prefix.
DELETE = """
local client = redis.call('HGET', KEYS[1], 'client')
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
if client and client ~= '' then redis.call('ZREM', ARGV[2] .. 'client:' .. client, ARGV[1]) end
return 1
"""


class RedisUnavailable(Exception):
    """Redis cannot be reached (at start-up): the sentence says what to do."""


class RedisStore:
    """Keeps ``registry``'s sessions in the Redis at ``url``: writes what it queues
    (``SharedRegistry.ops``), hands it the entries of its replicas in order, and says this
    process is alive. ``observe`` (``Metrics.redis``) is told each round trip's kind and
    time."""

    def __init__(self, registry: SharedRegistry, url: str, *, prefix: str = PREFIX,
                 ttl_margin: float = 20.0,
                 observe: Callable[[str, float], None] | None = None,
                 arrived: Callable[[float | None], None] | None = None):
        self.registry = registry
        self.url = url
        self.prefix = prefix
        #: Keys live this long after the last entry: the idle timeout, and time for a
        #: replica's own sweep to close the session first (its parties are told why).
        self.ttl_ms = int((registry.idle_timeout + ttl_margin) * 1000)
        self.observe = observe
        #: Told when the entry being applied was made (``loop.time()`` terms), then None:
        #: the relay latency counts from a signal's arrival at whichever process.
        self.arrived = arrived
        self.redis: aioredis.Redis | None = None
        self.pubsub: Any = None
        self._wakeup = asyncio.Event()
        #: Whether the writer is in the middle of a write (``settle``, ``close`` wait).
        self._busy = False
        self._tasks: list[asyncio.Task[None]] = []
        #: Sessions being loaded: the entries that came meanwhile, kept for after.
        self._loading: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self._subscribed: dict[str, asyncio.Event] = {}
        self._scripts: dict[str, Any] = {}
        #: Set when entries may have been missed: check every replica at once.
        self._check_now = asyncio.Event()
        #: One coroutine at a time on the subscription's connection (reading, or
        #: subscribing): redis-py's asyncio PubSub is not safe for more.
        self._pubsub_lock = asyncio.Lock()

    # -- keys ------------------------------------------------------------------------------

    def meta(self, sid: str) -> str:
        return f"{self.prefix}s:{sid}"

    def log_key(self, sid: str) -> str:
        return f"{self.prefix}s:{sid}:log"

    def channel(self, sid: str) -> str:
        return f"{self.prefix}s:{sid}"

    # -- life ------------------------------------------------------------------------------

    async def start(self) -> None:
        self.redis = aioredis.from_url(self.url, decode_responses=True)
        try:
            await self.redis.ping()
        except (RedisError, OSError) as exc:
            await self.redis.aclose()
            raise RedisUnavailable(
                f"cannot reach Redis at {self.url} ({exc}). Start redis-server, or check "
                "--redis (redis://HOST:PORT/DB).") from None
        for name, text in (("create", CREATE), ("append", APPEND), ("delete", DELETE)):
            self._scripts[name] = self.redis.register_script(text)
        self.pubsub = self.redis.pubsub()
        # Always one subscription (this process's own channel), so the listener can read.
        own = f"{self.prefix}proc:{self.registry.proc}"
        self._subscribed[own] = asyncio.Event()
        await self.pubsub.subscribe(own)
        self.registry.wake = self._wakeup.set
        self.registry.forgotten = self._forgotten
        await self._heartbeat_once()
        self._tasks = [asyncio.create_task(self._writer()),
                       asyncio.create_task(self._listener()),
                       asyncio.create_task(self._heartbeat())]
        await asyncio.wait_for(self._subscribed[own].wait(), SUBSCRIBE_TIMEOUT)
        log.info("session - party -: sessions are shared through Redis at %s as process %s",
                 self.url, self.registry.proc)

    async def close(self, timeout: float = 5.0) -> None:
        """Write what is still queued (within ``timeout``), then stop."""
        deadline = asyncio.get_running_loop().time() + timeout
        while (self.registry.ops or self._busy) and \
                asyncio.get_running_loop().time() < deadline:
            self._wakeup.set()
            await asyncio.sleep(0.02)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.redis is not None:
            with contextlib.suppress(RedisError, OSError):
                await self.redis.delete(f"{self.prefix}proc:{self.registry.proc}")
            with contextlib.suppress(RedisError, OSError):
                await self.pubsub.aclose()
            await self.redis.aclose()

    async def keep(self, sid: str) -> bool:
        """Keep a replica of ``sid`` now (as a join does); whether the session exists."""
        return sid in self.registry.sessions or await self._load(sid)

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait until everything queued is written and every replica has applied every
        entry of its log (for tests and benchmarks: a server never waits for this)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        assert self.redis is not None
        while loop.time() < deadline:
            if not self.registry.ops and not self._busy and not self._loading:
                sids = list(self.registry.sessions)
                async with self.redis.pipeline(transaction=False) as pipe:
                    for sid in sids:
                        pipe.llen(self.log_key(sid))
                    lengths = await pipe.execute()
                if all(self.registry.applied.get(sid, n) >= n
                       for sid, n in zip(sids, lengths, strict=True)) and \
                        not self.registry.ops:
                    return
            self._wakeup.set()
            await asyncio.sleep(0.002)
        raise TimeoutError("the shared sessions did not settle")

    async def _timed(self, kind: str, call: Awaitable[Any]) -> Any:
        start = time.perf_counter()
        try:
            return await call
        finally:
            if self.observe is not None:
                self.observe(kind, time.perf_counter() - start)

    # -- what the HTTP API asks ------------------------------------------------------------

    async def create(self, request: Any, client: str | None) -> Session:
        """Make a session (checked by the core), counted against the limits of all
        processes together."""
        registry = self.registry
        session = registry.build(request)
        now = registry.clock()
        spec = json.dumps(spec_of(session, request), separators=(",", ":"))
        assert self.redis is not None
        result = await self._timed("create", self._scripts["create"](
            keys=[self.meta(session.id), f"{self.prefix}sessions",
                  f"{self.prefix}client:{client or ''}"],
            args=[int(now * 1000), self.ttl_ms, registry.max_sessions,
                  registry.max_sessions_per_client, spec, int(session.ends * 1000),
                  session.id, client or ""]))
        if result == -1:
            raise sessions_busy()
        if result == -2:
            raise too_many_sessions(registry.max_sessions_per_client)
        session.client = client
        log.info("session %s party -: created for %d parties", session.id, session.parties)
        return session

    async def describe(self, sid: str) -> Session:
        """Session ``sid`` as it stands (this process's replica, or read from Redis)."""
        session = self.registry.sessions.get(sid)
        if session is not None:
            return session
        spec, entries = await self._read(sid)
        if spec is None:
            await self._recall_closed(sid)
            raise self.registry.gone(sid)
        return self.registry.replica(sid, spec, entries)

    async def _read(self, sid: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        assert self.redis is not None
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hget(self.meta(sid), "spec")
            pipe.lrange(self.log_key(sid), 0, -1)
            spec, entries = await self._timed("read", pipe.execute())
        if spec is None:
            return None, []
        return json.loads(spec), [json.loads(e) for e in entries]

    # -- writing ---------------------------------------------------------------------------

    async def _writer(self) -> None:
        ops = self.registry.ops
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while ops:
                self._busy = True
                batch = [ops.popleft()]
                try:
                    op = batch[0]
                    if op.kind == "join":
                        if op.sid not in self.registry.sessions and \
                                not await self._load(op.sid):
                            await self._recall_closed(op.sid)
                            self.registry.missing(op)
                            continue
                        await self._append(batch)
                    elif op.kind == "append":
                        while ops and ops[0].kind == "append" and len(batch) < BATCH:
                            batch.append(ops.popleft())
                        await self._append(batch)
                    elif op.kind == "delete":
                        await self._delete(op.sid, op.entry.get("closed"))
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("session %s party -: writing %d entries to Redis failed",
                                  batch[0].sid, len(batch))
                    for op in batch:  # every one of them: none may be lost in silence
                        self._failed(op)
                finally:
                    self._busy = False

    def _failed(self, op: Op) -> None:
        """Redis did not take ``op``: the connection it came from is told and closed (its
        party will reconnect), rather than left believing it was heard."""
        endpoint = self.registry.local.get(op.entry.get("c", ""))
        if endpoint is not None and op.entry.get("op") in ("join", "msg"):
            endpoint.joining = None
            endpoint.send(error_message(
                ErrorCode.RECONNECT,
                "The signaling server lost touch with its session store for a moment. "
                "Join again with the same link."))
            endpoint.close()

    async def _append(self, batch: list[Op]) -> None:
        assert self.redis is not None
        now = int(self.registry.clock() * 1000)
        script = self._scripts["append"]
        async with self.redis.pipeline(transaction=False) as pipe:
            for op in batch:
                await script(keys=[self.meta(op.sid), self.log_key(op.sid),
                                   f"{self.prefix}sessions"],
                             args=[encode_entry(op.entry), now, self.ttl_ms,
                                   self.channel(op.sid), op.sid, self.prefix],
                             client=pipe)
            results = await self._timed("append", pipe.execute(raise_on_error=False))
        for op, result in zip(batch, results, strict=True):
            if isinstance(result, Exception):
                log.error("session %s party -: Redis refused an entry: %s", op.sid, result)
                self._failed(op)
            elif result == 0:
                self.registry.missing(op)

    def closed_key(self, sid: str) -> str:
        return f"{self.prefix}closed:{sid}"

    async def _delete(self, sid: str, closed: dict[str, Any] | None = None) -> None:
        """Forget session ``sid``; if it closed, keep why and its settings for ``max_age``
        (as every process remembers the sessions it closed): a late joiner may reach any."""
        assert self.redis is not None
        await self._timed("delete", self._scripts["delete"](
            keys=[self.meta(sid), self.log_key(sid), f"{self.prefix}sessions"],
            args=[sid, self.prefix]))
        if closed is not None:
            await self._timed("delete", self.redis.set(
                self.closed_key(sid), json.dumps(closed, separators=(",", ":")),
                px=max(1, int(self.registry.max_age * 1000))))

    async def _recall_closed(self, sid: str) -> None:
        """If another process closed ``sid``, learn why from the store (``_delete``)."""
        assert self.redis is not None
        if sid in self.registry.closed_sessions:
            return
        kept = await self._timed("read", self.redis.get(self.closed_key(sid)))
        if kept is None:
            return
        try:
            closed = json.loads(kept)
            self.registry.recall_closed(sid, ErrorCode(closed["code"]), str(closed["text"]),
                                        dict(closed["settings"]))
        except (ValueError, KeyError, TypeError):
            log.warning("session %s party -: unreadable record of its closing", sid)

    async def _load(self, sid: str) -> bool:
        """Keep a replica of ``sid``: listen first, then read, so no entry is missed."""
        self._loading[sid] = []
        try:
            await self._subscribe(sid)
            spec, entries = await self._read(sid)
            if spec is None:
                await self._unsubscribe(sid)
                return False
            self.registry.loaded(sid, spec, entries)
            for seq, entry in sorted(self._loading[sid], key=lambda x: x[0]):
                self.registry.apply(sid, seq, entry)
            return True
        finally:
            self._loading.pop(sid, None)

    async def _subscribe(self, sid: str) -> None:
        channel = self.channel(sid)
        self._subscribed[channel] = done = asyncio.Event()
        async with self._pubsub_lock:
            await self.pubsub.subscribe(channel)
        await asyncio.wait_for(done.wait(), SUBSCRIBE_TIMEOUT)

    async def _unsubscribe(self, sid: str) -> None:
        self._subscribed.pop(self.channel(sid), None)
        try:
            async with self._pubsub_lock:
                await self.pubsub.unsubscribe(self.channel(sid))
        except (RedisError, OSError, RuntimeError) as exc:
            # Not listening costs only the entries that still come: they are ignored.
            log.debug("session %s party -: unsubscribing failed: %r", sid, exc)

    def _forgotten(self, sid: str) -> None:
        if sid not in self._loading:
            asyncio.get_running_loop().create_task(self._unsubscribe(sid))

    # -- reading ---------------------------------------------------------------------------

    async def _listener(self) -> None:
        start = len(self.prefix) + 2  # "s:"
        while True:
            try:
                async with self._pubsub_lock:
                    msg = await self.pubsub.get_message(timeout=LISTEN_TIMEOUT)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # redis-py subscribes again as it reconnects; what came meanwhile is read
                # from the logs at the next check, which comes at once.
                log.warning("session - party -: reading from Redis failed (%r); reconnecting",
                            exc)
                await asyncio.sleep(1.0)
                self._check_now.set()
                continue
            if msg is None:
                continue
            channel = msg.get("channel")
            if msg["type"] == "subscribe":
                event = self._subscribed.get(channel)
                if event is not None:
                    event.set()
                continue
            if msg["type"] != "message" or not channel.startswith(f"{self.prefix}s:"):
                continue
            try:
                seq_text, _, text = msg["data"].partition(" ")
                await self._arrived(channel[start:], int(seq_text), json.loads(text))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("session %s party -: applying an entry failed", channel[start:])

    async def _arrived(self, sid: str, seq: int, entry: dict[str, Any]) -> None:
        if sid in self._loading:
            self._loading[sid].append((seq, entry))
            return
        applied = self.registry.applied.get(sid)
        if applied is None or seq <= applied:
            return
        if seq > applied + 1:  # missed some (Redis dropped us for a moment): read them
            await self._catch_up(sid, seq - 1)
        if self.arrived is not None and entry.get("op") == "msg":
            loop_now = asyncio.get_running_loop().time()
            self.arrived(loop_now - max(0.0, time.time() - entry["t"]))
            try:
                self.registry.apply(sid, seq, entry)
            finally:
                self.arrived(None)
        else:
            self.registry.apply(sid, seq, entry)

    # -- liveness --------------------------------------------------------------------------

    async def _heartbeat_once(self) -> None:
        assert self.redis is not None
        await self._timed("heartbeat", self.redis.set(
            f"{self.prefix}proc:{self.registry.proc}", str(time.time()),
            px=int(HEARTBEAT_TTL * 1000)))

    async def _heartbeat(self) -> None:
        beats = 0
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._check_now.wait(), HEARTBEAT)
            beats += 1
            try:
                await self._heartbeat_once()
                await self._check_processes()
                if beats % CHECK_EVERY == 0 or self._check_now.is_set():
                    self._check_now.clear()
                    await self._check_sessions()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("session - party -: Redis heartbeat failed")

    async def _check_processes(self) -> None:
        """Parties of processes that stopped saying they are alive lost their connection."""
        others = self.registry.processes()
        if not others:
            return
        assert self.redis is not None
        names = sorted(others)
        async with self.redis.pipeline(transaction=False) as pipe:
            for p in names:
                pipe.exists(f"{self.prefix}proc:{p}")
            found = await self._timed("heartbeat", pipe.execute())
        dead = [p for p, ok in zip(names, found, strict=True) if not ok]
        for proc in dead:
            log.info("session - party -: server process %s stopped; its parties lost their "
                     "connection", proc)
            self.registry.process_died(proc, others[proc])

    async def _check_sessions(self) -> None:
        """Renew running sessions; close here a replica whose session Redis forgot; and
        catch up on entries this process missed (Redis drops a subscriber that falls too
        far behind, ``client-output-buffer-limit pubsub``; a message lost so would
        otherwise stall its session until the next entry)."""
        assert self.redis is not None
        registry = self.registry
        sids = list(registry.sessions)
        if not sids:
            return
        running = set(registry.running())
        now = int(registry.clock() * 1000)
        script = self._scripts["append"]
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid in sids:
                if sid in running:
                    await script(keys=[self.meta(sid), self.log_key(sid),
                                       f"{self.prefix}sessions"],
                                 args=["", now, self.ttl_ms, self.channel(sid), sid,
                                       self.prefix], client=pipe)
                else:
                    pipe.exists(self.meta(sid))
                pipe.llen(self.log_key(sid))
            found = await self._timed("renew", pipe.execute(raise_on_error=False))
        late = sessions = 0
        for i, sid in enumerate(sids):
            exists, length = found[2 * i], found[2 * i + 1]
            if exists == 0:
                registry.vanished(sid)
            elif isinstance(length, int) and (caught := await self._catch_up(sid, length)):
                late, sessions = late + caught, sessions + 1
        if late:
            log.warning("session - party -: %d entries of %d sessions did not come through "
                        "Redis's channel; read from the logs", late, sessions)

    async def _catch_up(self, sid: str, length: int) -> int:
        """Apply the entries of ``sid`` up to ``length`` that never came through the
        channel; how many."""
        applied = self.registry.applied.get(sid)
        if applied is None or length <= applied or sid in self._loading:
            return 0
        assert self.redis is not None
        missed = await self._timed("read", self.redis.lrange(self.log_key(sid), applied,
                                                             length - 1))
        log.debug("session %s party -: %d entries came late", sid, len(missed))
        for text in missed:
            seq = self.registry.applied.get(sid)
            if seq is None:
                break
            self.registry.apply(sid, seq + 1, json.loads(text))
        return len(missed)

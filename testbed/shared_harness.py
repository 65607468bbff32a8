"""Shared sessions (``signaling.shared``) on a real Redis, driven as synchronously as the
sans-I/O tests drive the one-process core.

A ``Cluster`` is N server processes' registries in this one process, sharing one Redis
and one event loop. Whatever a test does through a registry (a message, a closed
connection, a sweep, creating a session) is followed by ``settle``: the loop runs until
every registry wrote what it queued and every replica applied its whole log. So a test
reads the same as against the in-memory registry, and checks the same rules end to end
through Redis. ``hold()`` defers the settling, to let several processes' messages race.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterator
from typing import Any

from signaling.endpoint import Endpoint
from signaling.redis_store import RedisStore
from signaling.session import Session
from signaling.shared import SharedRegistry

_names = itertools.count()


class PumpedRegistry(SharedRegistry):
    """One process's registry of a ``Cluster``: each call that queues work settles."""

    cluster: Cluster
    store: RedisStore

    def _settle(self) -> None:
        self.cluster.settle()

    def create(self, request: Any, client: str | None = None) -> Session:
        """Create through Redis, and keep a replica at once: the tests look at it."""
        loop = self.cluster.loop
        session = loop.run_until_complete(self.store.create(request, client))
        loop.run_until_complete(self.store.keep(session.id))
        return self.sessions[session.id]

    def get(self, session_id: str) -> Session:
        loop = self.cluster.loop
        return loop.run_until_complete(self.store.describe(session_id))

    def handle(self, endpoint: Endpoint, msg: dict[str, Any]) -> None:
        super().handle(endpoint, msg)
        self._settle()

    def left(self, endpoint: Endpoint, leaving: bool = False, ended: bool = False) -> None:
        super().left(endpoint, leaving, ended)
        self._settle()

    def sweep(self) -> list[Session]:
        gone = super().sweep()
        self._settle()
        return gone

    def expire(self) -> list[Session]:
        gone = super().expire()
        self._settle()
        return gone


class Cluster:
    """``size`` registries (server processes) sharing the Redis at ``url``; ``kwargs``
    are the registries' limits and clock, as ``Registry`` takes them."""

    def __init__(self, url: str, size: int = 1, **kwargs: Any):
        self.loop = asyncio.new_event_loop()
        self.held = False
        self.registries: list[PumpedRegistry] = []
        for _ in range(size):
            registry = PumpedRegistry(proc=f"test{next(_names)}", **kwargs)
            registry.cluster = self
            registry.store = RedisStore(registry, url)
            self.loop.run_until_complete(registry.store.start())
            self.registries.append(registry)

    def settle(self) -> None:
        if self.held or self.loop.is_running():
            return  # inside the loop (an entry being applied): the outer settle waits

        async def settled() -> None:
            for _ in range(2):  # what one wrote last may reach another after it settled
                await asyncio.gather(*(r.store.settle() for r in self.registries))

        self.loop.run_until_complete(settled())

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Let messages pile up (nothing written) until the end of the block."""
        self.held = True
        try:
            yield
        finally:
            self.held = False
            self.settle()

    def close(self) -> None:
        for registry in self.registries:
            self.loop.run_until_complete(registry.store.close())
        self.loop.close()

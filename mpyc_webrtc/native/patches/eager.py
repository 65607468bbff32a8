"""Start a coroutine at once instead of scheduling it as a task.

aiortc starts much of its per-packet work as tasks (``ensure_future``) or awaits long
chains of coroutines that almost never wait for anything. ``run_eagerly`` runs such a
coroutine right away, as Python 3.12's eager tasks do, and only makes a task of it if
it really waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


def run_eagerly(coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any] | None:
    """Run ``coro`` now, up to its end or its first real wait; returns None if it
    finished, else the task that finishes it. Raises what ``coro`` raises before it
    first waits."""
    try:
        waiting_for = coro.send(None)
    except StopIteration:
        return None
    return asyncio.ensure_future(_finish(coro, waiting_for))


async def _finish(coro: Coroutine[Any, Any, Any], waiting_for: Any) -> Any:
    # What a task does with a coroutine that waits: wait for the future it yielded (a
    # bare yield means "let others run once"), then resume it; cancelling this task
    # cancels what it waits for, as a task's cancel does.
    while True:
        try:
            if waiting_for is None:
                await asyncio.sleep(0)
            else:
                waiting_for._asyncio_future_blocking = False
                try:
                    await asyncio.wait((waiting_for,))
                except asyncio.CancelledError:
                    waiting_for.cancel()
                    raise
        except asyncio.CancelledError as exc:
            try:
                waiting_for = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
            continue
        try:
            waiting_for = coro.send(None)
        except StopIteration as stop:
            return stop.value

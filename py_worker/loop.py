"""Run the browser's ready asyncio callbacks in batches, as a native event loop does.

Pyodide's ``WebLoop.call_soon`` turns every callback into its own browser task (a
fresh JS callable and a ``postMessage`` round through the worker's event loop). MPyC
resolves thousands of futures per round, so that per-callback cost, not the
computation, dominated a browser party's time. Here ``call_soon`` only appends to a
ready queue, and one browser task runs the queue — including callbacks queued while
it runs, up to a time slice, so incoming channel messages are never starved.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

#: Longest a batch may keep the worker busy before yielding to the browser.
SLICE_SECONDS = 0.01


class CallbackBatcher:
    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.ready: deque[asyncio.Handle] = deque()
        self.scheduled = False
        self._schedule = loop.call_later  # WebLoop's: one browser task per call

    def install(self) -> CallbackBatcher:
        self.loop.call_soon = self.call_soon  # type: ignore[method-assign]
        self.loop.call_soon_threadsafe = self.call_soon  # type: ignore[method-assign]
        return self

    def call_soon(self, callback: Any, *args: Any, context: Any = None) -> asyncio.Handle:
        handle = asyncio.Handle(callback, args, self.loop, context=context)
        self.ready.append(handle)
        if not self.scheduled:
            self.scheduled = True
            self._schedule(0, self._run)
        return handle

    def _run(self) -> None:
        self.scheduled = False
        deadline = time.monotonic() + SLICE_SECONDS
        ready = self.ready
        while ready:
            handle = ready.popleft()
            if not handle.cancelled():
                handle._run()  # reports exceptions to the loop's handler, like asyncio
            if time.monotonic() > deadline:
                break
        if ready and not self.scheduled:
            self.scheduled = True
            self._schedule(0, self._run)


def install(loop: asyncio.AbstractEventLoop | None = None) -> CallbackBatcher:
    loop = loop or asyncio.get_event_loop()
    existing = getattr(loop, "_mpyc_webrtc_batcher", None)
    if existing is not None:
        return existing
    batcher = CallbackBatcher(loop).install()
    loop._mpyc_webrtc_batcher = batcher  # type: ignore[attr-defined]
    return batcher

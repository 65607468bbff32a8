"""The worker's asyncio event loop: it sleeps in ``Atomics.wait`` on the inbox.

Why a loop of our own: a program that calls ``mpc.run(...)`` runs MPyC's
``loop.run_until_complete`` and so needs a loop that can block, as a native one does; the
browser's ``WebLoop`` can only return to the browser. This loop is asyncio's own
``BaseEventLoop`` with one change: where a native loop waits in ``select()`` on its
sockets, this one waits for the page's next record (``ring.py``) and hands what arrived to
the ``Inbox``. So ``mpc.run``, ``async with mpc``, top-level ``await`` and timers behave as
they do natively, in every browser with SharedArrayBuffer, JSPI or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

from . import ring


class _InboxSelector:
    """Stands where a native loop keeps its selector: ``select`` waits for the page."""

    def __init__(self, wait: Callable[[float | None], None], deliver: Callable[[], None]):
        self.wait = wait
        self.deliver = deliver

    def select(self, timeout: float | None = None) -> list[Any]:
        self.wait(timeout)
        self.deliver()
        return []

    def close(self) -> None:
        pass


class RingLoop(asyncio.BaseEventLoop):
    """asyncio's loop, waiting on the page's inbox instead of sockets.

    ``wait(timeout)`` returns once a record may have arrived or ``timeout`` seconds (None:
    no limit) passed; ``deliver()`` handles whatever arrived.
    """

    def __init__(self, wait: Callable[[float | None], None], deliver: Callable[[], None]):
        super().__init__()
        self._selector = _InboxSelector(wait, deliver)

    # Pyodide marks its own browser loop as running for good: while this loop runs, it is
    # the running loop instead, as a native loop would be, and the browser's comes back
    # after (otherwise asyncio refuses to run a second loop).

    def run_forever(self) -> None:
        with self.instead_of_the_browsers():
            super().run_forever()

    def run_until_complete(self, future: Any) -> Any:
        with self.instead_of_the_browsers():
            return super().run_until_complete(future)

    @contextlib.contextmanager
    def instead_of_the_browsers(self) -> Iterator[None]:
        outer = asyncio.events._get_running_loop()
        if outer is None or outer is self:
            yield
            return
        asyncio.events._set_running_loop(None)
        try:
            yield
        finally:
            asyncio.events._set_running_loop(outer)

    def _process_events(self, event_list: list[Any]) -> None:
        pass

    def _write_to_self(self) -> None:
        pass  # one thread: whoever calls call_soon_threadsafe is this loop's own


class JsMemory:
    """The SharedArrayBuffer from the page, as ``ring.Memory`` (Pyodide only)."""

    def __init__(self, buffer: Any):
        import js

        self.atomics = js.Atomics
        self.header = js.Int32Array.new(buffer, 0, ring.HEADER_WORDS)
        self.data = js.Uint8Array.new(buffer, ring.DATA_OFFSET, ring.DATA_SIZE)

    def load(self, index: int) -> int:
        return self.atomics.load(self.header, index) & 0xFFFFFFFF

    def store(self, index: int, value: int) -> None:
        value &= 0xFFFFFFFF
        self.atomics.store(self.header, index, value - (1 << 32) if value >= 1 << 31 else value)

    def read(self, start: int, end: int) -> bytes:
        return self.data.subarray(start, end).to_bytes()

    def wait_while(self, index: int, value: int, timeout: float | None) -> None:
        """Sleep while header word ``index`` is ``value``, at most ``timeout`` seconds
        (None: no limit), or until the page notifies."""
        signed = value - (1 << 32) if value >= 1 << 31 else value
        ms = math.inf if timeout is None else max(0.0, timeout * 1000.0)
        self.atomics.wait(self.header, index, signed, ms)

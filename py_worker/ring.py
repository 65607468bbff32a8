"""The inbox a browser party's Python reads: records the page writes into a SharedArrayBuffer.

Why: a program that calls ``mpc.run(...)`` must block until the other parties answer, and
without JavaScript Promise Integration (Safari, Chrome on Android, Firefox with it off)
Python in a worker cannot give control back to the browser in the middle of a call. So the
worker never waits on the browser's event loop while a program runs: its asyncio loop
(``ringloop.RingLoop``) sleeps in ``Atomics.wait`` on this buffer, and the page, which keeps
the data channels (a channel cannot reliably move to a worker, Firefox refuses one that was
used), writes everything that happens to them, and what the page has to tell the run, as
records here, then wakes it with ``Atomics.notify``. What Python sends goes the other way
with ``postMessage``, which a worker may call at any time.

The layout is defined here and in ``web/ring.js`` (the writer); ``tests/test_ring.py`` has
Node's writer fill a buffer that this reader then reads, so the two cannot drift.

Buffer layout (little-endian)::

    Int32 header[HEADER_WORDS]   WRITE, READ (total bytes, modulo 2**32), PAGE_WAITING (1: the
                                 page holds records that did not fit), then per peer p < 64:
                                 SENT + 2p (bytes the page handed to channel p, modulo
                                 2**32), BUFFERED + 2p (its last bufferedAmount), and
                                 WANT_DRAIN + p (1: Python waits for channel p to drain)
    bytes data[DATA_SIZE]        the ring, from DATA_OFFSET

A record: kind (u8), 0 (u8), peer (u16), channel id (u32), payload length (u32), the
payload, then zeros up to a multiple of 4 bytes. A record may wrap around the ring's end.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

#: Header words (Int32) before the ring.
WRITE, READ, PAGE_WAITING = 0, 1, 2
MAX_PEERS = 64
SENT, BUFFERED = 8, 9  # + 2 * peer
WANT_DRAIN = SENT + 2 * MAX_PEERS  # + peer
HEADER_WORDS = WANT_DRAIN + MAX_PEERS
DATA_OFFSET = 4 * HEADER_WORDS
#: The ring's size: a power of two, so that indices modulo 2**32 stay consistent.
DATA_SIZE = 1 << 23  # 8 MiB: several of the largest data-channel messages (256 KiB)
BUFFER_BYTES = DATA_OFFSET + DATA_SIZE

RECORD = struct.Struct("<BxHII")
ALIGN = 4

#: Record kinds.
CHANNEL = 1  # the page made a data channel to ``peer``; ``channel`` is its id from now on
OPEN = 2
BINARY = 3  # a binary message: the payload
TEXT = 4  # a text message: the payload in UTF-8
CLOSING = 5
CLOSED = 6
DRAINED = 7  # the channel's bufferedAmount fell to its low-water mark
ERROR = 8  # the channel reported an error: the payload says it (UTF-8)
CONTROL = 9  # from the page to the run (JSON): start, peer-left, peer-failed, names, ...

KINDS = {"CHANNEL": CHANNEL, "OPEN": OPEN, "BINARY": BINARY, "TEXT": TEXT,
         "CLOSING": CLOSING, "CLOSED": CLOSED, "DRAINED": DRAINED, "ERROR": ERROR,
         "CONTROL": CONTROL}


def layout() -> dict[str, Any]:
    """The layout's numbers, as ``web/ring.js`` must have them (checked by the tests)."""
    return {"WRITE": WRITE, "READ": READ, "PAGE_WAITING": PAGE_WAITING,
            "MAX_PEERS": MAX_PEERS, "SENT": SENT, "BUFFERED": BUFFERED,
            "WANT_DRAIN": WANT_DRAIN, "HEADER_WORDS": HEADER_WORDS,
            "DATA_OFFSET": DATA_OFFSET, "DATA_SIZE": DATA_SIZE, "HEADER_BYTES": RECORD.size,
            "KINDS": KINDS}


class Memory(Protocol):
    """The shared buffer as the reader needs it: the JS one (``loop.JsMemory``) or a
    bytearray in the tests."""

    def load(self, index: int) -> int:
        """Header word ``index`` (atomically), as an unsigned 32-bit number."""

    def store(self, index: int, value: int) -> None: ...

    def read(self, start: int, end: int) -> bytes:
        """Bytes ``start:end`` of the ring (offsets into the data, not wrapped)."""

    def wait_while(self, index: int, value: int, timeout: float | None) -> None:
        """Sleep while header word ``index`` is ``value`` (``Atomics.wait``), at most
        ``timeout`` seconds."""


@dataclass(frozen=True)
class Record:
    kind: int
    peer: int
    channel: int
    payload: bytes

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", "replace")

    def control(self) -> dict[str, Any]:
        return json.loads(self.payload)


class RingReader:
    """Takes the records the page wrote since the last call, and frees their space.

    It is the only one that moves ``READ``, so it keeps that position itself: checking for
    news costs one read of ``WRITE``, and taking them one copy of the bytes (calls into
    JavaScript cost microseconds each in Pyodide, and the loop checks at every turn).
    """

    def __init__(self, memory: Memory, size: int = DATA_SIZE):
        if size & (size - 1):
            raise ValueError("the ring's size must be a power of two")
        self.memory = memory
        self.size = size
        self.read = memory.load(READ)

    def pending(self) -> bool:
        return self.memory.load(WRITE) != self.read

    def take(self) -> Iterator[Record]:
        """Every complete record written so far, in order."""
        write = self.memory.load(WRITE)
        length = (write - self.read) & 0xFFFFFFFF
        if not length:
            return
        blob = self._read(self.read, length)
        self.read = write
        self.memory.store(READ, write)  # copied out: the page may reuse the space now
        offset = 0
        while offset < length:
            kind, peer, channel, size = RECORD.unpack_from(blob, offset)
            start = offset + RECORD.size
            yield Record(kind, peer, channel, blob[start:start + size])
            total = RECORD.size + size
            offset += total + (-total % ALIGN)

    def _read(self, index: int, length: int) -> bytes:
        if not length:
            return b""
        start = index & (self.size - 1)
        end = start + length
        if end <= self.size:
            return self.memory.read(start, end)
        return self.memory.read(start, self.size) + self.memory.read(0, end - self.size)


class BytesMemory:
    """A ring in a Python bytearray, for tests (and for writing records from Python)."""

    def __init__(self, size: int = DATA_SIZE):
        self.header = [0] * HEADER_WORDS
        self.data = bytearray(size)

    def load(self, index: int) -> int:
        return self.header[index] & 0xFFFFFFFF

    def store(self, index: int, value: int) -> None:
        self.header[index] = value & 0xFFFFFFFF

    def read(self, start: int, end: int) -> bytes:
        return bytes(self.data[start:end])

    def wait_while(self, index: int, value: int, timeout: float | None) -> None:
        """Nobody else writes here: sleep a little (at most ``timeout``), as a wait would."""
        if self.load(index) == value:
            time.sleep(min(0.001, timeout if timeout is not None else 0.001))

    def write_record(self, kind: int, peer: int = 0, channel: int = 0,
                     payload: bytes = b"") -> bool:
        """Append a record as the page does; False if it does not fit now."""
        size = len(self.data)
        record = RECORD.pack(kind, peer, channel, len(payload)) + payload
        record += bytes(-len(record) % ALIGN)
        write, read = self.load(WRITE), self.load(READ)
        if len(record) > size - ((write - read) & 0xFFFFFFFF):
            return False
        start = write & (size - 1)
        first = min(len(record), size - start)
        self.data[start:start + first] = record[:first]
        self.data[0:len(record) - first] = record[first:]
        self.store(WRITE, write + len(record))
        return True

"""What the page writes into the worker's inbox, handed to whom it concerns.

Records about a data channel go to its ``PageChannel`` (made when the page announces the
channel), the page's messages for the run (``start``, ``peer-left``, ``peer-failed``,
``names``, ``signaling-ended``) to the current party's ``on_control``. When the page holds
records that did not fit, it hears that there is room again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from . import ring
from .channel import Outbox, PageChannel, PageChannelFactory

log = logging.getLogger(__name__)


class Inbox:
    def __init__(self, memory: ring.Memory, outbox: Outbox, room: Callable[[], None]):
        self.memory = memory
        self.reader = ring.RingReader(memory)
        self.outbox = outbox
        self.room = room
        self.channels: dict[int, PageChannel] = {}
        self.factory: PageChannelFactory | None = None
        self.on_control: Callable[[dict[str, Any]], None] | None = None
        self._held: list[dict[str, Any]] = []

    def serve(self, factory: PageChannelFactory,
              on_control: Callable[[dict[str, Any]], None]) -> None:
        """From now on, channels are this factory's and messages this party's."""
        self.factory, self.on_control = factory, on_control
        held, self._held = self._held, []
        for message in held:
            on_control(message)

    def wait(self, timeout: float | None) -> None:
        """The loop's idle wait: until the page writes a record, or ``timeout`` seconds."""
        if timeout == 0:
            return  # the loop has work: it looks for records right after (``deliver``)
        write = self.memory.load(ring.WRITE)
        if write == self.reader.read:
            self.memory.wait_while(ring.WRITE, write, timeout)

    def deliver(self) -> None:
        taken = False
        for record in self.reader.take():
            taken = True
            try:
                self._handle(record)
            except Exception:
                log.exception("handling the page's record %d about party %d failed",
                              record.kind, record.peer)
        if taken and self.memory.load(ring.PAGE_WAITING):
            self.memory.store(ring.PAGE_WAITING, 0)
            self.room()

    def _handle(self, record: ring.Record) -> None:
        if record.kind == ring.CONTROL:
            message = record.control()
            if self.on_control is None:
                self._held.append(message)
            else:
                self.on_control(message)
        elif record.kind == ring.CHANNEL:
            if self.factory is None:
                log.warning("a channel to party %d came before the run; closing it",
                            record.peer)
                self.outbox.close(record.channel)
                return
            self.channels[record.channel] = self.factory.add_channel(
                record.peer, record.channel, self.outbox, self.memory)
        else:
            channel = self.channels.get(record.channel)
            if channel is None:
                return  # a channel given up on: what it still says does not matter
            channel.handle(record)
            if record.kind == ring.CLOSED:
                del self.channels[record.channel]

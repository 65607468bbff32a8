"""The worker's inbox: the page's writer (web/ring.js, under Node) and Python's reader
(py_worker/ring.py) agree on every number and byte, and the worker's loop
(py_worker/loop.py) runs asyncio as a native loop does, next to a loop marked running."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from py_worker import ring
from py_worker.loop import RingLoop

REPO = Path(__file__).resolve().parent.parent
WRITER = REPO / "tests" / "js" / "ring_records.mjs"


def node_writes(tmp_path: Path, size: int, steps: list) -> tuple[dict, ring.BytesMemory]:
    node = shutil.which("node")
    assert node, "node is needed (./run.sh test installs it)"
    records = tmp_path / "records.json"
    records.write_text(json.dumps(steps))
    done = subprocess.run([node, str(WRITER), str(size), str(records)], capture_output=True,
                          text=True, timeout=60, check=True)
    out = json.loads(done.stdout)
    memory = ring.BytesMemory(size)
    memory.header = [word & 0xFFFFFFFF for word in out["header"]]
    memory.data = bytearray(base64.b64decode(out["data"]))
    return out, memory


def test_the_page_and_python_share_one_layout(tmp_path):
    out, _ = node_writes(tmp_path, 64, [])
    assert out["layout"] == ring.layout()


def test_records_written_by_the_page_are_read_by_python_in_order(tmp_path):
    payload = bytes(range(256)) * 3
    steps = [
        [ring.CONTROL, 0, 0, json.dumps({"type": "start"})],
        [ring.CHANNEL, 31, 7, []],
        [ring.BINARY, 31, 7, list(payload)],
        [ring.TEXT, 31, 7, "end of run ✓"],
        [ring.CLOSED, 63, 4_000_000_000, []],
    ]
    out, memory = node_writes(tmp_path, 4096, steps)
    records = list(ring.RingReader(memory, 4096).take())
    assert [(r.kind, r.peer, r.channel) for r in records] == [
        (ring.CONTROL, 0, 0), (ring.CHANNEL, 31, 7), (ring.BINARY, 31, 7),
        (ring.TEXT, 31, 7), (ring.CLOSED, 63, 4_000_000_000)]
    assert records[0].control() == {"type": "start"}
    assert records[2].payload == payload
    assert records[3].text == "end of run ✓"
    assert memory.load(ring.READ) == memory.load(ring.WRITE)


def test_a_record_that_does_not_fit_waits_and_wraps_around(tmp_path):
    # 64 bytes: a 40-byte record, then one of 36 that must wait until 40 were read, and
    # then lies across the end of the ring.
    steps = [[ring.BINARY, 1, 1, [1] * 28], [ring.BINARY, 1, 1, [2] * 24]]
    out, memory = node_writes(tmp_path, 64, steps)
    assert out["queued"] == 1 and memory.load(ring.PAGE_WAITING) == 1
    out, memory = node_writes(tmp_path, 64, [*steps, "READ 40"])
    assert out["queued"] == 0
    memory.header[ring.READ] = 40
    (record,) = ring.RingReader(memory, 64).take()
    assert record.payload == bytes([2] * 24)
    assert memory.load(ring.WRITE) == 76  # past the end: indices run on, modulo 2**32


def test_the_loop_waits_for_the_page_and_runs_timers():
    memory = ring.BytesMemory(1 << 12)
    page_writes = [(ring.TEXT, 0, 0, b"hello")]
    seen: list[bytes] = []
    waits: list[float | None] = []

    def wait(timeout: float | None) -> None:
        waits.append(timeout)
        if page_writes and (timeout is None or timeout > 0):
            memory.write_record(*page_writes.pop())
        elif timeout:
            time.sleep(min(timeout, 0.01))

    def deliver() -> None:
        for record in ring.RingReader(memory, 1 << 12).take():
            seen.append(record.payload)
            arrived.set_result(record.payload)

    loop = RingLoop(wait, deliver)
    arrived = loop.create_future()

    async def program() -> tuple[bytes, float]:
        started = loop.time()
        await asyncio.sleep(0.05)
        return await arrived, loop.time() - started

    payload, took = loop.run_until_complete(program())
    assert payload == b"hello" and took >= 0.05
    assert None in waits or any(w and w > 0 for w in waits)  # it slept, it did not spin
    # Run again (the next mpc.run of the program).
    assert loop.run_until_complete(asyncio.sleep(0, "done")) == "done"
    loop.close()


async def test_the_loop_runs_while_the_browsers_loop_is_marked_running():
    """Pyodide marks its browser loop as running for good; this loop still runs, and
    the browser's is the running one again after."""
    outer = asyncio.get_running_loop()
    loop = RingLoop(lambda timeout: time.sleep(min(timeout or 0, 0.001)), lambda: None)
    plain, coro = asyncio.new_event_loop(), asyncio.sleep(0)
    with pytest.raises(RuntimeError):
        plain.run_until_complete(coro)  # a plain loop cannot
    coro.close()
    plain.close()
    assert loop.run_until_complete(asyncio.sleep(0.01, "ran")) == "ran"
    assert asyncio.get_running_loop() is outer
    with loop.instead_of_the_browsers():
        asyncio.set_event_loop(loop)
        assert asyncio.get_event_loop() is loop  # what MPyC caches when it is imported
    loop.close()

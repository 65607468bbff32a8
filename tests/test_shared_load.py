"""``bench/signaling_load.py`` on server processes that share their sessions through Redis:
a tiny load keeps working end to end, and bad input and overload still get their
documented JSON errors (``--max-sessions`` counted over all processes)."""

from __future__ import annotations

import pytest

from bench import signaling_load
from testbed import netns
from testbed.redis_server import MISSING


@pytest.fixture(autouse=True)
def redis_installed() -> None:
    """The benchmark starts its own ``redis-server``: without one, skipped (failed under
    ``CI=true``), as the other shared-session tests (``conftest.redis_server``)."""
    if MISSING:
        if netns.in_ci():
            pytest.fail(MISSING, pytrace=False)
        pytest.skip(MISSING)


def rows_of(text: str) -> dict[str, list[str]]:
    return {line[:24].strip(): line[24:].split() for line in text.splitlines()}


async def test_signaling_load_on_two_processes_sharing_redis():
    text = await signaling_load.run(2, signaling_load.Options(parties=3, candidates=2),
                                    processes=2, redis=True, timeout=60)
    rows = rows_of(text)
    assert "2 server subprocesses" in text
    # sessions x pairs x both ways x (offer or answer + candidates), in each of the two runs
    assert rows["signals relayed"] == [str(2 * 3 * 2 * (1 + 2))] * 2
    checks = [line.removeprefix("check: ") for line in text.splitlines()
              if line.startswith("check: ")]
    assert checks == [
        "create, body not JSON: 400 malformed_json",
        "create, not a session request: 400 invalid_request",
        "look-up of an unknown session: 404 unknown_session",
        "join of an unknown session: error unknown_session",
        "--max-sessions 5 over 2 processes: 5 created on one, the 6th on the other: "
        "503 server_busy",
    ]
    assert "server log:" not in text


async def test_matrix_compares_redis_with_memory():
    configs = [("memory x1", 1, False), ("redis x2", 2, True)]
    text, cells = await signaling_load.matrix(
        [3], signaling_load.Options(parties=3, candidates=1), 60, configs, settle=0.1)
    assert [c.failure for c in cells] == [None, None]
    table = [[column.strip() for column in line.split("|")[1:-1]]
             for line in text.splitlines() if line.startswith("| 3 |")]
    assert [row[1] for row in table] == ["memory x1", "redis x2"] * 2
    results = {row[1]: row for row in table[:2]}
    # created/s, p50, p99: numbers; the ratios against memory x1: 1 for itself
    for config in ("memory x1", "redis x2"):
        assert all(float(x) > 0 for x in results[config][2:5])
    assert results["memory x1"][5:7] == ["1", "1"]
    assert float(results["redis x2"][5]) > 0 and float(results["redis x2"][10]) > 0
    assert results["memory x1"][10] == "–"  # no Redis
    assert "503 server_busy" in text and "redis x2: join of an unknown session" in text


async def test_a_phase_that_waits_in_vain_is_reported_not_waited_out():
    """What the matrix waits for may never come (a server that lost messages): once
    nothing moves for ``stall`` seconds the cell fails, saying so, long before its
    timeout."""
    import asyncio

    never = asyncio.ensure_future(asyncio.Event().wait())
    try:
        with pytest.raises(signaling_load.Stalled, match="nothing moved for 0.5 s"):
            await asyncio.wait_for(signaling_load.watch(never, None, lambda: 7, 60,
                                                        stall=0.5), 5)
    finally:
        never.cancel()


def test_log_lines_are_counted_by_what_they_say():
    lines = [
        "2026-12-06 22:33:43,362 signaling.redis_store: session - party -: reading from "
        "Redis failed",
        "2026-12-06 22:33:47,052 signaling.redis_store: session - party -: reading from "
        "Redis failed",
        "2026-12-06 22:34:27,065 signaling: session uU_2845JOIqCG6tv party 2: websocket "
        "error: TimeoutError",
        "redis: 8519:M 06 Dec 2026 22:39:32.641 # Client id=9 addr=/tmp/r.sock:0 fd=12 "
        "name= age=3 idle=0 flags=PU db=0 sub=201 psub=0 omem=1 scheduled to be closed ASAP "
        "for overcoming of output buffer limits.",
    ]
    assert signaling_load.trouble_summary(lines) == [
        ("signaling.redis_store: session S party P: reading from Redis failed", 2),
        ("signaling: session S party P: websocket error: TimeoutError", 1),
        ("redis: Client flags=PU … scheduled to be closed ASAP for overcoming of output "
         "buffer limits.", 1),
    ]

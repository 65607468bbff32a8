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
    text = await signaling_load.matrix([3], signaling_load.Options(parties=3, candidates=1),
                                       60, configs, settle=0.1)
    table = [line.split("|")[1:-1] for line in text.splitlines()
             if line.startswith("| 3 |")]
    assert [cells[1].strip() for cells in table] == ["memory x1", "redis x2"] * 2
    results = {cells[1].strip(): [c.strip() for c in cells] for cells in table[:2]}
    # created/s, p50, p99: numbers; the ratios against memory x1: 1 for itself
    for config in ("memory x1", "redis x2"):
        assert all(float(x) > 0 for x in results[config][2:5])
    assert results["memory x1"][5:7] == ["1", "1"]
    assert float(results["redis x2"][5]) > 0 and float(results["redis x2"][10]) > 0
    assert results["memory x1"][10] == "–"  # no Redis
    assert "503 server_busy" in text and "redis x2: join of an unknown session" in text

"""The aiortc/aioice patches on the packet path: dtls_tuning, dispatch_tuning,
sctp_fastpath and sctp_recovery (with sctp_tuning).

Real aiortc peer connections in one process (tests/aiortc_pair.py), inside a throw-away
loopback-only network namespace: messages of every size in both directions, request and
response rounds, lost and reordered datagrams, coroutines that really wait, one-way
traffic, closing. Every message must arrive intact and in order, with each patch on and
off (the MPYC_WEBRTC_* switches), and the patched paths must really be taken.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from mpyc_webrtc.native.patches.eager import run_eagerly
from testbed.netns import Namespace

PAIR = Path(__file__).parent / "aiortc_pair.py"
ALL = ["order", "rounds", "lossy", "lossy_rounds", "suspend", "drain", "close"]
QUICK = ["order", "rounds", "lossy", "suspend", "drain"]
SWITCHES = ("MPYC_WEBRTC_DTLS_TUNING", "MPYC_WEBRTC_DISPATCH_TUNING",
            "MPYC_WEBRTC_SCTP_FASTPATH", "MPYC_WEBRTC_SCTP_RECOVERY")


def run_pair(scenarios: list[str], **switches: str) -> dict[str, dict]:
    env = {**os.environ, **{name: "1" for name in SWITCHES}, **switches}
    with Namespace() as ns:
        done = ns.run([sys.executable, str(PAIR), *scenarios], timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    results = {}
    for line in done.stdout.splitlines():
        result = json.loads(line)
        results[result["scenario"]] = result
    assert set(results) == set(scenarios), done.stdout + done.stderr[-2000:]
    return results


@pytest.mark.netns
def test_all_tunings_deliver_everything_in_order_and_take_their_paths():
    results = run_pair(ALL)
    for result in results.values():
        assert result["ok"], result
        assert result["tunings"] == {"dtls": True, "dispatch": True, "fastpath": True,
                                     "recovery": True}
        assert all(result["active"].values()), result["active"]
    # Request-response traffic is what the short paths are for: most messages take them.
    assert results["rounds"]["fast_send"] > 400, results["rounds"]
    assert results["rounds"]["pushed"] > 800, results["rounds"]
    # Lost datagrams were recovered (by the tail-loss probe where nothing followed them).
    assert results["lossy"]["dropped"] > 0 and results["lossy_rounds"]["dropped"] > 0


@pytest.mark.netns
@pytest.mark.parametrize("off", SWITCHES + ("all",))
def test_each_tuning_can_be_switched_off(off):
    switches = {name: "0" for name in SWITCHES} if off == "all" else {off: "0"}
    results = run_pair(QUICK, **switches)
    for result in results.values():
        assert result["ok"], result
    tunings = results["order"]["tunings"]
    active = results["order"]["active"]
    assert {f"MPYC_WEBRTC_{name.upper()}" for name, on in active.items() if not on} \
        == {name for name, value in switches.items() if value == "0"}
    assert tunings["dtls"] is (switches.get("MPYC_WEBRTC_DTLS_TUNING") != "0")
    assert tunings["dispatch"] is (switches.get("MPYC_WEBRTC_DISPATCH_TUNING") != "0")
    assert tunings["fastpath"] is (switches.get("MPYC_WEBRTC_SCTP_FASTPATH") != "0")
    assert tunings["recovery"] is (switches.get("MPYC_WEBRTC_SCTP_RECOVERY") != "0")
    if not tunings["fastpath"]:
        assert results["rounds"]["fast_send"] == 0
    if not tunings["dispatch"]:
        assert results["rounds"]["pushed"] == 0


# -- run_eagerly: coroutines started at once, finished by a task if they wait ---------


async def test_a_coroutine_that_never_waits_finishes_at_once():
    steps = []

    async def inner():
        steps.append("inner")

    async def outer():
        steps.append("outer")
        await inner()
        steps.append("done")

    assert run_eagerly(outer()) is None
    assert steps == ["outer", "inner", "done"]


async def test_a_coroutine_that_waits_is_finished_by_a_task_in_order():
    loop = asyncio.get_running_loop()
    gate = loop.create_future()
    steps = []

    async def waits():
        steps.append("before")
        value = await gate
        steps.append(value)
        await asyncio.sleep(0)  # a bare yield as well
        steps.append("after")
        return "result"

    task = run_eagerly(waits())
    assert task is not None and steps == ["before"]
    gate.set_result("opened")
    assert await task == "result"
    assert steps == ["before", "opened", "after"]


async def test_errors_before_the_first_wait_are_raised_and_later_ones_end_the_task():
    async def fails_at_once():
        raise ValueError("now")

    with pytest.raises(ValueError, match="now"):
        run_eagerly(fails_at_once())

    async def fails_later():
        await asyncio.sleep(0.001)
        raise KeyError("later")

    task = run_eagerly(fails_later())
    with pytest.raises(KeyError, match="later"):
        await task


async def test_cancelling_the_task_cancels_what_the_coroutine_waits_for():
    loop = asyncio.get_running_loop()
    gate = loop.create_future()
    seen = []

    async def waits():
        try:
            await gate
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    task = run_eagerly(waits())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled"] and gate.cancelled()

"""The native peer's network thread (``mpyc_webrtc.native.network``)."""

from __future__ import annotations

import asyncio

from mpyc_webrtc.native.network import NetworkThread


def test_stopping_the_network_thread_ends_what_was_still_pending():
    """A task still waiting when the peer stops (an ICE lookup, say) is cancelled and let
    end: a task destroyed pending is logged by asyncio after the party's last word."""
    net = NetworkThread(asyncio.new_event_loop)

    async def forever() -> None:
        await asyncio.Event().wait()

    task = net.call(lambda: net.loop.create_task(forever()))
    net.stop()
    assert task.cancelled()


def test_calls_and_coroutines_run_on_the_network_thread():
    import threading

    net = NetworkThread(asyncio.new_event_loop)
    try:
        where = net.call(lambda: threading.current_thread().name)

        async def here() -> str:
            await asyncio.sleep(0)
            return threading.current_thread().name

        assert where == net.run(here()) == "mpyc-webrtc network"
    finally:
        net.stop()

"""py_worker.loop: batched call_soon keeps asyncio's semantics (order, cancel, errors)."""

import asyncio

from py_worker.loop import install


def test_batched_callbacks_keep_order_cancellation_and_error_handling():
    loop = asyncio.new_event_loop()
    try:
        batcher = install(loop)
        assert install(loop) is batcher  # idempotent
        seen, errors = [], []
        loop.set_exception_handler(lambda loop, context: errors.append(context["exception"]))

        def boom():
            raise ValueError("in a callback")

        loop.call_soon(seen.append, 1)
        loop.call_soon(boom)
        loop.call_soon(seen.append, 2).cancel()
        loop.call_soon(lambda: loop.call_soon(seen.append, 4))  # queued while draining
        loop.call_soon(seen.append, 3)

        async def main():
            await asyncio.sleep(0)  # Tasks and futures go through call_soon too
            fut = loop.create_future()
            loop.call_soon(fut.set_result, "done")
            return await fut

        assert loop.run_until_complete(main()) == "done"
        assert seen == [1, 3, 4]
        assert [str(e) for e in errors] == ["in a callback"]
    finally:
        loop.close()

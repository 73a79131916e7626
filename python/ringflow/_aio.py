"""asyncio glue for rf.Future: one wake-up fd per event loop.

The engine completes futures on its report thread without the GIL: it queues them on the loop's
Waker and writes the Waker's eventfd, once per burst. The loop watches that fd with add_reader and,
on its own thread, settles the asyncio futures that coroutines await. Where a loop has no
add_reader, one helper thread per loop waits on the fd and hands over with call_soon_threadsafe.
"""

from __future__ import annotations

import asyncio
import functools
import selectors
import threading
import weakref
from typing import Any, Generator

from . import _ringflow

_bridges: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Bridge] = weakref.WeakKeyDictionary()


class _Bridge:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.waker = _ringflow.Waker()
        try:
            loop.add_reader(self.waker.fileno(), self._settle_ready)
        except NotImplementedError:
            threading.Thread(target=self._watch_fd, args=(loop,), name="ringflow-aio-waker", daemon=True).start()

    def _watch_fd(self, loop: asyncio.AbstractEventLoop) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.waker.fileno(), selectors.EVENT_READ)
            while not loop.is_closed():
                if not selector.select(timeout=0.5):
                    continue
                handed_over = threading.Event()

                def settle() -> None:
                    try:
                        self._settle_ready()
                    finally:
                        handed_over.set()

                try:
                    loop.call_soon_threadsafe(settle)
                except RuntimeError:  # the loop closed meanwhile
                    return
                while not handed_over.wait(0.5) and not loop.is_closed():
                    pass

    def _settle_ready(self) -> None:
        for future in self.waker.drain():
            awaiter = future._take_awaiter()
            if awaiter is not None:
                _settle(awaiter, future)


def _settle(awaiter: asyncio.Future, future: _ringflow.Future) -> None:
    if awaiter.done():  # the awaiting task was cancelled meanwhile
        return
    if future.cancelled():
        awaiter.cancel()
        return
    error = future.exception(0)
    if error is None:
        awaiter.set_result(future.result(0))
    else:
        awaiter.set_exception(error)


def _bridge(loop: asyncio.AbstractEventLoop) -> _Bridge:
    bridge = _bridges.get(loop)
    if bridge is None:
        bridge = _bridges[loop] = _Bridge(loop)
    return bridge


def await_future(future: _ringflow.Future) -> Generator[Any, None, Any]:
    """rf.Future.__await__: an asyncio future of the running loop, settled from the engine."""
    loop = asyncio.get_running_loop()
    awaiter = future._awaiter
    if awaiter is not None:
        if awaiter.get_loop() is not loop:
            raise RuntimeError("this rf.Future is already awaited in another event loop")
        return awaiter.__await__()  # awaited again, in the same loop
    awaiter = loop.create_future()
    if not future._watch(_bridge(loop).waker, awaiter):
        future._take_awaiter()
        _settle(awaiter, future)  # it finished before anyone awaited it
    else:
        # Cancelling the awaiting task cancels the sample: dropped if it has not run yet.
        awaiter.add_done_callback(lambda a: future.cancel() if a.cancelled() else None)
    return awaiter.__await__()


async def infer(run: _ringflow.Run, inputs: Any, userdata: Any = None, **metadata: Any) -> _ringflow.Sample:
    """await run.infer(x): submit one sample and await its result, without ever blocking the event
    loop: when the input queue is full, the waiting submit runs on the loop's default executor."""
    future = run.try_submit(inputs, userdata, **metadata)
    if future is None:
        loop = asyncio.get_running_loop()
        future = await loop.run_in_executor(None, functools.partial(run.submit, inputs, userdata, **metadata))
    return await future

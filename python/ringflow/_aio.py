"""asyncio glue for rf.Future: one wake-up fd per event loop.

The engine completes futures on its report thread without the GIL: it queues them on the loop's
Waker and writes the Waker's eventfd, once per burst. The loop watches that fd with add_reader and,
on its own thread, settles the asyncio futures that coroutines await. Where a loop has no
add_reader (Windows' proactor loop), one helper thread per loop waits on the fd and hands over
with call_soon_threadsafe.
"""

from __future__ import annotations

import asyncio
import select
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
        while not loop.is_closed():
            readable, _, _ = select.select([self.waker.fileno()], [], [], 0.5)
            if readable and not loop.is_closed():
                done = threading.Event()
                loop.call_soon_threadsafe(lambda: (self._settle_ready(), done.set()))
                done.wait()

    def _settle_ready(self) -> None:
        for future in self.waker.drain():
            _settle(future._awaiter, future)


def _settle(awaiter: asyncio.Future, future: _ringflow.Future) -> None:
    if awaiter.done():  # the awaiting task was cancelled meanwhile
        return
    try:
        awaiter.set_result(future.result(0))
    except BaseException as error:  # InferenceError, CancelledError: the awaiting task gets it
        if future.cancelled():
            awaiter.cancel()
        else:
            awaiter.set_exception(error)


def _bridge(loop: asyncio.AbstractEventLoop) -> _Bridge:
    bridge = _bridges.get(loop)
    if bridge is None:
        bridge = _bridges[loop] = _Bridge(loop)
    return bridge


def await_future(future: _ringflow.Future) -> Generator[Any, None, Any]:
    """rf.Future.__await__: an asyncio future of the running loop, settled from the engine."""
    awaiter = future._awaiter
    if awaiter is None:
        loop = asyncio.get_running_loop()
        awaiter = loop.create_future()
        if not future._watch(_bridge(loop).waker, awaiter):
            _settle(awaiter, future)  # it finished before anyone awaited it
        # Cancelling the awaiting task cancels the sample: dropped if it has not run yet.
        awaiter.add_done_callback(lambda a: future.cancel() if a.cancelled() else None)
    return awaiter.__await__()


async def infer(run: _ringflow.Run, inputs: Any, userdata: Any = None, **metadata: Any) -> _ringflow.Sample:
    """await run.infer(x): submit() one sample and await its result."""
    return await run.submit(inputs, userdata, **metadata)

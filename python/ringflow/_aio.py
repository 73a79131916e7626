"""asyncio glue for rf.Future: one wake-up fd per event loop.

The engine completes futures on its report thread without the GIL: it queues them on the loop's
Waker and writes the Waker's fd (an eventfd, or a pipe where there is none), once per burst. The
loop watches that fd with add_reader and, on its own thread, settles the asyncio futures that
coroutines await (Waker.settle, in C++). Where a loop has no add_reader, one helper thread per loop
waits on the fd and hands over with call_soon_threadsafe.
"""

from __future__ import annotations

import asyncio
import collections
import selectors
import threading
import weakref
from typing import Any, Callable, Generator

from . import _ringflow

_USE_PIPE = False  # a pipe even where there is an eventfd (the tests of the fallback set it)

_bridges: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Bridge] = weakref.WeakKeyDictionary()


class _Bridge:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.waker = _ringflow.Waker(pipe=_USE_PIPE)
        self.rooms: dict[int, collections.deque[asyncio.Future]] = {}  # by id(run), while any waits
        try:
            loop.add_reader(self.waker.fileno(), self.waker.settle)
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
                        self.waker.settle()
                    finally:
                        handed_over.set()

                try:
                    loop.call_soon_threadsafe(settle)
                except RuntimeError:  # the loop closed meanwhile
                    return
                while not handed_over.wait(0.5) and not loop.is_closed():
                    pass


_last_bridge: tuple[weakref.ref, _Bridge] | None = None


def _bridge(loop: asyncio.AbstractEventLoop) -> _Bridge:
    global _last_bridge
    last = _last_bridge  # most programs have one loop: skip the weak dictionary's lookup
    if last is not None and last[0]() is loop:
        return last[1]
    bridge = _bridges.get(loop)
    if bridge is None:
        bridge = _bridges[loop] = _Bridge(loop)
    _last_bridge = (weakref.ref(loop), bridge)
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
        future._settle()  # it finished before anyone awaited it
    else:
        # Cancelling the awaiting task cancels the sample: dropped if it has not run yet.
        awaiter.add_done_callback(lambda a: future.cancel() if a.cancelled() else None)
    return awaiter.__await__()


async def _enter(run: _ringflow.Run, attempt: Callable[[], Any]) -> Any:
    """attempt()'s first result that is not None, without blocking the loop: None means the Run's
    input queue is full. Coroutines waiting for room queue up first come, first served; only the
    first watches the engine (attempt, ask for a wake-up, attempt again, await it), and each that
    gets in hands the turn on, so room made for one sample costs one retry, not one per waiter."""
    bridge = _bridge(asyncio.get_running_loop())
    line = bridge.rooms.get(id(run))
    if not line:  # nobody is waiting: try at once
        result = attempt()
        if result is not None:
            return result
        line = bridge.rooms.setdefault(id(run), collections.deque())
    turn = asyncio.get_running_loop().create_future()
    line.append(turn)
    if len(line) == 1:
        turn.set_result(None)
    try:
        await turn
        return await _poll_or_wait(attempt, run._when_pushable)
    finally:
        ours = line[0] is turn
        line.remove(turn)
        if not line:
            del bridge.rooms[id(run)]
        elif ours and not line[0].done():
            line[0].set_result(None)


async def infer(run: _ringflow.Run, inputs: Any, userdata: Any = None, **metadata: Any) -> _ringflow.Sample:
    """await run.infer(x): submit one sample and await its result, without ever blocking the event
    loop: while the input queue is full, it waits for room in line with the loop's other callers."""
    future = await _enter(run, lambda: run.try_submit(inputs, userdata, **metadata))
    return await future


# ---- the push/pull style ------------------------------------------------------------------------
# The same wake-up fd serves these: a coroutine that finds no room (or no result) asks the Run for
# a Future done at its next wake-up of pushers (pullers), looks once more, and awaits it. The
# engine thread that wakes it only posts it to the loop's Waker.


async def push_async(run: _ringflow.Run, inputs: Any, **metadata: Any) -> bool:
    """await run.push_async(x): push() that waits for room without blocking the event loop."""
    return await _enter(run, lambda: run._push_if_room(inputs, **metadata))


async def _poll_or_wait(poll: Callable[[], Any], wake_up: Callable[[], _ringflow.Future]) -> Any:
    """poll()'s first result that is not None. Between polls it awaits the Run's next wake-up,
    asked for before polling once more, so that no wake-up is missed."""
    while (result := poll()) is None:
        woken = wake_up()
        if (result := poll()) is not None:
            break
        await woken
    return result


async def _next_result(run: _ringflow.Run) -> _ringflow.Sample:
    return await _poll_or_wait(run._pull_nowait, run._when_pullable)


async def pull_async(run: _ringflow.Run, timeout_ms: int = -1) -> _ringflow.Sample | None:
    """await run.pull_async(): pull() without blocking the event loop. The next result; None at end
    of stream or after timeout_ms (-1: no timeout)."""
    try:
        if timeout_ms < 0:
            return await _next_result(run)
        return await asyncio.wait_for(_next_result(run), timeout_ms / 1000)
    except (StopAsyncIteration, asyncio.TimeoutError):
        return None


def aiter_run(run: _ringflow.Run) -> _RunResults:
    return _RunResults(run)


class _RunResults:
    """async for sample in run: the results in order until end of stream; raises InferenceError for
    a failed sample, as the plain for loop does."""

    def __init__(self, run: _ringflow.Run) -> None:
        self._run = run

    def __aiter__(self) -> _RunResults:
        return self

    async def __anext__(self) -> _ringflow.Sample:
        return await _next_result(self._run)

"""The push/pull style from asyncio (issue 10): await run.push_async(x), await run.pull_async() and
async for sample in run, against onnxruntime.InferenceSession.run; they wait through the loop's
wake-up fd, never blocking the loop and never starting a thread."""

import asyncio
import threading
import time

import numpy as np
import pytest

import ringflow as rf
from helpers import mlp_rows, tick_gaps


def build(mlp_path: str, **options) -> rf.Run:
    return rf.Graph().add(rf.Model(mlp_path).graph()).build(np.zeros((1, 64), np.float32),
                                                            rf.RunOptions(**options))


def assert_oracle(sample: rf.Sample, x: np.ndarray, oracle) -> None:
    np.testing.assert_allclose(sample[0], oracle.run(None, {"input": x})[0], rtol=1e-5, atol=1e-5)


def test_push_async_and_async_for_through_a_two_deep_queue(mlp_path, mlp_oracle):
    """500 samples through a queue of 2: push_async waits for room hundreds of times, async for
    waits for results; every result equals the oracle, in order, with no thread started."""
    run = build(mlp_path, queue_depth=2)
    inputs = mlp_rows(500, seed=11)
    threads_before = threading.active_count()

    async def main() -> list[rf.Sample]:
        async def produce() -> None:
            for i, x in enumerate(inputs):
                assert await run.push_async(x, frame_id=i)
            run.close_input()

        producer = asyncio.ensure_future(produce())
        results = [sample async for sample in run]
        await producer
        return results

    results = asyncio.run(main())
    assert [s.frame_id for s in results] == list(range(500))
    for x, s in zip(inputs, results):
        assert_oracle(s, x, mlp_oracle)
    assert threading.active_count() == threads_before


def test_pull_async_times_out_and_ends_with_none(mlp_path, mlp_oracle):
    run = build(mlp_path, queue_depth=4)
    x = mlp_rows(1, seed=12)[0]

    async def main():
        start = time.perf_counter()
        nothing = await run.pull_async(timeout_ms=50)
        waited = time.perf_counter() - start
        await run.push_async(x)
        got = await run.pull_async(timeout_ms=30_000)
        run.close_input()
        end = await run.pull_async()
        return nothing, waited, got, end

    nothing, waited, got, end = asyncio.run(main())
    assert nothing is None and waited >= 0.045
    assert_oracle(got, x, mlp_oracle)
    assert end is None, "end of stream"


def test_async_for_raises_for_a_failed_sample_and_goes_on_after_it(mlp_path):
    def picky(sample: rf.Sample):
        if sample.frame_id == 1:
            raise ValueError("not this one")

    run = rf.Graph().add(rf.Model(mlp_path).graph()).add(rf.Stage(picky, name="picky")).build(
        np.zeros((1, 64), np.float32))

    async def main():
        for i, x in enumerate(mlp_rows(3)):
            await run.push_async(x, frame_id=i)
        run.close_input()
        frames, errors = [], []
        results = run.__aiter__()
        while True:
            try:
                frames.append((await results.__anext__()).frame_id)
            except StopAsyncIteration:
                return frames, errors
            except rf.InferenceError as error:
                errors.append(str(error))

    frames, errors = asyncio.run(main())
    assert frames == [0, 2]
    assert len(errors) == 1 and "stage 'picky' failed: ValueError: not this one" in errors[0]


def test_push_async_never_blocks_the_loop_and_close_input_releases_it(mlp_path):
    """A 50 ms stage behind a queue of 1: push_async waits for room for whole stage times while a
    1 ms ticker keeps ticking; close_input() while it waits raises ClosedError in it."""
    release = threading.Event()
    run = rf.Graph().add(rf.Stage(lambda s: release.wait(0.05) and None, name="slow")).add(
        rf.Model(mlp_path).graph()).build(None, rf.RunOptions(queue_depth=1))

    async def main():
        gaps: list[float] = []
        stop = asyncio.Event()
        tick = asyncio.ensure_future(tick_gaps(gaps, stop))
        for x in mlp_rows(8, seed=13):  # more than capacity: the last pushes wait for room
            pushed = asyncio.ensure_future(run.push_async(x))
            done, _ = await asyncio.wait([pushed], timeout=0.5)
            if not done:
                break
        else:
            pytest.fail("the queue never filled")
        run.close_input()
        with pytest.raises(rf.ClosedError):
            await asyncio.wait_for(pushed, 10)
        stop.set()
        await tick
        return sum(g for g in gaps if g > 0.03)

    stalled = asyncio.run(main())
    release.set()
    assert stalled < 0.2, f"the event loop stalled for {stalled * 1000:.0f} ms in all"


def test_many_coroutines_waiting_for_room_get_in_first_come_first_served(mlp_path, mlp_oracle):
    """200 coroutines infer through a queue of 2 behind a 2 ms stage: they wait in one line behind
    a single engine wake-up, and each gets its own result."""
    run = rf.Graph().add(rf.Stage(lambda s: time.sleep(0.002), name="slow")).add(
        rf.Model(mlp_path).graph()).build(None, rf.RunOptions(queue_depth=2))
    inputs = mlp_rows(200, seed=14)
    threads_before = threading.active_count()

    async def main():
        return await asyncio.gather(*(run.infer(x, frame_id=i) for i, x in enumerate(inputs)))

    results = asyncio.run(main())
    for i, (x, s) in enumerate(zip(inputs, results)):
        assert s.frame_id == i
        assert_oracle(s, x, mlp_oracle)
    assert threading.active_count() == threads_before, "no executor thread waits for room"
    from ringflow import _aio
    assert not any(bridge.rooms for bridge in _aio._bridges.values()), "the line is gone once empty"


def test_the_pipe_fallback_wakes_the_loop_as_the_eventfd_does(mlp_path, mlp_oracle, monkeypatch):
    from ringflow import _aio
    monkeypatch.setattr(_aio, "_USE_PIPE", True)
    monkeypatch.setattr(_aio, "_last_bridge", None)
    run = build(mlp_path, queue_depth=64, max_batch=8, max_delay_us=500)
    inputs = mlp_rows(300, seed=15)

    async def main():
        results = await asyncio.gather(*(run.infer(x) for x in inputs))
        bridge = _aio._bridge(asyncio.get_running_loop())
        return results, bridge.waker.fileno()

    results, fd = asyncio.run(main())
    for x, s in zip(inputs, results):
        assert_oracle(s, x, mlp_oracle)
    assert fd >= 0

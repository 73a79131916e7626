"""run.submit() and rf.Future (issue 10, part 1): from threads and from asyncio coroutines, against
onnxruntime.InferenceSession.run; batching of concurrent submissions; one wake-up fd per loop and
no thread per request; cancellation before and after a sample starts; errors; the refusals that keep
a Run's results in one place."""

import asyncio
import concurrent.futures
import threading
import time

import numpy as np
import pytest

import ringflow as rf
from helpers import mlp_rows, tick_gaps


def build(mlp_path: str, **options) -> rf.Run:
    return rf.Graph().add(rf.Model(mlp_path).graph()).build(np.zeros((1, 64), np.float32),
                                                            rf.RunOptions(**options))


def test_submit_from_many_threads_equals_the_oracle(mlp_path, mlp_oracle):
    run = build(mlp_path, queue_depth=16, max_batch=8, max_delay_us=200)
    inputs = mlp_rows(400)
    futures: list[rf.Future] = [None] * len(inputs)  # type: ignore[list-item]

    def submit_every_fourth(start: int) -> None:
        for i in range(start, len(inputs), 4):
            futures[i] = run.submit(inputs[i], userdata=i)

    threads = [threading.Thread(target=submit_every_fourth, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, (x, fut) in enumerate(zip(inputs, futures)):
        assert fut.userdata == i
        np.testing.assert_allclose(fut.result(timeout=30)[0], mlp_oracle.run(None, {"input": x})[0], rtol=1e-5, atol=1e-5)
        assert fut.done() and not fut.cancelled() and fut.exception() is None
    assert run.wait_all(30000)


def test_a_thousand_coroutines_are_batched_and_equal_the_oracle(mlp_path, mlp_oracle):
    run = build(mlp_path, queue_depth=1024, max_batch=32, max_delay_us=2000)
    inputs = mlp_rows(1000, seed=1)
    threads_before = threading.active_count()

    async def main() -> list[rf.Sample]:
        return await asyncio.gather(*(run.infer(x) for x in inputs))

    results = asyncio.run(main())
    for x, s in zip(inputs, results):
        np.testing.assert_allclose(s[0], mlp_oracle.run(None, {"input": x})[0], rtol=1e-5, atol=1e-5)
    stats = run.stats()
    assert stats.outputs_pulled == 1000
    assert stats.avg_batch_size > 4, f"concurrent submissions were not batched: {stats.avg_batch_size:.1f}"
    # No thread per request: the engine's threads are C++ (not counted here) and asyncio needs none.
    assert threading.active_count() == threads_before


def test_awaiting_a_future_that_finished_first_and_one_loop_per_fd(mlp_path):
    run = build(mlp_path, queue_depth=64)
    fut = run.submit(mlp_rows(1)[0])
    fut.result(timeout=30)

    async def main() -> tuple[rf.Sample, int]:
        first = await fut  # already done: settled without the fd
        await asyncio.gather(*(run.submit(x) for x in mlp_rows(50)))
        from ringflow import _aio
        return first, len([b for loop, b in _aio._bridges.items() if loop is asyncio.get_running_loop()])

    first, bridges = asyncio.run(main())
    assert first.names == ["logits"]
    assert bridges == 1


def slow_run(mlp_path: str, delay_s: float = 0.02, **options) -> rf.Run:
    """A Run whose first stage takes `delay_s` per sample, so later samples queue up behind it."""
    graph = rf.Graph().add(rf.Stage(lambda s: time.sleep(delay_s), name="slow")).add(rf.Model(mlp_path).graph())
    return graph.build(None, rf.RunOptions(queue_depth=32, **options))


def test_cancel_before_start_drops_the_sample_and_leaves_the_others(mlp_path, mlp_oracle):
    run = slow_run(mlp_path)
    inputs = mlp_rows(10, seed=2)
    futures = [run.submit(x) for x in inputs]
    assert futures[7].cancel() and futures[8].cancel()
    for i, (x, fut) in enumerate(zip(inputs, futures)):
        if i in (7, 8):
            with pytest.raises(concurrent.futures.CancelledError):
                fut.result(timeout=30)
            assert fut.cancelled()
            with pytest.raises(concurrent.futures.CancelledError):
                fut.exception(timeout=1)
        else:
            np.testing.assert_allclose(fut.result(timeout=30)[0], mlp_oracle.run(None, {"input": x})[0], rtol=1e-5)
    stats = run.stats()
    assert stats.cancelled == 2
    assert stats.batches == 8, "a cancelled sample must not be inferred"
    assert not futures[0].cancel(), "a finished future cannot be cancelled"


def test_cancel_completes_at_once_even_behind_a_stalled_stage(mlp_path):
    release = threading.Event()
    run = rf.Graph().add(rf.Stage(lambda s: release.wait(10) and None, name="stall")).add(rf.Model(mlp_path).graph()).build(
        None, rf.RunOptions(queue_depth=8))
    futures = [run.submit(x) for x in mlp_rows(3)]
    seen = []
    futures[2].add_done_callback(lambda f: seen.append(f.cancelled()))
    assert futures[2].cancel()
    assert futures[2].done() and futures[2].cancelled() and seen == [True]
    assert futures[2].cancel(), "cancelling again reports it cancelled"
    release.set()
    assert futures[0].result(timeout=30) is not None and futures[1].result(timeout=30) is not None
    assert run.wait_all(30000)
    assert run.stats().cancelled == 1


def test_infer_never_blocks_the_event_loop_when_the_queue_is_full(mlp_path, mlp_oracle):
    """A 1 ms ticker keeps ticking while 12 coroutines wait for room in a 2-deep queue behind a
    50 ms stage: a blocking submit would stall the loop for whole stage times."""
    run = rf.Graph().add(rf.Stage(lambda s: time.sleep(0.05), name="slow")).add(rf.Model(mlp_path).graph()).build(
        None, rf.RunOptions(queue_depth=2))
    inputs = mlp_rows(12, seed=5)

    async def main() -> tuple[list, float]:
        gaps: list[float] = []
        stop = asyncio.Event()
        tick = asyncio.ensure_future(tick_gaps(gaps, stop))
        results = await asyncio.gather(*(run.infer(x) for x in inputs))
        stop.set()
        await tick
        return results, sum(g for g in gaps if g > 0.03)

    results, stalled = asyncio.run(main())
    for x, s in zip(inputs, results):
        np.testing.assert_allclose(s[0], mlp_oracle.run(None, {"input": x})[0], rtol=1e-5, atol=1e-5)
    # Blocking submits would stall the loop about 10 x 50 ms; scheduling noise on a busy machine
    # accounts for a few long ticks at most.
    assert stalled < 0.2, f"the event loop stalled for {stalled * 1000:.0f} ms in all"


def test_cancel_after_start_discards_the_result(mlp_path):
    started = threading.Event()
    release = threading.Event()

    def gate(sample: rf.Sample) -> None:
        started.set()
        release.wait(10)

    run = rf.Graph().add(rf.Model(mlp_path).graph()).add(rf.Stage(gate, name="gate")).build(
        np.zeros((1, 64), np.float32))
    fut = run.submit(mlp_rows(1)[0])
    assert started.wait(10)  # inferred, now in the stage after the model
    assert fut.cancel()
    release.set()
    with pytest.raises(concurrent.futures.CancelledError):
        fut.result(timeout=30)
    assert run.wait_all(30000)  # the future was done at once; the engine discards the result later
    assert run.stats().cancelled == 1


def test_cancelling_an_awaiting_task_cancels_its_sample_only(mlp_path, mlp_oracle):
    run = slow_run(mlp_path, delay_s=0.01)
    inputs = mlp_rows(6, seed=3)

    async def main() -> list:
        tasks = [asyncio.ensure_future(run.infer(x)) for x in inputs]
        await asyncio.sleep(0)
        tasks[4].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(main())
    assert isinstance(results[4], asyncio.CancelledError)
    for i in (0, 1, 2, 3, 5):
        np.testing.assert_allclose(results[i][0], mlp_oracle.run(None, {"input": inputs[i]})[0], rtol=1e-5)
    run.wait_all(30000)
    assert run.stats().cancelled == 1


def test_a_failed_sample_raises_in_its_own_future_only(mlp_path):
    def picky(sample: rf.Sample):
        if sample.frame_id == 1:
            raise ValueError("not this one")

    run = rf.Graph().add(rf.Model(mlp_path).graph()).add(rf.Stage(picky, name="picky")).build(
        np.zeros((1, 64), np.float32))
    futures = [run.submit(x, frame_id=i) for i, x in enumerate(mlp_rows(3))]
    assert futures[0].result(timeout=30).frame_id == 0
    with pytest.raises(rf.InferenceError, match="stage 'picky' failed: ValueError: not this one"):
        futures[1].result(timeout=30)
    assert isinstance(futures[1].exception(), rf.InferenceError)
    assert futures[2].result(timeout=30).frame_id == 2

    async def main():
        return await run.submit(mlp_rows(1)[0], frame_id=1)

    with pytest.raises(rf.InferenceError, match="not this one"):
        asyncio.run(main())


def test_done_callbacks_and_timeouts(mlp_path):
    run = slow_run(mlp_path, delay_s=0.05)
    seen = []
    fut = run.submit(mlp_rows(1)[0], userdata="u")
    fut.add_done_callback(lambda f: seen.append((f.userdata, f.done())))
    with pytest.raises(concurrent.futures.TimeoutError):
        fut.result(timeout=0.001)
    fut.result(timeout=30)
    run.wait_all(30000)
    assert seen == [("u", True)]
    fut.add_done_callback(lambda f: seen.append("at once"))
    assert seen[-1] == "at once"


def test_a_run_serves_one_way_and_stop_completes_pending_futures(mlp_path):
    run = build(mlp_path)
    run.push(mlp_rows(1)[0])
    with pytest.raises(rf.Error, match="push\\(\\) was used on"):
        run.submit(mlp_rows(1)[0])

    run = build(mlp_path)
    run.submit(mlp_rows(1)[0]).result(timeout=30)
    with pytest.raises(rf.Error, match="submit\\(\\)"):
        run.push(mlp_rows(1)[0])
    with pytest.raises(rf.Error, match="submit\\(\\)"):
        run.pull(0)

    run = slow_run(mlp_path, delay_s=0.05)
    futures = [run.submit(x) for x in mlp_rows(5)]
    run.stop()
    for fut in futures:
        assert fut.done()
    assert any(f.cancelled() for f in futures)
    with pytest.raises(rf.ClosedError):
        run.submit(mlp_rows(1)[0])


def test_drop_incoming_completes_the_rejected_future_with_an_error(mlp_path):
    run = slow_run(mlp_path, delay_s=0.05, overflow_policy=rf.OverflowPolicy.DropIncoming)
    futures = [run.submit(x) for x in mlp_rows(80)]
    rejected = [f for f in futures if f.exception(timeout=30) is not None]
    assert rejected, "the queue never filled"
    assert all("DropIncoming" in str(f.exception()) for f in rejected)
    assert all(f.result(timeout=30) is not None for f in futures if f not in rejected)


def test_cancelling_100_of_1000_tasks_at_random_times_leaves_the_other_900_correct(mlp_path, mlp_oracle):
    """Some are cancelled while they wait for room, some while queued, some after they ran."""
    run = slow_run(mlp_path, delay_s=0.0005, max_batch=16, max_delay_us=500)
    inputs = mlp_rows(1000, seed=16)
    rng = np.random.default_rng(16)
    victims = set(rng.choice(1000, 100, replace=False).tolist())
    delays = rng.uniform(0, 0.3, 1000)

    async def main() -> list:
        tasks = [asyncio.ensure_future(run.infer(x)) for x in inputs]

        async def cancel_later(i: int) -> None:
            await asyncio.sleep(delays[i])
            tasks[i].cancel()

        await asyncio.gather(*(cancel_later(i) for i in victims))
        return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)

    results = asyncio.run(main())
    cancelled = [i for i, r in enumerate(results) if isinstance(r, asyncio.CancelledError)]
    assert set(cancelled) <= victims
    for i, (x, r) in enumerate(zip(inputs, results)):
        if i not in victims:
            np.testing.assert_allclose(r[0], mlp_oracle.run(None, {"input": x})[0], rtol=1e-5, atol=1e-5)
    assert run.wait_all(30_000)
    stats = run.stats()
    # Every cancelled task was one of: still waiting for room (its sample never entered the Run),
    # a sample the Run dropped or whose result it discarded (counted as cancelled), or one whose
    # result had already come back. Every accepted sample was delivered exactly once.
    enqueued = stats.input.inputs_enqueued
    never_entered = 1000 - enqueued
    came_back_anyway = (enqueued - stats.cancelled) - (1000 - len(cancelled))
    assert 0 <= came_back_anyway <= len(cancelled) - never_entered - stats.cancelled
    assert stats.outputs_pulled == enqueued
    assert len(cancelled) >= 50, "most cancellations land while the 1000 requests are served"


def test_a_1ms_ticker_keeps_its_rate_while_the_run_is_saturated(mlp_path):
    """The loop's own tick rate, idle and then beside 64 coroutines that keep a Run with a 4-deep
    queue saturated (its queue full, the submitters waiting in line for room): within 20%. (A Python
    stage would make this a test of GIL hand-offs, not of the loop, so the Run has none.)"""
    run = build(mlp_path, queue_depth=4)

    async def ticks_in(seconds: float) -> int:
        count, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            await asyncio.sleep(0.001)
            count += 1
        return count

    async def main() -> tuple[int, int, int]:
        idle = await ticks_in(0.5)
        stop = False
        served = 0

        async def client(x) -> None:
            nonlocal served
            while not stop:
                await run.infer(x)
                served += 1

        clients = [asyncio.ensure_future(client(x)) for x in mlp_rows(64, seed=17)]
        await asyncio.sleep(0.05)
        loaded = await ticks_in(0.5)
        stop = True
        await asyncio.gather(*clients)
        return idle, loaded, served

    idle, loaded, served = asyncio.run(main())
    assert served > 1000 and run.input_stats().max_queue_fill == 1.0, "the Run was not saturated"
    assert loaded >= 0.8 * idle, f"{loaded} ticks beside the Run against {idle} idle"

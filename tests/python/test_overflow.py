"""Overflow policies under a consumer that cannot keep up: KeepLatest evicts the oldest waiting
sample, DropIncoming rejects the new one, and on_input_drop hears about every drop, on the pushing
thread, with the GIL. The counters add up exactly, and whatever was kept is delivered intact."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import ringflow as rf
from helpers import ORACLE_ATOL, pull_until_closed

KEEP_LATEST = rf.OverflowPolicy.KeepLatest
DROP_INCOMING = rf.OverflowPolicy.DropIncoming


def frame_id_for(i: int) -> int:
    return 7000 + 3 * i  # unlike input_seq, so echoing the wrong field is caught


def index_of(fid: int) -> int:
    return (fid - 7000) // 3


@pytest.fixture(scope="module")
def inputs_and_oracle(tiny_mlp):
    rng = np.random.default_rng(4242)
    inputs = rng.standard_normal((600,) + tiny_mlp.sample_shape, dtype=np.float32)
    return inputs, np.concatenate(tiny_mlp.oracle.batched(list(inputs)))


def check_outputs(pulled, expected):
    """pulled: (input_seq, frame_id, output) tuples; each output must be its own input's."""
    for _, fid, out in pulled:
        diff = float(np.abs(out[0].astype(np.float64) - expected[index_of(fid)]).max())
        assert diff <= ORACLE_ATOL, f"frame {fid}: max abs diff {diff:.3g}"


def check_drop_accounting(run, n_pushes, drops, pulled):
    """The counters every policy must satisfy once the stream is drained."""
    stats = run.stats()
    inp = stats.input
    assert inp.pushes == n_pushes
    assert inp.inputs_enqueued + inp.inputs_dropped == inp.pushes, (
        f"enqueued {inp.inputs_enqueued} + dropped {inp.inputs_dropped} != pushes {inp.pushes}")
    assert len(drops) == inp.inputs_dropped, (
        f"on_input_drop was called {len(drops)} times for {inp.inputs_dropped} drops")
    assert stats.outputs_pulled == inp.inputs_enqueued == len(pulled)
    assert stats.outputs_ready == stats.outputs_pulled and stats.errors == 0
    return stats


def check_policy_outcome(policy, accepted, drops, pulled, n_pushes, queue_depth):
    """accepted[i]: what push i returned. drops: the DroppedInput objects the callback received
    (kept past the callback, so they must be copies, not views of engine memory)."""
    all_frames = [frame_id_for(i) for i in range(n_pushes)]
    pulled_seqs = [seq for seq, _, _ in pulled]
    pulled_frames = [fid for _, fid, _ in pulled]
    assert pulled_seqs == sorted(pulled_seqs), "results out of push order"
    if policy == KEEP_LATEST:
        assert all(accepted), "KeepLatest accepts every push (it evicts an older sample instead)"
        assert all(d.reason == rf.DropReason.Evicted for d in drops)
        evicted_seqs = [d.input_seq for d in drops]
        assert all(a < b for a, b in zip(evicted_seqs, evicted_seqs[1:])), (
            f"the oldest waiting sample goes first; evicted input_seqs {evicted_seqs}")
        # One producer: input_seq i is push i. Evicted and delivered samples partition the pushes.
        assert sorted(evicted_seqs + pulled_seqs) == list(range(n_pushes))
        assert [d.frame_id for d in drops] == [frame_id_for(s) for s in evicted_seqs]
        assert pulled_frames == [frame_id_for(s) for s in pulled_seqs]
        # A sample can only be evicted by queue_depth newer ones, so the newest always survive.
        newest = set(range(n_pushes - queue_depth, n_pushes))
        assert newest <= set(pulled_seqs), "KeepLatest dropped one of the latest samples"
    else:
        assert all(d.reason == rf.DropReason.QueueFull for d in drops)
        assert all(d.input_seq == 0 for d in drops), "a rejected sample never got an input_seq"
        rejected = [f for f, ok in zip(all_frames, accepted) if not ok]
        assert [d.frame_id for d in drops] == rejected, "push() returned False for other samples"
        assert pulled_frames == [f for f, ok in zip(all_frames, accepted) if ok]
        # Rejected samples take no input_seq: the accepted ones are numbered densely.
        assert pulled_seqs == list(range(len(pulled)))
    assert all(d.stream_id == "cam-1" for d in drops)


@pytest.mark.parametrize("policy", [KEEP_LATEST, DROP_INCOMING], ids=str)
def test_stalled_consumer_drops_and_the_counters_add_up(tiny_mlp, inputs_and_oracle, make_run,
                                                        policy):
    """Nobody pulls while 60 samples are pushed into a Run that holds run.capacity: at least the
    surplus is dropped, deterministically, and what was kept is delivered afterwards."""
    inputs, expected = inputs_and_oracle
    drops = []
    queue_depth, n_pushes = 3, 60
    run = make_run(tiny_mlp.model, inputs[0], queue_depth=queue_depth, overflow_policy=policy,
                   on_input_drop=drops.append)
    accepted = [run.push(inputs[i], frame_id=frame_id_for(i), stream_id="cam-1")
                for i in range(n_pushes)]
    assert all(type(a) is bool for a in accepted)
    run.close_input()
    pulled = [(s.input_seq, s.frame_id, s[0].copy()) for s in pull_until_closed(run)]

    stats = check_drop_accounting(run, n_pushes, drops, pulled)
    assert stats.input.inputs_dropped >= n_pushes - run.capacity
    assert stats.input.inputs_enqueued <= run.capacity
    check_policy_outcome(policy, accepted, drops, pulled, n_pushes, queue_depth)
    if policy == DROP_INCOMING:
        assert stats.input.push_failures == stats.input.inputs_dropped
    else:
        assert stats.input.push_failures == 0
    check_outputs(pulled, expected)


@pytest.mark.parametrize("policy", [KEEP_LATEST, DROP_INCOMING], ids=str)
def test_slow_consumer_drops_and_the_counters_add_up(tiny_mlp, inputs_and_oracle, make_run,
                                                     spawn, policy):
    """A consumer that sleeps 2 ms per result pulls while a producer pushes 400 samples at about
    one per 0.2 ms or faster: drops happen while results flow, and the accounting still holds."""
    inputs, expected = inputs_and_oracle
    drops = []
    queue_depth, n_pushes = 4, 400
    run = make_run(tiny_mlp.model, inputs[0], queue_depth=queue_depth, overflow_policy=policy,
                   on_input_drop=drops.append)

    def consume():
        pulled = []
        for s in pull_until_closed(run):
            pulled.append((s.input_seq, s.frame_id, s[0].copy()))
            time.sleep(0.002)
        return pulled

    def produce():
        accepted = []
        for i in range(n_pushes):
            accepted.append(run.push(inputs[i], frame_id=frame_id_for(i), stream_id="cam-1"))
            time.sleep(0.0002)  # paced, so the pipeline and the consumer move between pushes
        return accepted

    consumer = spawn(consume, name="slow consumer")
    accepted = produce()
    run.close_input()
    pulled = consumer.join()

    # The producer is done in well under 0.8 s, the time the consumer needs for 400 results.
    assert drops, "the slow consumer kept up, so nothing was dropped and nothing was tested"
    check_drop_accounting(run, n_pushes, drops, pulled)
    check_policy_outcome(policy, accepted, drops, pulled, n_pushes, queue_depth)
    check_outputs(pulled, expected)


def test_try_push_under_drop_incoming_reports_the_drop(tiny_mlp, make_run):
    x = tiny_mlp.input_for(0)
    drops = []
    run = make_run(tiny_mlp.model, x, queue_depth=1, overflow_policy=DROP_INCOMING,
                   on_input_drop=drops.append)
    results = [run.try_push(x, frame_id=frame_id_for(i)) for i in range(3 * run.capacity)]
    assert results.count(False) == len(drops) >= 2 * run.capacity
    rejected = [frame_id_for(i) for i, ok in enumerate(results) if not ok]
    assert [d.frame_id for d in drops] == rejected
    run.close_input()
    assert len(list(pull_until_closed(run))) == results.count(True)


# --------------------------------------------------------------------------------------------
# A callback that raises
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("policy", [KEEP_LATEST, DROP_INCOMING], ids=str)
def test_raising_callback_surfaces_as_callback_error_after_the_push_completed(
        tiny_mlp, inputs_and_oracle, make_run, policy):
    inputs, expected = inputs_and_oracle
    seen = []

    def on_drop(dropped):
        seen.append(dropped)
        raise ValueError(f"boom at frame {dropped.frame_id}")

    n_pushes = 40
    run = make_run(tiny_mlp.model, inputs[0], queue_depth=2, overflow_policy=policy,
                   on_input_drop=on_drop)
    returned, raised = {}, {}
    for i in range(n_pushes):
        try:
            returned[i] = run.push(inputs[i], frame_id=frame_id_for(i), stream_id="cam-1")
        except rf.CallbackError as error:
            raised[i] = str(error)
    run.close_input()
    pulled = [(s.input_seq, s.frame_id, s[0].copy()) for s in pull_until_closed(run)]

    assert issubclass(rf.CallbackError, rf.Error)
    assert raised, "nothing was dropped, so the raising callback was never tested"
    # One producer: each push drops at most one sample, so one callback error per drop.
    assert len(raised) == len(seen)
    for (i, message), dropped in zip(sorted(raised.items()), seen):
        assert f"ValueError: boom at frame {dropped.frame_id}" in message, message
        if policy == KEEP_LATEST:
            assert "this sample was accepted" in message, message
        else:
            assert "this sample was not accepted" in message, message
            assert dropped.frame_id == frame_id_for(i), "the rejected sample is the one pushed"
    assert all(ok is True for ok in returned.values()), "a push that dropped nothing returned False"

    # Nothing but the reported drops was lost: every enqueued sample is delivered.
    accepted = [policy == KEEP_LATEST or i in returned for i in range(n_pushes)]
    check_drop_accounting(run, n_pushes, seen, pulled)
    check_policy_outcome(policy, accepted, seen, pulled, n_pushes, queue_depth=2)
    check_outputs(pulled, expected)


# --------------------------------------------------------------------------------------------
# What a callback may do
# --------------------------------------------------------------------------------------------

def test_callback_runs_python_on_the_pushing_thread_while_other_threads_run(
        tiny_mlp, inputs_and_oracle, make_run, spawn):
    """Two producers under DropIncoming, a slow consumer and a busy Python thread. The callback
    does real Python and numpy work (which needs the GIL), and each rejection is reported on the
    thread that pushed the rejected sample, as documented."""
    inputs, expected = inputs_and_oracle
    records = []
    idents = {}

    def on_drop(dropped):
        total = np.full(16, dropped.frame_id, dtype=np.int64).sum()  # numpy, GIL held
        records.append((threading.get_ident(), dropped.frame_id, int(total),
                        {"reason": dropped.reason}))

    run = make_run(tiny_mlp.model, inputs[0], queue_depth=2, overflow_policy=DROP_INCOMING,
                   on_input_drop=on_drop)
    stop = threading.Event()
    start = threading.Barrier(3)

    def busy():
        ticks, garbage = 0, []
        start.wait()
        while not stop.is_set():
            garbage.append({"tick": ticks, "arr": np.arange(4)})  # allocations under the GIL
            if len(garbage) > 1000:
                garbage.clear()
            ticks += 1
        return ticks

    def produce(p):
        idents[p] = threading.get_ident()
        start.wait()
        return [run.push(inputs[300 * p + i], frame_id=frame_id_for(300 * p + i))
                for i in range(300)]

    def consume():
        pulled = []
        for s in pull_until_closed(run):
            pulled.append((s.input_seq, s.frame_id, s[0].copy()))
            time.sleep(0.001)
        return pulled

    ticker = spawn(busy, name="busy Python thread")
    consumer = spawn(consume, name="slow consumer")
    producers = [spawn(lambda p=p: produce(p), name=f"producer {p}") for p in range(2)]
    accepted = [ok for producer in producers for ok in producer.join()]
    run.close_input()
    pulled = consumer.join()
    stop.set()
    assert ticker.join() > 0, "the busy Python thread never ran"

    assert records, "nothing was dropped, so the callback was never tested"
    for ident, fid, total, extra in records:
        producer = index_of(fid) // 300
        assert ident == idents[producer], f"frame {fid}'s drop was reported on another thread"
        assert total == 16 * fid and extra["reason"] == rf.DropReason.QueueFull
    rejected = {frame_id_for(i) for i, ok in enumerate(accepted) if not ok}
    assert sorted(fid for _, fid, _, _ in records) == sorted(rejected)
    assert sorted(fid for _, fid, _ in pulled) == sorted(
        frame_id_for(i) for i, ok in enumerate(accepted) if ok)
    check_drop_accounting(run, 600, records, pulled)
    check_outputs(pulled, expected)


def test_callback_may_read_the_runs_counters(tiny_mlp, make_run):
    """A callback that logs the Run's stats: the drop it reports is already counted."""
    x = tiny_mlp.input_for(0)
    holder = []
    seen = []

    def on_drop(dropped):
        stats = holder[0].input_stats()
        seen.append((dropped.input_seq, stats.inputs_dropped, stats.pushes))

    run = make_run(tiny_mlp.model, x, queue_depth=2, overflow_policy=KEEP_LATEST,
                   on_input_drop=on_drop)
    holder.append(run)
    try:
        n_pushes = 30
        for i in range(n_pushes):
            run.push(x, frame_id=i)
        assert seen, "nothing was evicted"
        for k, (_, dropped_so_far, pushes_so_far) in enumerate(seen):
            assert dropped_so_far == k + 1, f"drop {k + 1} saw inputs_dropped={dropped_so_far}"
            assert pushes_so_far <= n_pushes
        run.close_input()
        assert len(list(pull_until_closed(run))) == n_pushes - len(seen)
    finally:
        holder.clear()  # the callback refers to the Run: break the cycle so it can be destroyed


def test_keep_latest_with_many_producers_and_consumers_partitions_the_pushes(
        tiny_mlp, inputs_and_oracle, make_run, spawn):
    """Three producers evict each other's samples while two consumers pull from two unordered
    workers: every push was accepted, and each input_seq ends up exactly once, either evicted
    (reported to the callback) or delivered (equal to its input's oracle)."""
    inputs, expected = inputs_and_oracle
    drops = []
    run = make_run(tiny_mlp.model, inputs[0], queue_depth=2, workers=2, ordered=False,
                   overflow_policy=KEEP_LATEST, on_input_drop=drops.append)
    per_producer = 200
    start = threading.Barrier(5)

    def produce(p):
        start.wait()
        return [run.push(inputs[per_producer * p + i], frame_id=frame_id_for(per_producer * p + i))
                for i in range(per_producer)]

    def consume():
        start.wait()
        pulled = []
        for s in pull_until_closed(run):
            pulled.append((s.input_seq, s.frame_id, s[0].copy()))
            time.sleep(0.0005)
        return pulled

    consumers = [spawn(consume, name=f"consumer {c}") for c in range(2)]
    producers = [spawn(lambda p=p: produce(p), name=f"producer {p}") for p in range(3)]
    accepted = [ok for producer in producers for ok in producer.join()]
    run.close_input()
    pulled = [r for consumer in consumers for r in consumer.join()]

    n_pushes = 3 * per_producer
    assert all(accepted)
    assert drops, "nothing was evicted"
    assert all(d.reason == rf.DropReason.Evicted for d in drops)
    check_drop_accounting(run, n_pushes, drops, pulled)
    seqs = sorted([d.input_seq for d in drops] + [seq for seq, _, _ in pulled])
    assert seqs == list(range(n_pushes)), (
        "an input_seq was lost, duplicated, or both evicted and delivered")
    frames = sorted([d.frame_id for d in drops] + [fid for _, fid, _ in pulled])
    assert frames == sorted(frame_id_for(i) for i in range(n_pushes))
    check_outputs(pulled, expected)

"""Load: many Python producer and consumer threads on one Run. Every accepted sample comes out
exactly once, each producer's samples keep their order, delivery order follows the options, and
every result equals onnxruntime's for its own input."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from helpers import ORACLE_ATOL, pull_until_closed

N_PRODUCERS = 4
PER_PRODUCER = 2_500
N_CONSUMERS = 2
N_SAMPLES = N_PRODUCERS * PER_PRODUCER
FRAME_STRIDE = 1_000_000  # producer p sends frame ids p * FRAME_STRIDE + 0, 1, 2, ...


def frame_id(producer: int, i: int) -> int:
    return producer * FRAME_STRIDE + i


def index_of(fid: int) -> int:
    """The position of a frame's input in the module's input array."""
    producer, i = divmod(fid, FRAME_STRIDE)
    return producer * PER_PRODUCER + i


@pytest.fixture(scope="module")
def load_data(tiny_mlp):
    """N_SAMPLES distinct tiny-mlp inputs (one [1, 64] row each) and their oracle outputs."""
    rng = np.random.default_rng(20240917)
    inputs = rng.standard_normal((N_SAMPLES,) + tiny_mlp.sample_shape, dtype=np.float32)
    expected = np.concatenate(tiny_mlp.oracle.batched(list(inputs)))
    # Distinct inputs give clearly distinct outputs, so a result paired with the wrong input fails.
    assert np.abs(expected[0] - expected[1]).max() > 1000 * ORACLE_ATOL
    return inputs, expected


def assert_outputs_match(records, expected):
    """records: (input_seq, frame_id, stream_id, output row) tuples, output row shape (1, 10)."""
    order = [index_of(fid) for _, fid, _, _ in records]
    outputs = np.concatenate([out for _, _, _, out in records])
    diffs = np.abs(outputs.astype(np.float64) - expected[order]).max(axis=1)
    worst = int(np.argmax(diffs))
    assert diffs[worst] <= ORACLE_ATOL, (
        f"frame {records[worst][1]}: max abs diff {diffs[worst]:.3g} from its own input's oracle")


def run_producers_and_consumers(run, inputs, spawn):
    """N_PRODUCERS threads push PER_PRODUCER samples each; N_CONSUMERS threads pull until Closed;
    this thread closes the input once every producer is done. Returns each consumer's records in
    the order that consumer pulled them."""
    start = threading.Barrier(N_PRODUCERS + N_CONSUMERS)

    def produce(p):
        start.wait()
        for i in range(PER_PRODUCER):
            accepted = run.push(inputs[p * PER_PRODUCER + i], frame_id=frame_id(p, i),
                                stream_id=f"producer-{p}")
            assert accepted is True, "Block never rejects a sample"

    def consume():
        start.wait()
        return [(s.input_seq, s.frame_id, s.stream_id, s[0].copy()) for s in pull_until_closed(run)]

    done = threading.Event()

    def poll_stats():
        """stats() from yet another thread while the load runs: each counter only ever grows."""
        previous, polls = None, 0
        while not done.is_set():
            s = run.stats()
            now = (s.input.pushes, s.input.inputs_enqueued, s.outputs_ready, s.outputs_pulled,
                   s.batches, s.latency.count)
            assert s.input.inputs_enqueued <= s.input.pushes <= N_SAMPLES, now
            if previous is not None:
                assert all(a <= b for a, b in zip(previous, now)), f"{previous} -> {now}"
            previous, polls = now, polls + 1
            time.sleep(0.001)
        return polls

    poller = spawn(poll_stats, name="stats poller")
    consumers = [spawn(consume, name=f"consumer {c}") for c in range(N_CONSUMERS)]
    producers = [spawn(lambda p=p: produce(p), name=f"producer {p}") for p in range(N_PRODUCERS)]
    try:
        for producer in producers:
            producer.join()
        run.close_input()
        per_consumer = [consumer.join() for consumer in consumers]
    finally:
        done.set()
    assert poller.join() > 0
    return per_consumer


@pytest.mark.parametrize("workers, ordered", [(1, True), (2, False)],
                         ids=["1 worker ordered", "2 workers unordered"])
def test_four_producers_two_consumers_deliver_each_sample_exactly_once(
        tiny_mlp, load_data, make_run, spawn, workers, ordered):
    inputs, expected = load_data
    run = make_run(tiny_mlp.model, inputs[0], queue_depth=16, workers=workers, ordered=ordered)
    per_consumer = run_producers_and_consumers(run, inputs, spawn)
    records = [r for pulled in per_consumer for r in pulled]

    # Exactly once: every frame id and every input_seq once, nothing extra.
    all_frames = sorted(frame_id(p, i) for p in range(N_PRODUCERS) for i in range(PER_PRODUCER))
    assert len(records) == N_SAMPLES, f"{len(records)} results for {N_SAMPLES} pushes"
    assert sorted(fid for _, fid, _, _ in records) == all_frames, "results lost or duplicated"
    assert sorted(seq for seq, _, _, _ in records) == list(range(N_SAMPLES))
    for _, fid, stream_id, _ in records:
        assert stream_id == f"producer-{fid // FRAME_STRIDE}", (
            f"frame {fid} came back as {stream_id}")

    # input_seq is the admission order, so within one producer it follows that producer's push
    # order whatever the delivery order.
    by_seq = sorted(records, key=lambda r: r[0])
    for p in range(N_PRODUCERS):
        mine = [fid for _, fid, _, _ in by_seq if fid // FRAME_STRIDE == p]
        assert mine == [frame_id(p, i) for i in range(PER_PRODUCER)], (
            f"producer {p}'s samples were admitted out of order")

    if ordered:
        # Each consumer sees a subsequence of push order, so its own pulls come in seq order.
        for c, pulled in enumerate(per_consumer):
            seqs = [seq for seq, _, _, _ in pulled]
            assert all(a < b for a, b in zip(seqs, seqs[1:])), (
                f"consumer {c} got results out of order")

    assert_outputs_match(records, expected)

    stats = run.stats()
    assert (stats.input.pushes, stats.input.inputs_enqueued, stats.input.inputs_dropped) == (
        N_SAMPLES, N_SAMPLES, 0)
    assert (stats.outputs_ready, stats.outputs_pulled, stats.errors) == (N_SAMPLES, N_SAMPLES, 0)


# --------------------------------------------------------------------------------------------
# Ordered delivery with several workers
# --------------------------------------------------------------------------------------------

ORDERED_SAMPLES = 2_000


@pytest.mark.parametrize("max_batch", [1, 4])
def test_two_workers_ordered_deliver_in_push_order(tiny_mlp, load_data, make_run, spawn,
                                                   max_batch):
    """With two inference workers, results finish out of order inside the engine (and with
    batching, whole batches do); ordered=True must still hand them out in push order."""
    inputs, expected = load_data
    run = make_run(tiny_mlp.model, inputs[0], queue_depth=8, workers=2, ordered=True,
                   max_batch=max_batch, max_delay_us=200 if max_batch > 1 else 0)

    def produce():
        for i in range(ORDERED_SAMPLES):
            run.push(inputs[i], frame_id=frame_id(0, i))
        run.close_input()

    producer = spawn(produce, name="producer")
    records = [(s.input_seq, s.frame_id, s.stream_id, s[0].copy()) for s in pull_until_closed(run)]
    producer.join()

    seqs = [seq for seq, _, _, _ in records]
    assert seqs == list(range(ORDERED_SAMPLES)), "input_seq is not strictly increasing from 0"
    assert [fid for _, fid, _, _ in records] == [frame_id(0, i) for i in range(ORDERED_SAMPLES)]
    assert_outputs_match(records, expected)
    stats = run.stats()
    assert stats.outputs_pulled == ORDERED_SAMPLES and stats.errors == 0
    assert 1 <= stats.avg_batch_size <= max_batch

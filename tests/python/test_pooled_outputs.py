"""OutputMemory.Pooled: result buffers come from a pool and go back once nothing refers to them.
A numpy array (or Sample) that is still held keeps its buffer out of the pool, even after the Run
is gone; arrays let go of at once make the Run cycle through a handful of buffers."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import ringflow as rf
from helpers import assert_matches, build_run, pull_until_closed

POOLED = rf.OutputMemory.Pooled
N_MORE = 500


def address(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


@pytest.fixture(scope="module")
def pool_data(tiny_mlp):
    rng = np.random.default_rng(555)
    inputs = rng.standard_normal((N_MORE + 1,) + tiny_mlp.sample_shape, dtype=np.float32)
    return inputs, tiny_mlp.oracle.batched(list(inputs))


def stream_and_drop(run, inputs, expected, spawn, first=0):
    """Pushes inputs[first:] from a thread and pulls every result, checking it against the oracle
    and then letting it go at once. Returns the addresses the results lived at."""
    def produce():
        for i in range(first, len(inputs)):
            run.push(inputs[i], frame_id=i)
        run.close_input()

    producer = spawn(produce, name="producer")
    addresses = []
    for s in pull_until_closed(run):
        out = s[0]
        assert_matches(out, expected[s.frame_id], what=f"pooled result {s.frame_id}")
        addresses.append(address(out))
        del out, s  # the buffer goes back to the pool here
    producer.join()
    assert len(addresses) == len(inputs) - first
    return addresses


@pytest.mark.parametrize("max_batch", [1, 4])
def test_held_result_is_untouched_while_the_pool_recycles(tiny_mlp, pool_data, make_run, spawn,
                                                          max_batch):
    inputs, expected = pool_data
    run = make_run(tiny_mlp.model, inputs[0], queue_depth=4, max_batch=max_batch,
                   max_delay_us=200, output_memory=POOLED)
    run.push(inputs[0], frame_id=0)
    held = run.pull(timeout_ms=10_000)[0]  # the Sample is gone; only the array holds the buffer
    held_values = held.copy()
    assert_matches(held, expected[0])

    addresses = stream_and_drop(run, inputs, expected, spawn, first=1)

    np.testing.assert_array_equal(held, held_values, err_msg="a held pooled buffer was reused")
    assert address(held) not in addresses, "a held buffer was handed out again"
    assert len(set(addresses)) < len(addresses) // 4, "pooled buffers are not being reused"


def test_results_dropped_at_once_reuse_the_same_few_buffers(tiny_mlp, make_run):
    """Two samples in flight at a time, each result let go right after it is read: the pool never
    needs more than two buffers. (Owned memory gives a fresh address almost every time.)"""
    x = tiny_mlp.input_for(0)
    run = make_run(tiny_mlp.model, x, queue_depth=2, output_memory=POOLED)
    addresses = []
    for _ in range(150):
        run.push(x)
        run.push(x)
        for _ in range(2):
            addresses.append(address(run.pull(timeout_ms=10_000)[0]))
    assert len(set(addresses)) <= 2, f"{len(set(addresses))} buffers for two in flight"


def test_consumer_holding_a_full_runs_results_causes_no_steady_state_allocation(tiny_mlp,
                                                                                make_run):
    """A consumer that pulls everything in flight (run.capacity results), then lets all of them
    go, 30 times over: the same run.capacity buffers should serve every round. A freed and
    re-allocated buffer shows up as a new address."""
    x = tiny_mlp.input_for(0)
    run = make_run(tiny_mlp.model, x, queue_depth=2, output_memory=POOLED)
    addresses = []
    for _ in range(30):
        for _ in range(run.capacity):
            run.push(x)
        held = [run.pull(timeout_ms=10_000)[0] for _ in range(run.capacity)]
        addresses += [address(a) for a in held]
        del held  # every buffer goes back to the pool at once
    distinct = len(set(addresses))
    assert distinct <= run.capacity + 2, (
        f"{distinct} distinct buffers over 30 rounds of {run.capacity} results: buffers are "
        "freed and allocated again in steady state")


def test_many_held_results_stay_intact_and_are_never_handed_out_again(tiny_mlp, pool_data,
                                                                      make_run, spawn):
    """Holding every 25th result (so more and more buffers are out of the pool) while the rest are
    dropped at once: the held ones keep their values, and their buffers stay theirs."""
    inputs, expected = pool_data
    run = make_run(tiny_mlp.model, inputs[0], queue_depth=4, output_memory=POOLED)

    def produce():
        for i in range(len(inputs)):
            run.push(inputs[i], frame_id=i)
        run.close_input()

    producer = spawn(produce, name="producer")
    held = {}  # frame id -> (array, values when pulled, address)
    for s in pull_until_closed(run):
        out = s[0]
        addr = address(out)
        for fid, (_, _, held_addr) in held.items():
            assert addr != held_addr, f"result {s.frame_id} reuses the buffer held by {fid}"
        if s.frame_id % 25 == 0:
            held[s.frame_id] = (out, out.copy(), addr)
        del out, s
    producer.join()

    assert len(held) == len(range(0, len(inputs), 25))
    for fid, (array, values, _) in held.items():
        np.testing.assert_array_equal(array, values, err_msg=f"held result {fid} changed")
        assert_matches(array, expected[fid], what=f"held result {fid}")


def test_pooled_results_outlive_the_run(tiny_mlp, pool_data, spawn):
    inputs, expected = pool_data
    run = build_run(tiny_mlp.model, inputs[0], queue_depth=4, output_memory=POOLED)
    for i in range(3):
        run.push(inputs[i], frame_id=i)
    sample0 = run.pull(timeout_ms=10_000)
    array1 = run.pull(timeout_ms=10_000)[0]
    array2 = run.pull(timeout_ms=10_000)[0]
    values = [sample0[0].copy(), array1.copy(), array2.copy()]
    del run
    gc.collect()

    # Another pooled Run with buffers of the same size: had the first Run's buffers been freed,
    # the allocator would likely hand them out here, and writes would show in the held arrays.
    other = build_run(tiny_mlp.model, inputs[0], queue_depth=4, output_memory=POOLED)
    stream_and_drop(other, inputs[:200], expected, spawn, first=3)
    del other

    held = [sample0[0], array1, array2]
    for i, (array, before) in enumerate(zip(held, values)):
        np.testing.assert_array_equal(array, before, err_msg=f"result {i} changed after the Run")
        assert_matches(array, expected[i], what=f"result {i} after the Run")
    assert sample0.frame_id == 0 and sample0.names == ["logits"]

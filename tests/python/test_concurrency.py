"""Many Python threads on one Run or one Model, and the GIL being released while ringflow waits or
computes, so other Python threads keep running."""

from __future__ import annotations

import threading
import time

import pytest

import ringflow as rf
from helpers import ORACLE_ATOL, max_abs_diff

# --------------------------------------------------------------------------------------------
# Two producers, one puller
# --------------------------------------------------------------------------------------------

PER_PRODUCER = 300
PRODUCER_FRAME_BASES = (0, 1_000_000)  # disjoint frame_id ranges, one per producer


def test_two_producers_one_puller_lose_nothing_and_keep_each_producers_order(
        tiny_mlp, make_run, spawn):
    frame_ids = {base: [base + i for i in range(PER_PRODUCER)] for base in PRODUCER_FRAME_BASES}
    # The payload is derived from the frame_id, so a result can be checked against its own input.
    inputs = {fid: tiny_mlp.input_for(fid) for ids in frame_ids.values() for fid in ids}
    # A shallow queue and two workers: producers contend for admission, and results complete out
    # of order inside the engine, which must still hand them out in admission order. The puller
    # runs in this thread while producers block in push(), which also shows push() waits without
    # holding the GIL (otherwise nothing could be pulled and the test would hang, then fail).
    run = make_run(tiny_mlp.model, tiny_mlp.input_for(0), queue_depth=4, workers=2)
    start = threading.Barrier(len(PRODUCER_FRAME_BASES))

    def producer(ids):
        start.wait()
        for fid in ids:
            run.push(inputs[fid], frame_id=fid)

    producers = [spawn(lambda ids=ids: producer(ids), name=f"producer {base}")
                 for base, ids in frame_ids.items()]

    pulled = []
    for _ in range(len(inputs)):
        sample = run.pull(timeout_ms=30_000)
        assert sample is not None, f"timed out after {len(pulled)} results"
        pulled.append((sample.input_seq, sample.frame_id, sample[0].copy()))
    for p in producers:
        p.join()
    run.close_input()
    assert run.pull_with_status(timeout_ms=5_000).status == rf.PullStatus.Closed

    pulled_ids = [fid for _, fid, _ in pulled]
    assert sorted(pulled_ids) == sorted(inputs), "results lost or duplicated"
    assert [seq for seq, _, _ in pulled] == list(range(len(inputs)))
    for base, ids in frame_ids.items():
        in_pull_order = [fid for fid in pulled_ids if base <= fid < base + PER_PRODUCER]
        assert in_pull_order == ids, f"producer {base}'s samples came back out of order"

    expected = tiny_mlp.oracle.batched([inputs[fid] for fid in pulled_ids])
    for (_, fid, out), ref in zip(pulled, expected):
        diff = max_abs_diff(out, ref)
        assert diff <= ORACLE_ATOL, f"frame {fid}: result is not its own input's ({diff:.3g})"


# --------------------------------------------------------------------------------------------
# One Model shared by many threads
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model_name, calls_per_thread", [("tiny-mlp", 200), ("resnet50", 2)])
def test_model_run_from_four_threads_matches_single_threaded(model_cases, spawn, model_name,
                                                            calls_per_thread):
    case = model_cases[model_name]
    n_threads = 4
    inputs = [[case.input_for(100 * t + i) for i in range(calls_per_thread)]
              for t in range(n_threads)]
    single = [[case.model.run(x)[0].copy() for x in xs] for xs in inputs]
    start = threading.Barrier(n_threads)

    def worker(xs):
        start.wait()
        return [case.model.run(x)[0].copy() for x in xs]

    threads = [spawn(lambda xs=xs: worker(xs), name=f"Model.run thread {t}")
               for t, xs in enumerate(inputs)]
    concurrent = [t.join() for t in threads]

    for t in range(n_threads):
        for i in range(calls_per_thread):
            diff = max_abs_diff(concurrent[t][i], single[t][i])
            assert diff <= ORACLE_ATOL, f"thread {t} call {i}: differs by {diff:.3g}"
    assert max_abs_diff(single[0][0], single[1][0]) > 1000 * ORACLE_ATOL  # inputs distinguishable


# --------------------------------------------------------------------------------------------
# GIL release
# --------------------------------------------------------------------------------------------
#
# A pure-Python counter thread keeps looping while the test thread sits in a ringflow call. A call
# that holds the GIL starves it from entry to return, so it can only run at the call's edges; a call
# that releases the GIL leaves it running throughout. ProgressCounter.ran_inside() looks only at the
# middle of the call's time window, so the edges (switch intervals, scheduling delays) never count.
# Each test repeats its call for a while and asks that the counter ran inside most calls; the
# control test shows a GIL-holding call gets (almost) none. No speed is measured or asserted.
MEASURE_SECONDS = 0.5
MIN_CALLS_WITH_PROGRESS = 0.5  # GIL released: ~100% of calls; GIL held: ~0%


def fraction_of_calls_with_progress(counter, step):
    """Calls step() repeatedly for MEASURE_SECONDS (at least 3 times). Returns the fraction of
    calls during which the counter thread ran, and step()'s results."""
    ran, results = [], []
    deadline = time.perf_counter() + MEASURE_SECONDS
    while len(ran) < 3 or time.perf_counter() < deadline:
        progressed, result = counter.ran_inside(step)
        ran.append(progressed)
        results.append(result)
    return sum(ran) / len(ran), results


def assert_kept_running(counter, step, what):
    fraction, results = fraction_of_calls_with_progress(counter, step)
    assert fraction >= MIN_CALLS_WITH_PROGRESS, (
        f"a Python thread ran during only {fraction:.0%} of the calls to {what}: "
        "the call holds the GIL")
    return results


@pytest.fixture(scope="module")
def resnet50_one_intra_thread(resnet50_path):
    # One ORT compute thread leaves the second core to the counter, so a GIL-releasing call
    # shows clearly; the GIL question itself does not depend on the thread count.
    session = rf.SessionOptions(intra_op_threads=1)
    return rf.Model(str(resnet50_path), rf.Model.Options(session=session))


def test_counter_is_starved_by_a_call_that_holds_the_gil(progress_counter):
    """Control: the measurement discriminates. builtin sum() over a range loops in C without ever
    offering the GIL, exactly like a binding that forgot to release it; each call lasts ~0.1 s,
    like one resnet50 inference."""
    fraction, _ = fraction_of_calls_with_progress(progress_counter,
                                                  lambda: sum(range(5_000_000)))
    assert fraction < MIN_CALLS_WITH_PROGRESS, f"the counter ran inside {fraction:.0%} of calls"


def test_pull_waits_without_the_gil_so_a_python_thread_can_feed_it(tiny_mlp, make_run, spawn):
    """Deterministic variant: the sample pull() waits for is pushed by a Python thread, which
    needs the GIL to do so. Were pull() holding it, the push could only happen after pull() gave
    up at its timeout, and pull() would return None."""
    x = tiny_mlp.input_for(0)
    run = make_run(tiny_mlp.model, x)
    pusher = spawn(lambda: (time.sleep(0.2), run.push(x, frame_id=9)), name="late pusher")
    sample = run.pull(timeout_ms=20_000)
    pusher.join()
    assert sample is not None and sample.frame_id == 9


def test_blocking_pull_releases_the_gil(progress_counter, resnet50_one_intra_thread, resnet50,
                                        make_run):
    x = resnet50.input_for(0)
    run = make_run(resnet50_one_intra_thread, x)

    def push_then_wait_in_pull():
        run.push(x)  # a quick copy; the ~0.1 s inference is then waited out inside pull()
        return run.pull(timeout_ms=30_000)

    samples = assert_kept_running(progress_counter, push_then_wait_in_pull,
                                  "blocking pull on resnet50")
    assert all(s is not None and s[0].shape == (1, 1000) for s in samples)


def test_model_construction_releases_the_gil(progress_counter, resnet50_path):
    session = rf.SessionOptions(intra_op_threads=1)
    models = assert_kept_running(
        progress_counter,
        lambda: rf.Model(str(resnet50_path), rf.Model.Options(session=session)),
        "resnet50 Model construction")
    assert models[0].input_specs()[0].name == "input"


def test_model_run_releases_the_gil(progress_counter, resnet50_one_intra_thread, resnet50):
    x = resnet50.input_for(0)
    outputs = assert_kept_running(progress_counter, lambda: resnet50_one_intra_thread.run(x),
                                  "Model.run on resnet50")
    assert outputs[0][0].shape == (1, 1000)


def test_graph_build_releases_the_gil(progress_counter, resnet50_one_intra_thread, resnet50):
    # build() runs the seed through the model once (~0.1 s on resnet50) to resolve output shapes.
    x = resnet50.input_for(0)
    graph = rf.Graph()
    graph.add(resnet50_one_intra_thread.graph(
        rf.Model.RouteOptions(include_input=True, include_output=True)))
    runs = assert_kept_running(progress_counter, lambda: graph.build(x), "Graph.build on resnet50")
    assert runs[0].output_specs()[0].shape == (None, 1000)  # the model's shape: the seed only warms up

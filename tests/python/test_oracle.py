"""Oracle parity: results pulled from an asynchronous Run equal onnxruntime's, in push order."""

from __future__ import annotations

import numpy as np
import pytest

import ringflow as rf
from helpers import ORACLE_ATOL, assert_matches, max_abs_diff

N_SAMPLES = 200


def frame_id_for(i: int) -> int:
    # Deliberately unlike input_seq (0, 1, 2, ...), so echoing the wrong field is caught.
    return 5000 + 7 * i


@pytest.mark.parametrize(
    "model_name, workers, queue_depth",
    [
        ("tiny-mlp", 1, 8),
        ("tiny-mlp", 2, 8),
        ("tiny-mlp", 2, 1),  # one sample in flight: the smallest rings and result table
        ("tiny-mlp", 2, 3),  # not a power of two, unlike the rings' rounded-up capacity
        ("resnet50", 1, 8),
    ],
)
def test_async_results_match_onnxruntime_in_push_order(model_cases, make_run, spawn,
                                                      model_name, workers, queue_depth):
    case = model_cases[model_name]
    inputs = [case.input_for(i) for i in range(N_SAMPLES)]
    # queue_depth well below N_SAMPLES, so the producer really waits on backpressure.
    run = make_run(case.model, inputs[0], queue_depth=queue_depth, workers=workers)

    def produce():
        for i, x in enumerate(inputs):
            run.push(x, frame_id=frame_id_for(i))
        run.close_input()

    producer = spawn(produce, name="producer")

    pulled = []
    while True:
        result = run.pull_with_status(timeout_ms=30_000)
        assert result.status != rf.PullStatus.Timeout, f"no result after {len(pulled)} samples"
        if result.status == rf.PullStatus.Closed:
            break
        assert result.status == rf.PullStatus.Ok, result
        sample = result.sample
        # A copy, so this check does not lean on the zero-copy lifetime guarantee (which
        # test_tensor.py checks on its own).
        pulled.append((sample.input_seq, sample.frame_id, sample["logits"].copy()))
    producer.join()

    assert [seq for seq, _, _ in pulled] == list(range(N_SAMPLES))
    assert [fid for _, fid, _ in pulled] == [frame_id_for(i) for i in range(N_SAMPLES)]

    expected = case.oracle.batched(inputs)
    diffs = [max_abs_diff(out, ref) for (_, _, out), ref in zip(pulled, expected)]
    worst = int(np.argmax(diffs))
    assert diffs[worst] <= ORACLE_ATOL, f"sample {worst}: max abs diff {diffs[worst]:.3g}"

    # The check only proves ordering if different inputs give clearly different outputs.
    assert max_abs_diff(expected[0], expected[1]) > 1000 * ORACLE_ATOL


@pytest.mark.parametrize("model_name, n", [("tiny-mlp", 50), ("resnet50", 4)])
def test_batched_oracle_equals_per_sample_oracle(model_cases, model_name, n):
    """The parity test batches its oracle calls for speed; that is only valid if batching does
    not change onnxruntime's results (e.g. a different GEMM kernel for M=1 vs M=25)."""
    case = model_cases[model_name]
    inputs = [case.input_for(10_000 + i) for i in range(n)]
    batched = case.oracle.batched(inputs, chunk=n)
    for i, x in enumerate(inputs):
        assert_matches(batched[i], case.oracle(x), what=f"sample {i}")


def test_metadata_is_echoed_with_each_result(tiny_mlp, make_run):
    x = tiny_mlp.input_for(0)
    run = make_run(tiny_mlp.model, x)
    run.push(x, frame_id=77, stream_id="camera-3", pts_ns=1_234_567_890_123)
    run.push(x)  # no metadata given: the defaults come back, not the previous sample's
    first, second = run.pull(timeout_ms=10_000), run.pull(timeout_ms=10_000)

    assert (first.frame_id, first.stream_id, first.pts_ns) == (77, "camera-3", 1_234_567_890_123)
    assert (second.frame_id, second.stream_id, second.pts_ns) == (-1, "", -1)
    assert first.names == ["logits"] and len(first) == 1
    assert_matches(first[0], tiny_mlp.oracle(x))
    assert_matches(first["logits"], first[0])


@pytest.mark.parametrize("model_name", ["tiny-mlp", "resnet50"])
def test_model_run_and_run_run_match_onnxruntime(model_cases, make_run, model_name):
    """The synchronous entry points share the engine's code paths with push/pull."""
    case = model_cases[model_name]
    x = case.input_for(1)
    expected = case.oracle(x)
    assert_matches(case.model.run(x)[0], expected, what="Model.run")
    run = make_run(case.model, x)
    assert_matches(run.run(x)[0], expected, what="Run.run")

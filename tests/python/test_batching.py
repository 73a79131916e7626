"""Dynamic batching: samples stacked into one inference come back separately, in push order, each
equal to its own unbatched result; models without a dynamic batch dimension are refused."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import ringflow as rf
from helpers import ORACLE_ATOL, assert_matches, build_run, max_abs_diff, pull_until_closed

N_SAMPLES = 1_000


@pytest.fixture(scope="module")
def batch_data(tiny_mlp):
    rng = np.random.default_rng(8080)
    inputs = rng.standard_normal((N_SAMPLES,) + tiny_mlp.sample_shape, dtype=np.float32)
    return inputs, tiny_mlp.oracle.batched(list(inputs))


def push_all_then_close(run, inputs):
    for i, x in enumerate(inputs):
        assert run.push(x, frame_id=10 * i) is True
    run.close_input()


def check_batched_stream(run, inputs, expected, max_batch):
    pulled = [(s.input_seq, s.frame_id, s["logits"].copy()) for s in pull_until_closed(run)]
    seqs = [seq for seq, _, _ in pulled]
    assert seqs == list(range(len(inputs))), "results lost, duplicated or reordered"
    assert [fid for _, fid, _ in pulled] == [10 * i for i in range(len(inputs))]
    for (seq, _, out), ref in zip(pulled, expected):
        assert out.shape == (1, 10), f"sample {seq} came back with shape {out.shape}"
        assert_matches(out, ref, atol=ORACLE_ATOL, what=f"sample {seq}")

    stats = run.stats()
    assert stats.outputs_pulled == len(inputs) and stats.errors == 0
    assert 1.0 <= stats.avg_batch_size <= max_batch
    assert stats.batches >= math.ceil(len(inputs) / max_batch)
    # Every sample went through exactly one inference call.
    assert stats.batches * stats.avg_batch_size == pytest.approx(len(inputs), rel=1e-9)
    assert [s.samples for s in stats.stages if s.name == "inference"] == [len(inputs)]
    return stats


@pytest.mark.parametrize("max_delay_us", [0, 500])
@pytest.mark.parametrize("max_batch", [8, 32])
def test_batched_results_equal_the_oracle_in_push_order(tiny_mlp, batch_data, make_run, spawn,
                                                        max_batch, max_delay_us):
    inputs, expected = batch_data
    run = make_run(tiny_mlp.model, inputs[0], queue_depth=64, max_batch=max_batch,
                   max_delay_us=max_delay_us)
    producer = spawn(lambda: push_all_then_close(run, inputs), name="producer")
    check_batched_stream(run, inputs, expected, max_batch)
    producer.join()


@pytest.mark.parametrize("max_batch", [8, 32])
def test_fast_producer_into_a_deep_queue_gets_real_batches(tiny_mlp, batch_data, make_run,
                                                           max_batch):
    """All samples are pushed before any is pulled, into a queue deep enough for all of them, and
    the dispatcher waits up to 500 us for each batch to fill: batches of more than one form."""
    inputs, expected = batch_data
    run = make_run(tiny_mlp.model, inputs[0], queue_depth=N_SAMPLES, max_batch=max_batch,
                   max_delay_us=500)
    push_all_then_close(run, inputs)
    stats = check_batched_stream(run, inputs, expected, max_batch)
    assert stats.avg_batch_size > 1, f"{stats.batches} batches for {N_SAMPLES} samples"


def test_pooled_batched_results_with_two_unordered_workers(tiny_mlp, batch_data, make_run, spawn):
    """Batching, two workers, completion order and pooled outputs together: each result is still
    its own sample's, exactly once."""
    inputs, expected = batch_data
    run = make_run(tiny_mlp.model, inputs[0], queue_depth=16, workers=2, ordered=False,
                   max_batch=8, max_delay_us=200, output_memory=rf.OutputMemory.Pooled)
    producer = spawn(lambda: push_all_then_close(run, inputs), name="producer")
    seen = []
    for s in pull_until_closed(run):
        i = s.frame_id // 10
        assert s.input_seq == i  # one producer: input_seq is push order, whatever the pull order
        assert_matches(s[0], expected[i], what=f"sample {i}")
        seen.append(i)
    producer.join()
    assert sorted(seen) == list(range(N_SAMPLES))


def test_samples_with_a_batch_of_two_rows_are_stacked_and_split_back(tiny_mlp, make_run):
    """The batch dimension of one sample need not be 1: samples of 2 rows stack into 8-row
    inferences and each comes back with its own 2 rows."""
    rng = np.random.default_rng(2)
    inputs = [rng.standard_normal((2, 64), dtype=np.float32) for _ in range(100)]
    run = make_run(tiny_mlp.model, inputs[0], queue_depth=len(inputs), max_batch=4,
                   max_delay_us=500)
    push_all_then_close(run, inputs)
    pulled = [(s.frame_id // 10, s[0].copy()) for s in pull_until_closed(run)]
    assert [i for i, _ in pulled] == list(range(len(inputs)))
    for i, out in pulled:
        assert_matches(out, tiny_mlp.oracle(inputs[i]), what=f"sample {i}")
    assert run.stats().avg_batch_size > 1


def test_close_input_flushes_a_partial_batch_at_once(tiny_mlp, make_run):
    """Once the input is closed no sample can join the batch, so waiting for one only delays the
    end of the stream. With a 10 s max_delay_us, the result must not take seconds."""
    x = tiny_mlp.input_for(0)
    run = make_run(tiny_mlp.model, x, max_batch=4, max_delay_us=10_000_000)
    run.push(x, frame_id=1)
    run.close_input()
    result = run.pull_with_status(timeout_ms=3_000)
    assert result.status == rf.PullStatus.Ok, (
        f"{result.status} 3 s after close_input(): the partial batch is still waiting")
    assert result.sample.frame_id == 1
    assert run.pull_with_status(timeout_ms=3_000).status == rf.PullStatus.Closed


# --------------------------------------------------------------------------------------------
# resnet50 with frame preprocessing
# --------------------------------------------------------------------------------------------

# See test_preprocess.py: preprocessing reorders float arithmetic, and batching may pick other
# kernels; 1e-4 on logits of magnitude ~5 leaves a wide margin.
PREPROCESS_ATOL = 1e-4


def test_preprocessed_resnet50_batches_equal_unbatched_model_run(resnet50_path, make_run):
    model = rf.Model(str(resnet50_path),
                     rf.Model.Options(preprocess=rf.PreprocessOptions.imagenet()))
    rng = np.random.default_rng(99)
    frames = [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(5)]
    # A long delay, so the first four frames (pushed within milliseconds) form one batch.
    run = make_run(model, frames[0], queue_depth=8, max_batch=4, max_delay_us=300_000)
    for i, frame in enumerate(frames):
        run.push(frame, frame_id=i)
    run.close_input()
    pulled = [(s.frame_id, s["logits"].copy()) for s in pull_until_closed(run, timeout_ms=60_000)]
    stats = run.stats()

    assert [fid for fid, _ in pulled] == list(range(len(frames)))
    assert stats.batches < len(frames), "no two frames were ever batched together"
    for (fid, out), frame in zip(pulled, frames):
        assert_matches(out, model.run(frame)[0], atol=PREPROCESS_ATOL, what=f"frame {fid}")
    assert max_abs_diff(pulled[0][1], pulled[1][1]) > 100 * PREPROCESS_ATOL


# --------------------------------------------------------------------------------------------
# Models that cannot be batched
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fixed_batch_model(tmp_path_factory):
    """y = relu(x) with x: float32 [1, 4], batch dimension fixed at 1."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "fixed_batch_relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8  # readable by the oldest supported onnxruntime
    onnx.checker.check_model(proto)
    path = tmp_path_factory.mktemp("models") / "fixed_batch_relu.onnx"
    onnx.save(proto, str(path))
    return rf.Model(str(path))


FIXED_X = np.array([[-1.0, 2.0, -3.0, 4.0]], np.float32)


def test_max_batch_on_a_fixed_batch_model_raises_shape_error(fixed_batch_model):
    with pytest.raises(rf.ShapeError, match=r"max_batch.*'x'.*\[1, 4\]"):
        build_run(fixed_batch_model, FIXED_X, max_batch=2)


def test_fixed_batch_model_runs_without_batching(fixed_batch_model):
    """Control for the test above: the model itself is fine, only batching it is not."""
    run = build_run(fixed_batch_model, FIXED_X, max_batch=1)
    np.testing.assert_array_equal(run.run(FIXED_X)[0], np.maximum(FIXED_X, 0))

"""One failure stays one failure: when onnxruntime fails on a dynamic batch, the engine retries the
batch one sample at a time, so only the samples that fail alone get an Error result (with their
own metadata and their own error), and every other sample of the batch comes back Ok, equal to
onnxruntime's output for it.

The model is dynamic_models.gather: rows = table[indices] for int64 indices [batch, 3] into a
constant 10 x 4 table. onnxruntime refuses any index outside [-10, 9], failing the whole run; an
index of 50 in one sample therefore fails the stacked batch that contains it."""

from __future__ import annotations

import numpy as np
import pytest

import ringflow as rf
from dynamic_models import GATHER_PICKS, GATHER_ROWS, assert_outputs_match
from helpers import call_with_deadline

MAX_BATCH = 8
# Long enough that the 8 samples pushed back to back always meet in one batch; the batch is
# dispatched as soon as it is full, so the tests do not actually wait this long.
MAX_DELAY_US = 200_000
# Out of range, and each different, so an error reported for the wrong sample shows.
BAD_INDICES = [50, -11, 10, 99]


@pytest.fixture(scope="module")
def gather(dynamic_models):
    return dynamic_models["gather"]


def frame_id_for(i: int) -> int:
    return 900 + 3 * i


def stream_id_for(i: int) -> str:
    return f"camera-{i % 3}"


def pts_for(i: int) -> int:
    return 1_000_000_000 + 40_000_000 * i


def valid_indices(rng: np.random.Generator, rows: int = 1) -> np.ndarray:
    # Negative indices in [-10, -1] are valid too (counted from the end).
    return rng.integers(-GATHER_ROWS, GATHER_ROWS, (rows, GATHER_PICKS), dtype=np.int64)


def batch_inputs(seed: int, bad_positions=(), rows: int = 1) -> list[np.ndarray]:
    """MAX_BATCH samples of `rows` rows; at each bad position one element of the last row is
    replaced by the next of BAD_INDICES."""
    rng = np.random.default_rng(seed)
    inputs = [valid_indices(rng, rows) for _ in range(MAX_BATCH)]
    for bad_index, position in zip(BAD_INDICES, bad_positions):
        inputs[position][-1, 1] = bad_index
    return inputs


def ort_reason(gather, x: np.ndarray) -> str:
    """What onnxruntime says about the one sample x, without the "[ONNXRuntimeError] : 2 :
    INVALID_ARGUMENT :" prefix that only its Python API adds."""
    message = gather.oracle.failure(x)
    assert "Status Message:" in message, f"onnxruntime's message format changed: {message}"
    return message.split("Status Message:", 1)[1].strip()


def push_all(run, inputs, first_seq: int = 0) -> None:
    for i, x in enumerate(inputs, start=first_seq):
        assert run.push(x, frame_id=frame_id_for(i), stream_id=stream_id_for(i),
                        pts_ns=pts_for(i)) is True


def pull_and_check(run, gather, inputs, bad_positions, first_seq: int = 0) -> None:
    """Pulls len(inputs) results: Error with that sample's metadata and onnxruntime's reason for
    the bad positions, Ok and equal to the oracle for the others, all in push order."""
    for position, x in enumerate(inputs):
        seq = first_seq + position
        result = run.pull_with_status(timeout_ms=30_000)
        what = f"sample {seq}"
        sample = result.sample
        assert sample is not None, f"{what}: {result.status}, no sample"
        # The metadata identifies the sample whether it failed or not.
        assert (sample.input_seq, sample.frame_id, sample.stream_id, sample.pts_ns) == (
            seq, frame_id_for(seq), stream_id_for(seq), pts_for(seq)), what
        if position in bad_positions:
            assert result.status == rf.PullStatus.Error, f"{what}: {result.status}, not Error"
            assert result.error, f"{what}: Error with an empty message"
            # Its own failure, as onnxruntime reports it for this sample alone (the batch's
            # error would name the first bad index of the whole batch).
            reason = ort_reason(gather, x)
            assert reason in result.error, f"{what}: {result.error!r} lacks {reason!r}"
            assert len(sample) == 0, f"{what}: a failed sample carries no outputs"
        else:
            assert result.status == rf.PullStatus.Ok, \
                f"{what}: {result.status} {result.error!r}, though it runs alone in onnxruntime"
            assert_outputs_match(sample, gather.oracle(x), 0, what)


@pytest.mark.parametrize("workers", [1, 2])
def test_eight_quick_pushes_form_one_batch(gather, make_run, workers):
    """Control for the tests below: under the same options and pushing pattern, the 8 samples are
    stacked into one inference. Without it, a batch failure could never happen and the failure
    tests would pass trivially."""
    inputs = batch_inputs(1)
    run = make_run(gather.model, inputs[0], queue_depth=2 * MAX_BATCH, workers=workers,
                   max_batch=MAX_BATCH, max_delay_us=MAX_DELAY_US)
    push_all(run, inputs)
    pull_and_check(run, gather, inputs, ())
    stats = run.stats()
    assert (stats.batches, stats.avg_batch_size, stats.errors) == (1, MAX_BATCH, 0)


@pytest.mark.parametrize("bad_positions", [(3,), (3, 6), (0, 7), (0, 1, 2, 3)],
                         ids=["sample 3", "samples 3 and 6", "first and last", "first half"])
@pytest.mark.parametrize("workers", [1, 2])
def test_only_the_failing_samples_of_a_batch_fail(gather, make_run, workers, bad_positions):
    inputs = batch_inputs(2, bad_positions)
    # Precondition: onnxruntime fails on the stacked batch, and on each bad sample alone.
    gather.oracle.failure(np.concatenate(inputs))
    run = make_run(gather.model, batch_inputs(0)[0], queue_depth=2 * MAX_BATCH, workers=workers,
                   max_batch=MAX_BATCH, max_delay_us=MAX_DELAY_US)
    push_all(run, inputs)  # all 8 before any pull: one batch (see the control test)
    pull_and_check(run, gather, inputs, bad_positions)
    assert run.stats().errors == len(bad_positions)

    # The Run goes on: the next batch, all valid, comes back Ok.
    more = batch_inputs(3)
    push_all(run, more, first_seq=MAX_BATCH)
    run.close_input()
    pull_and_check(run, gather, more, (), first_seq=MAX_BATCH)
    assert run.pull_with_status(timeout_ms=10_000).status == rf.PullStatus.Closed
    assert run.stats().errors == len(bad_positions)


def test_a_failing_sample_of_several_rows_fails_as_a_whole(gather, make_run):
    """A sample is the unit of failure, not a row: one bad row fails its whole sample (whose
    other row is valid), and only that sample."""
    inputs = batch_inputs(4, (5,), rows=2)
    run = make_run(gather.model, inputs[0], queue_depth=2 * MAX_BATCH, max_batch=MAX_BATCH,
                   max_delay_us=MAX_DELAY_US)
    push_all(run, inputs)
    pull_and_check(run, gather, inputs, (5,))
    assert run.stats().errors == 1


def test_pull_raises_inference_error_only_for_the_failing_sample(gather, make_run):
    bad_positions = (2, 5)
    inputs = batch_inputs(5, bad_positions)
    run = make_run(gather.model, inputs[0], queue_depth=2 * MAX_BATCH, max_batch=MAX_BATCH,
                   max_delay_us=MAX_DELAY_US)
    push_all(run, inputs)
    run.close_input()
    for i, x in enumerate(inputs):
        if i in bad_positions:
            with pytest.raises(rf.InferenceError) as raised:
                run.pull(timeout_ms=30_000)
            message = str(raised.value)
            assert f"frame_id={frame_id_for(i)}" in message, message
            assert ort_reason(gather, x) in message, message
        else:
            sample = run.pull(timeout_ms=30_000)
            assert sample is not None and sample.frame_id == frame_id_for(i)
            assert_outputs_match(sample, gather.oracle(x), 0, f"sample {i}")
    # End of stream, promptly: a failed batch leaves nothing pending.
    assert call_with_deadline(lambda: run.pull(timeout_ms=10_000), timeout_s=30) is None
    assert run.stats().errors == len(bad_positions)

"""run.push_many() and run.pull_many() (issue 10): many samples per call with one release of the
GIL, in every input form, against onnxruntime.InferenceSession.run; a bad sample pushes none, and a
failed sample loses none of the results pulled with it."""

import threading

import numpy as np
import pytest

import ringflow as rf
from helpers import mlp_rows


def build(mlp_path: str, **options) -> rf.Run:
    return rf.Graph().add(rf.Model(mlp_path).graph()).build(np.zeros((1, 64), np.float32),
                                                            rf.RunOptions(**options))


def pull_all(run: rf.Run, max_count: int = 64) -> list[rf.Sample]:
    results = []
    while batch := run.pull_many(max_count, timeout_ms=30_000):
        assert len(batch) <= max_count
        results += batch
    return results


@pytest.mark.parametrize("form", ["list", "stacked", "stacked-3d", "dict", "non-contiguous"])
def test_push_many_in_every_form_equals_the_oracle(mlp_path, mlp_oracle, form):
    rows = np.stack([x[0] for x in mlp_rows(300, seed=21)])  # (300, 64)
    inputs = {
        "list": [r[None] for r in rows],
        "stacked": rows,                        # rank of the input: each sample is rows[i:i+1]
        "stacked-3d": rows[:, None, :],         # one more axis: each sample is rows[i]
        "dict": {"input": rows},
        "non-contiguous": np.asfortranarray(rows),
    }[form]
    run = build(mlp_path, queue_depth=8, max_batch=8, max_delay_us=200)
    pushed = []
    producer = threading.Thread(target=lambda: (pushed.append(run.push_many(inputs, frame_ids=range(300))),
                                                run.close_input()))
    producer.start()
    results = pull_all(run)
    producer.join()
    assert pushed == [300]
    assert [s.frame_id for s in results] == list(range(300))
    expected = mlp_oracle.run(None, {"input": rows})[0]
    for i, s in enumerate(results):
        np.testing.assert_allclose(s[0], expected[i:i + 1], rtol=1e-5, atol=1e-5)


def test_push_many_copies_so_the_caller_may_reuse_its_array(mlp_path, mlp_oracle):
    rows = np.stack([x[0] for x in mlp_rows(10, seed=22)])
    expected = mlp_oracle.run(None, {"input": rows})[0]
    run = build(mlp_path, queue_depth=16)
    assert run.push_many(rows) == 10
    rows[:] = 0  # overwritten before the engine has necessarily read it
    run.close_input()
    for i, s in enumerate(pull_all(run)):
        np.testing.assert_allclose(s[0], expected[i:i + 1], rtol=1e-5, atol=1e-5)


def test_a_bad_sample_pushes_none_of_them(mlp_path):
    run = build(mlp_path, queue_depth=16)
    good = mlp_rows(5)
    with pytest.raises(rf.ShapeError):
        run.push_many(good[:3] + [np.zeros((1, 63), np.float32)] + good[3:])
    with pytest.raises(rf.DTypeError):
        run.push_many(np.zeros((4, 64), np.float64))
    with pytest.raises(rf.ShapeError, match="different numbers of samples"):
        run.push_many({"input": np.zeros((4, 64), np.float32), "other": np.zeros((3, 64), np.float32)})
    with pytest.raises(ValueError, match="fewer frame_ids"):
        run.push_many(good, frame_ids=[1, 2])
    assert run.input_stats().pushes == 0
    assert run.push_many(good) == 5


def test_push_many_after_close_says_how_many_went_in(mlp_path):
    run = build(mlp_path, queue_depth=1)
    closer = threading.Timer(0.2, run.close_input)
    closer.start()
    with pytest.raises(rf.ClosedError, match=r"push_many: \d+ of 50 samples were pushed before it"):
        run.push_many(mlp_rows(50))  # more than capacity, nobody pulls: it waits until closed
    closer.join()
    accepted = run.input_stats().inputs_enqueued
    assert 0 < accepted < 50
    assert len(pull_all(run)) == accepted, "every sample accepted before the error is delivered"


def test_pull_many_raises_for_a_failed_sample_with_the_ones_before_it(mlp_path):
    def picky(sample: rf.Sample):
        if sample.frame_id == 3:
            raise ValueError("not this one")

    run = rf.Graph().add(rf.Model(mlp_path).graph()).add(rf.Stage(picky, name="picky")).build(
        np.zeros((1, 64), np.float32), rf.RunOptions(queue_depth=16))
    run.push_many(mlp_rows(6), frame_ids=range(6))
    run.close_input()
    frames = []
    while True:
        try:
            batch = run.pull_many(100, timeout_ms=30_000)
        except rf.InferenceError as error:
            assert "not this one" in str(error)
            frames += [s.frame_id for s in error.results]
            frames.append("failed")
            continue
        if not batch:
            break
        frames += [s.frame_id for s in batch]
    assert frames == [0, 1, 2, "failed", 4, 5]


def test_pull_many_times_out_with_an_empty_list(mlp_path):
    run = build(mlp_path, queue_depth=4)
    assert run.pull_many(10, timeout_ms=20) == []
    assert run.pull_many(0) == []
    run.push(mlp_rows(1)[0])
    assert len(run.pull_many(10, timeout_ms=30_000)) == 1

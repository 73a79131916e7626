"""Buffers between numpy and ringflow: results are zero-copy views that keep their buffer alive,
inputs are copied at push time, and rf.Tensor round-trips every supported dtype."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import ringflow as rf
from helpers import assert_matches

# --------------------------------------------------------------------------------------------
# Results: zero-copy views that own a reference to their buffer
# --------------------------------------------------------------------------------------------

def churn_allocator(model_case, run, rounds: int = 20) -> None:
    """Push and pull more samples: a freed result buffer would likely be reused and overwritten."""
    for i in range(rounds):
        run.push(model_case.input_for(1000 + i))
        run.pull(timeout_ms=10_000)


def test_result_array_is_a_view_of_the_sample_buffer(tiny_mlp, make_run):
    run = make_run(tiny_mlp.model, tiny_mlp.input_for(0))
    run.push(tiny_mlp.input_for(0))
    sample = run.pull(timeout_ms=10_000)
    by_index, by_name = sample[0], sample["logits"]
    assert not by_index.flags.owndata
    assert np.shares_memory(by_index, by_name), "each access copied the result"
    tensor_view = np.asarray(sample.tensors[0])
    assert np.shares_memory(by_index, tensor_view)
    np.testing.assert_array_equal(tensor_view, by_index)


def test_result_array_outlives_its_sample_and_run(tiny_mlp, make_run):
    x = tiny_mlp.input_for(0)
    run = make_run(tiny_mlp.model, x)
    run.push(x)
    sample = run.pull(timeout_ms=10_000)
    logits = sample[0]
    expected = logits.copy()
    del sample
    gc.collect()
    churn_allocator(tiny_mlp, run)
    np.testing.assert_array_equal(logits, expected)
    assert_matches(logits, tiny_mlp.oracle(x))


def test_model_run_result_outlives_its_sample(tiny_mlp):
    """Model.run's outputs are allocated by ONNX Runtime, not by the Run: same guarantee."""
    x = tiny_mlp.input_for(0)
    logits = tiny_mlp.model.run(x)[0]  # the Sample is a temporary, gone after this line
    expected = logits.copy()
    gc.collect()
    for i in range(20):
        tiny_mlp.model.run(tiny_mlp.input_for(1000 + i))
    np.testing.assert_array_equal(logits, expected)
    assert_matches(logits, tiny_mlp.oracle(x))


def test_pull_with_status_result_outlives_the_pull_result(tiny_mlp, make_run):
    x = tiny_mlp.input_for(0)
    run = make_run(tiny_mlp.model, x)
    run.push(x)
    result = run.pull_with_status(timeout_ms=10_000)
    logits = result.sample["logits"]
    expected = logits.copy()
    del result
    gc.collect()
    churn_allocator(tiny_mlp, run)
    np.testing.assert_array_equal(logits, expected)


# --------------------------------------------------------------------------------------------
# Inputs: push() copies, so the caller may reuse its array at once
# --------------------------------------------------------------------------------------------

def test_reusing_the_input_array_right_after_push_does_not_change_results(tiny_mlp, make_run):
    # The typical capture loop: one buffer, refilled for every frame. Were push() to keep a
    # reference instead of a copy, queued samples would be computed on later frames' data.
    n = 64
    run = make_run(tiny_mlp.model, tiny_mlp.input_for(0), queue_depth=n)
    buffer = np.empty(tiny_mlp.sample_shape, np.float32)
    for i in range(n):
        buffer[...] = tiny_mlp.input_for(i)
        run.push(buffer, frame_id=i)
    buffer[...] = np.nan  # and a last scribble, after every push
    expected = tiny_mlp.oracle.batched([tiny_mlp.input_for(i) for i in range(n)])
    for i in range(n):
        sample = run.pull(timeout_ms=10_000)
        assert sample.frame_id == i
        assert_matches(sample[0], expected[i], what=f"frame {i}")


def test_reusing_the_input_array_right_after_push_on_a_slow_model(resnet50, make_run):
    # With resnet50 the later samples are certainly still queued when the buffer is refilled.
    n = 3
    run = make_run(resnet50.model, resnet50.input_for(0), queue_depth=n)
    buffer = np.empty(resnet50.sample_shape, np.float32)
    for i in range(n):
        buffer[...] = resnet50.input_for(i)
        run.push(buffer)
    buffer[...] = 0.0
    for i in range(n):
        assert_matches(run.pull(timeout_ms=60_000)[0], resnet50.oracle(resnet50.input_for(i)),
                       what=f"sample {i}")


def test_tensor_from_array_is_a_copy(tiny_mlp):
    x = tiny_mlp.input_for(0)
    tensor = rf.Tensor(x)
    original = x.copy()
    x[...] = -1.0
    np.testing.assert_array_equal(np.asarray(tensor), original)
    assert not np.shares_memory(np.asarray(tensor), x)


# --------------------------------------------------------------------------------------------
# rf.Tensor round trip for every supported dtype
# --------------------------------------------------------------------------------------------

def values_of(dtype: np.dtype, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    """Random values spanning the dtype's range, including its extremes, so a narrowing or
    mis-sized copy shows up."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(np.bool_)
    if dtype.kind == "f":
        info = np.finfo(dtype)
        values = rng.standard_normal(shape).astype(dtype) * dtype.type(1000)
        flat = values.reshape(-1)
        flat[:3] = [info.max, info.min, info.tiny]
        return values
    info = np.iinfo(dtype)
    values = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    flat = values.reshape(-1)
    flat[:2] = [info.min, info.max]
    return values


SUPPORTED_DTYPES = ["float32", "float16", "float64", "int8", "uint8", "int16", "int32", "int64",
                    "bool"]


@pytest.mark.parametrize("dtype", SUPPORTED_DTYPES)
@pytest.mark.parametrize("shape", [(2, 3, 5), (7,), (1, 1, 4, 1)], ids=str)
def test_tensor_round_trip_preserves_dtype_shape_and_values(dtype, shape):
    array = values_of(dtype, shape, np.random.default_rng(0))
    tensor = rf.Tensor(array)

    assert tensor.dtype == array.dtype
    assert tensor.shape == array.shape
    assert tensor.size_bytes == array.nbytes
    for name, back in [("np.asarray", np.asarray(tensor)), ("Tensor.numpy", tensor.numpy())]:
        assert back.dtype == array.dtype and back.shape == array.shape, name
        np.testing.assert_array_equal(back, array, err_msg=name)
    # Bit-exact, not just equal (e.g. -0.0 vs 0.0 would compare equal).
    assert np.asarray(tensor).tobytes() == array.tobytes()


@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2)], ids=["scalar", "empty", "empty 3-d"])
def test_tensor_round_trip_of_degenerate_shapes(shape):
    array = np.full(shape, 2.5, np.float32)
    tensor = rf.Tensor(array)
    assert tensor.shape == shape and tensor.size_bytes == array.nbytes
    back = np.asarray(tensor)
    assert back.shape == shape
    np.testing.assert_array_equal(back, array)


def test_tensor_numpy_views_share_the_tensor_buffer():
    tensor = rf.Tensor(np.arange(6, dtype=np.int32).reshape(2, 3))
    assert np.shares_memory(tensor.numpy(), np.asarray(tensor))
    # np.asarray with a dtype converts, and copy=True copies.
    as_float = np.asarray(tensor, dtype=np.float64)
    assert as_float.dtype == np.float64
    np.testing.assert_array_equal(as_float, np.arange(6).reshape(2, 3))
    assert not np.shares_memory(np.array(tensor, copy=True), tensor.numpy())


def test_tensor_view_outlives_the_tensor():
    source = np.arange(1000, dtype=np.int64)
    view = rf.Tensor(source).numpy()  # the Tensor object is a temporary
    gc.collect()
    for _ in range(20):
        rf.Tensor(np.full(1000, -1, np.int64))
    np.testing.assert_array_equal(view, source)


def test_tensor_supports_the_buffer_protocol_it_advertises():
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    view = memoryview(rf.Tensor(array))
    assert view.shape == (2, 3) and view.format == "f"
    np.testing.assert_array_equal(np.asarray(view), array)


# numpy >= 2 passes copy= to __array__: copy=False means "never copy; raise if a copy is needed".
needs_numpy2_copy_protocol = pytest.mark.skipif(
    int(np.__version__.split(".")[0]) < 2, reason="__array__(copy=...) is numpy 2 protocol")


@needs_numpy2_copy_protocol
def test_asarray_with_the_same_dtype_and_copy_false_is_a_view():
    tensor = rf.Tensor(np.arange(6, dtype=np.float32))
    view = np.asarray(tensor, dtype=np.float32, copy=False)
    assert np.shares_memory(view, tensor.numpy())


@needs_numpy2_copy_protocol
def test_asarray_with_copy_false_refuses_a_converting_copy():
    tensor = rf.Tensor(np.arange(6, dtype=np.float32))
    with pytest.raises(ValueError):
        np.asarray(tensor, dtype=np.float64, copy=False)

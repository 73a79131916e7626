"""Bad inputs, bad model files, closed and empty Runs, failing samples: each raises the documented
exception with a message that says what was wrong, and never leaves a Run broken or hanging."""

from __future__ import annotations

import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import ringflow as rf
from helpers import assert_matches, build_run, call_with_deadline

# --------------------------------------------------------------------------------------------
# Inputs that do not match the negotiated shape or dtype
# --------------------------------------------------------------------------------------------

# tiny-mlp takes float32 [N, 64]; a Run seeded with one sample negotiates float32 [1, 64].
BAD_INPUTS = {
    "rank 1 instead of 2": (
        lambda x: x[0], rf.ShapeError, ["rank 1", "[64]", "rank 2", "[?, 64]"]),
    "feature dimension 32 instead of 64": (
        lambda x: np.ascontiguousarray(x[:, :32]), rf.ShapeError, ["[1, 32]", "[?, 64]", "must be 64"]),
    "an empty batch": (
        lambda x: x[:0], rf.ShapeError, ["[0, 64]", "size 0", "[?, 64]"]),
    "float64 instead of float32": (
        lambda x: x.astype(np.float64), rf.DTypeError, ["float64", "float32"]),
    "int32 instead of float32": (
        lambda x: x.astype(np.int32), rf.DTypeError, ["int32", "float32"]),
    "two tensors for a one-input model": (
        lambda x: [x, x], rf.ShapeError, ["2 input tensors", "takes 1"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_mismatched_input_is_rejected_and_the_run_stays_usable(tiny_mlp, make_run, case):
    make_bad, error_type, fragments = BAD_INPUTS[case]
    x = tiny_mlp.input_for(0)
    run = make_run(tiny_mlp.model, x)
    bad = make_bad(x)

    for push in (run.push, run.try_push):
        with pytest.raises(error_type) as raised:
            push(bad)
        message = str(raised.value)
        for fragment in fragments:
            assert fragment in message, f"{fragment!r} missing from {message!r}"

    # Python callers catch these as the standard categories too.
    expected_builtin = ValueError if error_type is rf.ShapeError else TypeError
    assert isinstance(raised.value, expected_builtin) and isinstance(raised.value, rf.Error)

    # Nothing was enqueued: the next valid sample is the Run's first and comes back right.
    run.push(x, frame_id=1)
    sample = run.pull(timeout_ms=10_000)
    assert (sample.input_seq, sample.frame_id) == (0, 1)
    assert_matches(sample[0], tiny_mlp.oracle(x))


# Model.run checks against the model's own spec, float32 [?, 64]: any batch size goes.
MODEL_RUN_BAD_INPUTS = {
    "rank 1 instead of 2": (
        lambda x: x[0], rf.ShapeError, ["rank 1", "[64]", "rank 2", "[?, 64]"]),
    "feature dimension 32 instead of 64": (
        lambda x: np.ascontiguousarray(x[:, :32]), rf.ShapeError, ["[1, 32]", "[?, 64]"]),
    "float64 instead of float32": (
        lambda x: x.astype(np.float64), rf.DTypeError, ["float64", "float32"]),
}


@pytest.mark.parametrize("case", list(MODEL_RUN_BAD_INPUTS), ids=list(MODEL_RUN_BAD_INPUTS))
def test_mismatched_input_is_rejected_by_model_run(tiny_mlp, case):
    make_bad, error_type, fragments = MODEL_RUN_BAD_INPUTS[case]
    x = tiny_mlp.input_for(0)
    with pytest.raises(error_type) as raised:
        tiny_mlp.model.run(make_bad(x))
    message = str(raised.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from {message!r}"
    assert_matches(tiny_mlp.model.run(x)[0], tiny_mlp.oracle(x))


@pytest.mark.parametrize(
    "value, type_named",
    [
        (np.zeros((1, 64), np.complex64), "complex64"),
        (np.zeros((1, 64), np.uint32), "uint32"),
        (np.zeros((1, 64), ">f4"), ">f4"),  # float32, but big-endian: must not be misread
        ([0.5] * 64, "float"),              # a plain list is read as a list of inputs
        ([[0.5] * 64], "list"),
        ("not an array", "str"),
    ],
    ids=["complex64", "uint32", "big-endian float32", "list of floats", "nested list", "str"],
)
def test_unsupported_input_types_raise_dtype_error(tiny_mlp, make_run, value, type_named):
    run = make_run(tiny_mlp.model, tiny_mlp.input_for(0))
    for call in (run.push, run.try_push, tiny_mlp.model.run):
        with pytest.raises(rf.DTypeError, match=type_named):
            call(value)
    with pytest.raises(rf.DTypeError):  # a Tensor holds one array, so it names the outer type
        rf.Tensor(value)
    # Still usable afterwards.
    assert run.run(tiny_mlp.input_for(0))[0].shape == (1, 10)


def test_dtype_error_lists_the_supported_dtypes():
    with pytest.raises(rf.DTypeError) as raised:
        rf.Tensor(np.zeros(3, np.complex64))
    for name in ("float32", "float16", "float64", "int8", "uint8", "int16", "int32", "int64",
                 "bool"):
        assert name in str(raised.value)


# --------------------------------------------------------------------------------------------
# Non-contiguous arrays are copied in their logical order, never read with the wrong strides
# --------------------------------------------------------------------------------------------

def non_contiguous_views(x: np.ndarray) -> dict[str, np.ndarray]:
    """Views equal in value to differently laid out data, none of them C-contiguous."""
    wide = np.repeat(x, 2, axis=-1)           # every element twice ...
    views = {
        "strided slice": wide[..., ::2],      # ... so every other one is x again
        "reversed": np.ascontiguousarray(x[..., ::-1])[..., ::-1],
    }
    if x.ndim == 4:                           # NCHW image: an NHWC buffer seen transposed
        views["transposed"] = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    for name, view in views.items():
        assert not view.flags.c_contiguous, name
        np.testing.assert_array_equal(view, x, err_msg=name)
    return views


@pytest.mark.parametrize("model_name", ["tiny-mlp", "resnet50"])
def test_non_contiguous_input_gives_the_same_result_as_its_contiguous_copy(model_cases, make_run,
                                                                           model_name):
    case = model_cases[model_name]
    x = case.input_for(3)
    expected = case.oracle(x)
    run = make_run(case.model, x)
    for name, view in non_contiguous_views(x).items():
        run.push(view)
        assert_matches(run.pull(timeout_ms=30_000)[0], expected, what=f"push of {name} view")
        assert_matches(case.model.run(view)[0], expected, what=f"Model.run of {name} view")
        np.testing.assert_array_equal(np.asarray(rf.Tensor(view)), x, err_msg=name)


# --------------------------------------------------------------------------------------------
# Accepted input forms: dict by name, list, tuple, rf.Sample
# --------------------------------------------------------------------------------------------

def test_inputs_by_name_in_a_dict(tiny_mlp, make_run):
    x = tiny_mlp.input_for(4)
    expected = tiny_mlp.oracle(x)
    run = make_run(tiny_mlp.model, {"input": x})  # the seed may be named too
    run.push({"input": x})
    assert_matches(run.pull(timeout_ms=10_000)[0], expected, what="push(dict)")
    assert_matches(run.run({"input": x})[0], expected, what="Run.run(dict)")
    assert_matches(tiny_mlp.model.run({"input": x})[0], expected, what="Model.run(dict)")


def test_list_tuple_and_sample_inputs(tiny_mlp, make_run):
    x = tiny_mlp.input_for(5)
    expected = tiny_mlp.oracle(x)
    run = make_run(tiny_mlp.model, x)
    sample = rf.Sample()
    sample.tensors = [rf.Tensor(x)]
    sample.names = [""]
    sample.frame_id = 12
    for frame_id, inputs in enumerate([[x], (x,), rf.Tensor(x)]):
        run.push(inputs, frame_id=frame_id)
    run.push(sample)
    for frame_id in (0, 1, 2, 12):
        result = run.pull(timeout_ms=10_000)
        assert result.frame_id == frame_id
        assert_matches(result[0], expected)


def call_with_named_input(tiny_mlp, run, call, inputs):
    target = {"push": run.push, "try_push": run.try_push, "Run.run": run.run,
              "Model.run": tiny_mlp.model.run}[call]
    return target(inputs)


@pytest.mark.parametrize("call", ["push", "try_push", "Run.run", "Model.run"])
def test_unknown_input_name_raises_an_error_naming_both_names(tiny_mlp, make_run, call):
    x = tiny_mlp.input_for(0)
    run = make_run(tiny_mlp.model, x)
    with pytest.raises(rf.Error) as raised:
        call_with_named_input(tiny_mlp, run, call, {"pixels": x})
    message = str(raised.value)
    assert "'input'" in message and "pixels" in message, message
    assert_matches(run.run(x)[0], tiny_mlp.oracle(x))


@pytest.mark.parametrize("call", ["push", "try_push"])
def test_unknown_input_name_is_a_shape_error(tiny_mlp, make_run, call):
    # ModelImpl::inputs_in_model_order documents ShapeError for a missing or unknown input.
    run = make_run(tiny_mlp.model, tiny_mlp.input_for(0))
    with pytest.raises(rf.ShapeError):
        call_with_named_input(tiny_mlp, run, call, {"pixels": tiny_mlp.input_for(0)})


@pytest.mark.parametrize("call", ["Run.run", "Model.run"])
def test_unknown_input_name_is_a_shape_error_in_synchronous_calls(tiny_mlp, make_run, call):
    run = make_run(tiny_mlp.model, tiny_mlp.input_for(0))
    with pytest.raises(rf.ShapeError):
        call_with_named_input(tiny_mlp, run, call, {"pixels": tiny_mlp.input_for(0)})


def test_extra_named_input_raises_shape_error(tiny_mlp, make_run):
    x = tiny_mlp.input_for(0)
    run = make_run(tiny_mlp.model, x)
    with pytest.raises(rf.ShapeError, match="2 input tensors"):
        run.push({"input": x, "extra": x})


# --------------------------------------------------------------------------------------------
# Model files
# --------------------------------------------------------------------------------------------

def test_missing_model_file_raises_model_error_naming_the_path(tmp_path):
    path = tmp_path / "no-such-model.onnx"
    with pytest.raises(rf.ModelError, match="no-such-model.onnx") as raised:
        rf.Model(str(path))
    assert str(path) in str(raised.value)


def test_directory_instead_of_model_file_raises_model_error(tmp_path):
    with pytest.raises(rf.ModelError) as raised:
        rf.Model(str(tmp_path))
    assert str(tmp_path) in str(raised.value)


@pytest.mark.parametrize("content", ["garbage", "truncated", "empty"])
def test_corrupt_model_file_raises_model_error_naming_the_path(tmp_path, tiny_mlp_path, content):
    path = tmp_path / f"{content}.onnx"
    if content == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    elif content == "truncated":
        path.write_bytes(tiny_mlp_path.read_bytes()[:2000])
    else:
        path.write_bytes(b"")
    with pytest.raises(rf.ModelError) as raised:
        rf.Model(str(path))
    assert str(path) in str(raised.value)
    assert isinstance(raised.value, rf.Error)


def test_model_accepts_the_path_that_models_ensure_returns(tiny_mlp_path):
    assert rf.Model(tiny_mlp_path).input_specs()[0].name == "input"


# --------------------------------------------------------------------------------------------
# Closed, empty and full Runs
# --------------------------------------------------------------------------------------------

def test_push_and_try_push_after_close_input_raise_closed_error(tiny_mlp, make_run):
    x = tiny_mlp.input_for(0)
    run = make_run(tiny_mlp.model, x)
    run.close_input()
    run.close_input()  # idempotent
    with pytest.raises(rf.ClosedError, match="close_input"):
        run.push(x)
    with pytest.raises(rf.ClosedError, match="close_input"):
        run.try_push(x)


def test_results_accepted_before_close_input_are_still_delivered(tiny_mlp, make_run):
    x = tiny_mlp.input_for(0)
    run = make_run(tiny_mlp.model, x)
    for frame_id in range(3):
        run.push(x, frame_id=frame_id)
    run.close_input()
    frames = [run.pull(timeout_ms=10_000).frame_id for _ in range(3)]
    assert frames == [0, 1, 2]
    assert run.pull_with_status(timeout_ms=10_000).status == rf.PullStatus.Closed


def test_pull_on_a_closed_drained_run_returns_at_once_even_without_timeout(tiny_mlp, make_run):
    x = tiny_mlp.input_for(0)
    run = make_run(tiny_mlp.model, x)
    run.push(x)
    run.close_input()
    assert run.pull(timeout_ms=10_000) is not None
    # timeout_ms=-1 waits forever on an open Run; on a drained closed one it must not wait at all.
    assert call_with_deadline(lambda: run.pull(), timeout_s=10, name="pull()") is None
    status = call_with_deadline(lambda: run.pull_with_status(), timeout_s=10,
                                name="pull_with_status()")
    assert status.status == rf.PullStatus.Closed and status.sample is None


def test_pull_on_an_open_empty_run_times_out(tiny_mlp, make_run):
    x = tiny_mlp.input_for(0)
    run = make_run(tiny_mlp.model, x)
    assert run.pull(timeout_ms=50) is None
    status = run.pull_with_status(timeout_ms=50)
    assert status.status == rf.PullStatus.Timeout and status.sample is None
    # A timeout does not end the stream.
    run.push(x)
    assert run.pull(timeout_ms=10_000) is not None


def test_close_input_wakes_a_puller_waiting_forever(tiny_mlp, make_run, spawn):
    run = make_run(tiny_mlp.model, tiny_mlp.input_for(0))
    puller = spawn(lambda: run.pull_with_status(), name="puller waiting forever")
    time.sleep(0.2)  # let the puller park; were it not parked yet, the outcome is the same
    run.close_input()
    assert puller.join(timeout_s=10).status == rf.PullStatus.Closed


def fill_to_capacity(run, x):
    """Pushes run.capacity samples without pulling; push() waits while the dispatcher moves them
    from the input queue into result slots, so this ends with every slot taken."""
    for _ in range(run.capacity):
        assert run.push(x) is True


def test_try_push_returns_false_when_capacity_samples_are_in_flight(tiny_mlp, make_run):
    x = tiny_mlp.input_for(0)
    run = make_run(tiny_mlp.model, x, queue_depth=2)
    assert run.capacity == 2 + 2 + 1  # input queue + result slots + one batch per worker
    fill_to_capacity(run, x)
    time.sleep(0.05)
    assert run.try_push(x) is False  # computed or not, unpulled samples hold their slots
    assert run.pull(timeout_ms=10_000).input_seq == 0
    deadline = time.monotonic() + 10
    while not run.try_push(x):  # the dispatcher needs a moment to move a sample into the free slot
        assert time.monotonic() < deadline, "a pull freed a slot, but try_push never succeeded"
        time.sleep(0.001)
    assert [run.pull(timeout_ms=10_000).input_seq for _ in range(run.capacity)] == list(range(1, run.capacity + 1))


def test_close_input_releases_a_push_waiting_for_room(tiny_mlp, make_run, spawn):
    x = tiny_mlp.input_for(0)
    run = make_run(tiny_mlp.model, x, queue_depth=1)
    fill_to_capacity(run, x)  # every slot is taken until results are pulled, which happens after close
    pusher = spawn(lambda: run.push(x), name="pusher waiting for room")
    # A push admitted despite the full Run would return within microseconds; 0.2 s is ample.
    time.sleep(0.2)
    if not pusher.is_alive():
        pusher.join()  # re-raises whatever push() raised, if it raised
        pytest.fail("push() was admitted although the Run was full")
    run.close_input()
    with pytest.raises(rf.ClosedError):
        pusher.join(timeout_s=10)
    # The samples accepted before close_input() are still delivered, then the stream ends.
    assert [run.pull(timeout_ms=10_000).input_seq for _ in range(run.capacity)] == list(range(run.capacity))
    assert run.pull_with_status(timeout_ms=10_000).status == rf.PullStatus.Closed


def test_destroying_a_run_with_samples_in_flight_does_not_hang(resnet50):
    x = resnet50.input_for(0)
    holder = [build_run(resnet50.model, x, queue_depth=4)]
    for _ in range(4):
        holder[0].push(x)

    def destroy():
        run = holder.pop()
        del run  # the last reference: the Run is destroyed here, on the guarded thread

    # Destruction joins the Run's threads; it must abort the in-flight resnet50 inferences
    # rather than hang (and must not need the GIL, which this thread holds when it starts).
    call_with_deadline(destroy, timeout_s=30, name="Run destruction")


# --------------------------------------------------------------------------------------------
# Failing samples and timeouts
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gather_model(tmp_path_factory):
    """picked = data[indices]: fails inside ONNX Runtime for an out-of-range index, which lets a
    test make one sample fail at inference time while others succeed."""
    graph = helper.make_graph(
        [helper.make_node("Gather", ["data", "indices"], ["picked"], axis=0)], "gather",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [5]),
         helper.make_tensor_value_info("indices", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("picked", TensorProto.FLOAT, [1])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8  # readable by the oldest supported onnxruntime
    onnx.checker.check_model(proto)
    path = tmp_path_factory.mktemp("models") / "gather.onnx"
    onnx.save(proto, str(path))
    return rf.Model(str(path))


GATHER_DATA = np.arange(5, dtype=np.float32) * 10


def gather_inputs(index: int) -> list[np.ndarray]:
    return [GATHER_DATA, np.array([index], np.int64)]


def test_failed_sample_raises_inference_error_from_pull_and_the_run_goes_on(gather_model,
                                                                            make_run):
    run = make_run(gather_model, gather_inputs(0))
    run.push(gather_inputs(2), frame_id=40)
    run.push(gather_inputs(7), frame_id=41)  # out of range: fails in ONNX Runtime
    run.push(gather_inputs(3), frame_id=42)

    assert run.pull(timeout_ms=10_000)[0].tolist() == [20.0]
    with pytest.raises(rf.InferenceError) as raised:
        run.pull(timeout_ms=10_000)
    message = str(raised.value)
    assert "input_seq=1" in message and "frame_id=41" in message and "Gather" in message, message
    after = run.pull(timeout_ms=10_000)
    assert (after.frame_id, after[0].tolist()) == (42, [30.0])


def test_failed_sample_reported_by_pull_with_status(gather_model, make_run):
    run = make_run(gather_model, gather_inputs(0))
    run.push(gather_inputs(9), frame_id=7, stream_id="s", pts_ns=99)
    result = run.pull_with_status(timeout_ms=10_000)
    assert result.status == rf.PullStatus.Error
    assert "Gather" in result.error
    # The failed input's metadata comes back (without tensors), so the caller knows which failed.
    assert (result.sample.frame_id, result.sample.stream_id, result.sample.pts_ns) == (7, "s", 99)
    assert result.sample.input_seq == 0 and len(result.sample) == 0


def test_failed_model_run_raises_inference_error(gather_model):
    with pytest.raises(rf.InferenceError, match="Gather"):
        gather_model.run(gather_inputs(-9))
    assert gather_model.run(gather_inputs(-1))[0].tolist() == [40.0]  # negative index is valid


def test_model_run_timeout_raises_timeout_error_and_the_model_stays_usable(resnet50):
    x = resnet50.input_for(0)
    # resnet50 needs ~100 ms; a 1 ms deadline fires long before it can finish.
    with pytest.raises(rf.TimeoutError, match="timeout_ms=1") as raised:
        resnet50.model.run(x, timeout_ms=1)
    assert isinstance(raised.value, TimeoutError)  # the builtin, for generic handlers
    assert_matches(resnet50.model.run(x, timeout_ms=60_000)[0], resnet50.oracle(x))


def test_run_run_refuses_while_pushed_samples_are_unpulled(tiny_mlp, make_run):
    x = tiny_mlp.input_for(0)
    run = make_run(tiny_mlp.model, x)
    run.push(x)
    with pytest.raises(rf.Error, match="1 pushed samples are not pulled"):
        run.run(x)
    run.pull(timeout_ms=10_000)
    assert_matches(run.run(x)[0], tiny_mlp.oracle(x))


@pytest.mark.parametrize("options, message", [
    (dict(queue_depth=0), "queue_depth"),
    (dict(workers=0), "workers"),
])
def test_invalid_run_options_are_rejected_at_build(tiny_mlp, options, message):
    with pytest.raises(rf.Error, match=message):
        build_run(tiny_mlp.model, tiny_mlp.input_for(0), **options)

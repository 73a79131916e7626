"""One table of bad actions against tiny-mlp (float32 [N, 64] in, logits [N, 10] out): each row
builds what it needs, does one wrong thing, and names the error type it must raise and what the
message must say (the expected shape, dtype, option, input or file). A few rows are the controls
("ok" rows): inputs that look odd but are valid must be accepted and give the oracle's result.

After an error from a Run that is still open, the Run must stay usable: the row's Run then takes a
valid sample and returns the oracle's output."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Optional

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import ringflow as rf
from helpers import assert_matches, call_with_deadline


# --------------------------------------------------------------------------------------------
# Models no built-in covers, written once per module
# --------------------------------------------------------------------------------------------

def save_model(graph: onnx.GraphProto, path) -> str:
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8  # readable by the oldest supported onnxruntime
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])  # valid for ORT itself
    return str(path)


@pytest.fixture(scope="module")
def generated_models(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("matrix-models")
    float_in = helper.make_tensor_value_info
    return {
        # Batch dimension fixed at 1: dynamic batching cannot stack samples for it.
        "fixed batch": save_model(helper.make_graph(
            [helper.make_node("Relu", ["fixed_in"], ["fixed_out"])], "fixed_batch",
            [float_in("fixed_in", TensorProto.FLOAT, [1, 4])],
            [float_in("fixed_out", TensorProto.FLOAT, [1, 4])]), folder / "fixed_batch.onnx"),
        # A string tensor input: ringflow has no string dtype.
        "string input": save_model(helper.make_graph(
            [helper.make_node("Identity", ["text"], ["same_text"])], "string_input",
            [float_in("text", TensorProto.STRING, [None, 4])],
            [float_in("same_text", TensorProto.STRING, [None, 4])]), folder / "string_input.onnx"),
        # A sequence input: not a tensor at all.
        "sequence input": save_model(helper.make_graph(
            [helper.make_node("SequenceLength", ["frames"], ["count"])], "sequence_input",
            [helper.make_tensor_sequence_value_info("frames", TensorProto.FLOAT, [None, 4])],
            [float_in("count", TensorProto.INT64, [])]), folder / "sequence_input.onnx"),
        # Tensor in, but a sequence out.
        "sequence output": save_model(helper.make_graph(
            [helper.make_node("SequenceConstruct", ["vec", "vec"], ["parts"])], "sequence_output",
            [float_in("vec", TensorProto.FLOAT, [None, 4])],
            [helper.make_tensor_sequence_value_info("parts", TensorProto.FLOAT, [None, 4])]),
            folder / "sequence_output.onnx"),
    }


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------

class Ctx:
    """What a row's prepare() may use."""

    def __init__(self, tiny_mlp, tiny_mlp_path, generated_models, tmp_path, make_run) -> None:
        self.tiny = tiny_mlp
        self.model: rf.Model = tiny_mlp.model
        self.model_path = tiny_mlp_path
        self.generated = generated_models
        self.tmp_path = tmp_path
        self.make_run = make_run
        self.x = tiny_mlp.input_for(0)                       # float32 [1, 64]
        self.input_name = tiny_mlp.model.input_specs()[0].name

    def run(self, **run_options: Any) -> rf.Run:
        return self.make_run(self.model, self.x, **run_options)

    def graph(self, include_input: bool = True, include_output: bool = True,
              model: Optional[rf.Model] = None) -> rf.Graph:
        graph = rf.Graph()
        graph.add((model or self.model).graph(
            rf.Model.RouteOptions(include_input=include_input,
                                  include_output=include_output)))
        return graph


@dataclasses.dataclass
class Prepared:
    action: Callable[[], Any]                   # the one bad (or, for ok rows, odd) action
    run: Optional[rf.Run] = None                # an open Run that must stay usable afterwards
    expect: tuple = ()                          # fragments known only once prepared (a path)
    check: Optional[Callable[[Any], None]] = None  # ok rows: verifies what action() returned


@dataclasses.dataclass(frozen=True)
class Case:
    prepare: Callable[[Ctx], Prepared]
    raises: Optional[type]      # the exact type raised; None for an ok row
    fragments: tuple = ()       # each must appear in the message; "{input}" is the input's name
    pattern: Optional[str] = None  # a regex the message must match (case-insensitive)


def push(make_bad: Callable[[Ctx], Any], via: str = "push") -> Callable[[Ctx], Prepared]:
    """A fresh Run of tiny-mlp; the action hands it make_bad(ctx) through `via`."""
    def prepare(c: Ctx) -> Prepared:
        run = c.run()
        bad = make_bad(c)
        return Prepared(lambda: getattr(run, via)(bad), run=run)
    return prepare


def build(**run_options: Any) -> Callable[[Ctx], Prepared]:
    """The action builds a Run of tiny-mlp with these RunOptions."""
    def prepare(c: Ctx) -> Prepared:
        graph = c.graph()
        return Prepared(lambda: graph.build(c.x, rf.RunOptions(**run_options)))
    return prepare


def load(write: Callable[[Ctx], str]) -> Callable[[Ctx], Prepared]:
    """The action loads the model file write(ctx) returns; the message must name that path."""
    def prepare(c: Ctx) -> Prepared:
        path = write(c)
        return Prepared(lambda: rf.Model(path), expect=(path,))
    return prepare


def with_provider(name: str) -> Callable[[Ctx], Prepared]:
    def prepare(c: Ctx) -> Prepared:
        if name == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            pytest.skip("this onnxruntime has CUDA, so 'cuda' is not an unavailable provider")
        options = rf.Model.Options(session=rf.SessionOptions(execution_provider=name))
        return Prepared(lambda: rf.Model(str(c.model_path), options))
    return prepare


def after(setup: str, via: str) -> Callable[[Ctx], Prepared]:
    """A Run on which `setup` ("close_input" or "stop") was called; the action pushes through
    `via`. The Run is not expected to stay usable, so it is not handed back."""
    def prepare(c: Ctx) -> Prepared:
        run = c.run()
        getattr(run, setup)()
        return Prepared(lambda: getattr(run, via)(c.x))
    return prepare


def bad_file(content: Callable[[Ctx], bytes], name: str) -> Callable[[Ctx], str]:
    def write(c: Ctx) -> str:
        path = c.tmp_path / name
        path.write_bytes(content(c))
        return str(path)
    return write


def with_max_shape(name: str, bounds: tuple) -> Callable[[Ctx], Prepared]:
    """The action builds a Run with max_shape={name: bounds}; "{input}" is the input's name."""
    def prepare(c: Ctx) -> Prepared:
        graph = c.graph()
        max_shape = {name.replace("{input}", c.input_name): bounds}
        return Prepared(lambda: graph.build(c.x, rf.RunOptions(max_shape=max_shape)))
    return prepare


def push_with_text_frame_id(c: Ctx) -> Prepared:
    run = c.run()
    return Prepared(lambda: run.push(c.x, frame_id="seven"), run=run)


def max_batch_on_fixed_batch_model(c: Ctx) -> Prepared:
    model = rf.Model(c.generated["fixed batch"])
    graph = c.graph(model=model)
    seed = np.ones((1, 4), np.float32)
    return Prepared(lambda: graph.build(seed, rf.RunOptions(max_batch=4)))


def push_beyond_max_shape(c: Ctx) -> Prepared:
    run = c.run(max_shape={c.input_name: (2, -1)})
    x3 = c.tiny.input_for(3)
    x3 = np.concatenate([x3, x3, x3])
    return Prepared(lambda: run.push(x3), run=run)


def build_route(include_input: bool, include_output: bool) -> Callable[[Ctx], Prepared]:
    def prepare(c: Ctx) -> Prepared:
        graph = c.graph(include_input, include_output)
        return Prepared(lambda: graph.build(c.x))
    return prepare


def build_empty_graph(c: Ctx) -> Prepared:
    return Prepared(lambda: rf.Graph().build(c.x))


def build_with_bad_seed(c: Ctx) -> Prepared:
    graph = c.graph()
    return Prepared(lambda: graph.build(np.ascontiguousarray(c.x[:, :32])))


# ---- ok rows: accepted, and equal to the oracle -----------------------------------------------

def accepted_like_contiguous(make_view: Callable[[np.ndarray], np.ndarray],
                             key: int = 7, batch: int = 1) -> Callable[[Ctx], Prepared]:
    """The action pushes make_view(x) and pulls; the result must be the oracle's for x."""
    def prepare(c: Ctx) -> Prepared:
        x = np.concatenate([c.tiny.input_for(key + i) for i in range(batch)])
        view = make_view(x)
        np.testing.assert_array_equal(view, x)  # same values, whatever the layout
        run = c.run()

        def action():
            assert run.push(view, frame_id=key) is True
            return run.pull(timeout_ms=10_000)

        def check(sample):
            assert sample is not None and sample.frame_id == key
            assert sample[0].shape == (batch, 10)
            assert_matches(sample[0], c.tiny.oracle(x))
        return Prepared(action, run=run, check=check)
    return prepare


def strided(x: np.ndarray) -> np.ndarray:
    view = np.repeat(x, 2, axis=-1)[:, ::2]
    assert not view.flags.c_contiguous
    return view


def fortran_order(x: np.ndarray) -> np.ndarray:
    view = np.asfortranarray(x)
    assert not view.flags.c_contiguous
    return view


def read_only(x: np.ndarray) -> np.ndarray:
    view = x.copy()
    view.flags.writeable = False
    return view


def pull_on_stopped_run(c: Ctx) -> Prepared:
    run = c.run()
    run.push(c.x)  # queued or in flight when stop() cancels it
    run.stop()

    def action():
        # No timeout: on a stopped Run, pull must come back at once rather than wait.
        return (call_with_deadline(lambda: run.pull(), timeout_s=10, name="pull()"),
                call_with_deadline(lambda: run.pull_with_status(timeout_ms=-1), timeout_s=10,
                                   name="pull_with_status()"))

    def check(results):
        sample, status = results
        assert sample is None
        assert status.status == rf.PullStatus.Closed and status.sample is None
    return Prepared(action, check=check)


def check_pushes_nothing(c: Ctx) -> Prepared:
    run = c.run()

    def action():
        return run.check(c.x)

    def check(_):
        # check() validated without pushing: there is nothing to pull, and the next push is first.
        assert run.pull(timeout_ms=50) is None
        run.push(c.x, frame_id=5)
        assert run.pull(timeout_ms=10_000).input_seq == 0
    return Prepared(action, run=run, check=check)


def three_rows(c: Ctx) -> np.ndarray:
    return np.concatenate([c.x, c.x, c.x])


# The expected rank, or the expected shape however the free batch dimension is spelled.
SHAPE_NAMED = r"rank 2|\[(\?|-1|None|N), 64\]"

CASES: dict[str, Case] = {
    # -- shapes -------------------------------------------------------------------------------
    "rank 1": Case(push(lambda c: c.x[0]), rf.ShapeError, ("{input}",), SHAPE_NAMED),
    "rank 3": Case(push(lambda c: c.x[None]), rf.ShapeError, ("{input}",), SHAPE_NAMED),
    "rank 0 (0-d array)": Case(push(lambda c: np.array(1.5, np.float32)), rf.ShapeError,
                               ("{input}",), SHAPE_NAMED),
    "dim 1 is 32, not 64": Case(push(lambda c: np.ascontiguousarray(c.x[:, :32])), rf.ShapeError,
                                ("{input}", "32", "64")),
    "dim 1 is 65, not 64": Case(push(lambda c: np.ones((1, 65), np.float32)), rf.ShapeError,
                                ("{input}", "65", "64")),
    "batch of size 0": Case(push(lambda c: np.ones((0, 64), np.float32)), rf.ShapeError,
                            ("{input}",), r"size.?0|zero"),
    "feature dim of size 0": Case(push(lambda c: np.ones((1, 0), np.float32)), rf.ShapeError,
                                  ("{input}",), r"size.?0|zero|64"),
    "try_push: dim 1 is 32": Case(push(lambda c: np.ones((2, 32), np.float32), via="try_push"),
                                  rf.ShapeError, ("32", "64")),
    # -- dtypes -------------------------------------------------------------------------------
    "float64": Case(push(lambda c: c.x.astype(np.float64)), rf.DTypeError, ("float64", "float32")),
    "int32": Case(push(lambda c: c.x.astype(np.int32)), rf.DTypeError, ("int32", "float32")),
    "float16": Case(push(lambda c: c.x.astype(np.float16)), rf.DTypeError, ("float16", "float32")),
    "bool": Case(push(lambda c: c.x > 0), rf.DTypeError, ("bool", "float32")),
    "big-endian float32": Case(push(lambda c: c.x.astype(">f4")), rf.DTypeError, ("float32",),
                               r">f4|byte order|endian"),
    "object array": Case(push(lambda c: c.x.astype(object)), rf.DTypeError,
                         ("object", "float32")),
    "try_push: float64": Case(push(lambda c: c.x.astype(np.float64), via="try_push"),
                              rf.DTypeError, ("float64", "float32")),
    # -- how many inputs, and which ----------------------------------------------------------
    "no input (empty list)": Case(push(lambda c: []), rf.ShapeError, ("{input}",), r"\b1\b"),
    "two arrays for one input": Case(push(lambda c: [c.x, c.x]), rf.ShapeError, ("2", "{input}"),
                                     r"\b1\b"),
    "misnamed input in a dict": Case(push(lambda c: {"pixels": c.x}), rf.ShapeError,
                                     ("pixels", "'{input}'")),
    "extra name in a dict": Case(push(lambda c: {c.input_name: c.x, "extra": c.x}),
                                 rf.ShapeError, ("2",), r"\b1\b"),
    # -- not arrays ----------------------------------------------------------------------------
    "a string": Case(push(lambda c: "not an array"), rf.DTypeError, ("str",), r"array"),
    "None": Case(push(lambda c: None), rf.DTypeError, ("None",), r"array"),
    "a list of floats": Case(push(lambda c: [0.5] * 64), rf.DTypeError, ("float",), r"array"),
    "frame_id not an int": Case(push_with_text_frame_id, TypeError, ("frame_id",)),
    # -- model files -------------------------------------------------------------------------
    "missing model file": Case(load(lambda c: str(c.tmp_path / "no-such-model.onnx")),
                               rf.ModelError),
    "empty model file": Case(load(bad_file(lambda c: b"", "empty.onnx")), rf.ModelError),
    "random bytes": Case(load(bad_file(
        lambda c: np.random.default_rng(7).integers(0, 256, 4096, np.uint8).tobytes(),
        "random.onnx")), rf.ModelError),
    "string tensor input": Case(load(lambda c: c.generated["string input"]), rf.ModelError,
                                ("text",)),
    "sequence input": Case(load(lambda c: c.generated["sequence input"]), rf.ModelError,
                           ("frames",)),
    "sequence output": Case(load(lambda c: c.generated["sequence output"]), rf.ModelError,
                            ("parts",)),
    "provider cuda, not in this onnxruntime": Case(with_provider("cuda"), rf.ModelError,
                                                   ("CPUExecutionProvider",)),
    "unknown provider name": Case(with_provider("nosuch"), rf.ModelError, ("nosuch",),
                                  r"cuda"),
    # -- RunOptions ----------------------------------------------------------------------------
    "queue_depth=0": Case(build(queue_depth=0), rf.Error, ("queue_depth",)),
    "workers=0": Case(build(workers=0), rf.Error, ("workers",)),
    "workers=-1": Case(build(workers=-1), rf.Error, ("workers",)),
    "max_batch=0": Case(build(max_batch=0), rf.Error, ("max_batch",)),
    "max_delay_us=-1": Case(build(max_delay_us=-1), rf.Error, ("max_delay_us",)),
    "max_batch=4, fixed batch dim": Case(max_batch_on_fixed_batch_model, rf.ShapeError,
                                         ("max_batch", "fixed_in")),
    "max_shape: unknown input": Case(with_max_shape("nosuch", (4, 64)), rf.ShapeError,
                                     ("nosuch",)),
    "max_shape: wrong rank": Case(with_max_shape("{input}", (4, 64, 3)), rf.ShapeError,
                                  ("max_shape", "{input}"), r"rank|\[(\?|-1|None|N), 64\]"),
    "push beyond max_shape": Case(push_beyond_max_shape, rf.ShapeError, ("{input}", "3"),
                                  r"\b2\b"),
    # -- graphs and seeds ----------------------------------------------------------------------
    "graph without fragments": Case(build_empty_graph, rf.Error, (), r"fragment|empty|model"),
    "fragment without its input": Case(build_route(False, True), rf.Error, ("include_input",)),
    "fragment without its output": Case(build_route(True, False), rf.Error, ("include_output",)),
    "seed of the wrong shape": Case(build_with_bad_seed, rf.ShapeError, ("{input}", "32", "64")),
    # -- lifecycle -----------------------------------------------------------------------------
    "push after close_input": Case(after("close_input", "push"), rf.ClosedError,
                                   ("close_input",)),
    "try_push after close_input": Case(after("close_input", "try_push"), rf.ClosedError,
                                       ("close_input",)),
    "push after stop": Case(after("stop", "push"), rf.ClosedError, (), r"stop|closed"),
    "try_push after stop": Case(after("stop", "try_push"), rf.ClosedError, (), r"stop|closed"),
    # -- Run.check validates like push ------------------------------------------------------
    "check: float64": Case(push(lambda c: c.x.astype(np.float64), via="check"), rf.DTypeError,
                           ("float64", "float32")),
    "check: dim 1 is 32": Case(push(lambda c: np.ones((1, 32), np.float32), via="check"),
                               rf.ShapeError, ("32", "64")),
    # -- ok rows -------------------------------------------------------------------------------
    "ok: non-contiguous (strided)": Case(accepted_like_contiguous(strided), None),
    "ok: non-contiguous (Fortran order, batch 3)": Case(
        accepted_like_contiguous(fortran_order, batch=3), None),
    "ok: read-only array": Case(accepted_like_contiguous(read_only), None),
    "ok: batch 3 after a batch-1 seed": Case(accepted_like_contiguous(lambda x: x, batch=3), None),
    "ok: pull on a stopped Run": Case(pull_on_stopped_run, None),
    "ok: check of a valid input": Case(check_pushes_nothing, None),
}


@pytest.mark.parametrize("case_id", list(CASES), ids=list(CASES))
def test_bad_input_matrix(tiny_mlp, tiny_mlp_path, generated_models, tmp_path, make_run,
                          case_id):
    case = CASES[case_id]
    ctx = Ctx(tiny_mlp, tiny_mlp_path, generated_models, tmp_path, make_run)
    prepared = case.prepare(ctx)

    if case.raises is None:
        result = prepared.action()
        prepared.check(result)
        return

    with pytest.raises(Exception) as raised:
        prepared.action()
    error = raised.value
    assert type(error) is case.raises, (
        f"raised {type(error).__name__}, expected {case.raises.__name__}: {error}")
    message = str(error)
    for fragment in case.fragments + prepared.expect:
        fragment = fragment.replace("{input}", ctx.input_name)
        assert fragment in message, f"{fragment!r} missing from {message!r}"
    if case.pattern is not None:
        assert re.search(case.pattern, message, re.IGNORECASE), (
            f"/{case.pattern}/ does not match {message!r}")

    if prepared.run is not None:
        # The error changed nothing: a valid sample goes through and is the Run's first.
        x = tiny_mlp.input_for(11)
        assert prepared.run.push(x, frame_id=11) is True
        sample = prepared.run.pull(timeout_ms=10_000)
        assert sample is not None, "the Run did not deliver a valid sample after the error"
        assert (sample.input_seq, sample.frame_id) == (0, 11)
        assert_matches(sample[0], tiny_mlp.oracle(x))

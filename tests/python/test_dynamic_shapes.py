"""Shapes per sample: every dimension a model leaves dynamic may differ from sample to sample (the
seed no longer fixes it), data-dependent outputs come back at the size onnxruntime computed, fixed
dimensions are still checked, and RunOptions.max_shape bounds what a push may bring. Each result is
compared with onnxruntime's own Python API on the same inputs (dynamic_models.MultiOracle)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import ringflow as rf
from dynamic_models import (CNN_SIZE, FCN_IN_CHANNELS, HIDDEN, MAX_SEQ, assert_outputs_match,
                            encoder_inputs)
from helpers import assert_matches, build_run, max_abs_diff, pull_until_closed

# The encoder chains ~15 float ops (softmax, layer norm); ORT may pick other kernels for a stacked
# batch than for one sample. Measured batch-vs-single difference ~2e-7; 1e-4 leaves a wide margin
# and is still far below what a wrong sequence length or mask produces (~0.1 and more).
FLOAT_ATOL = 1e-4

N_ENCODER = 200


@pytest.fixture(scope="module")
def encoder(dynamic_models):
    return dynamic_models["encoder"]


@pytest.fixture(scope="module")
def fcn(dynamic_models):
    return dynamic_models["fcn"]


@pytest.fixture(scope="module")
def nonzero(dynamic_models):
    return dynamic_models["nonzero"]


@pytest.fixture(scope="module")
def two_io(dynamic_models):
    return dynamic_models["two_io"]


def frame_id_for(i: int) -> int:
    # Unlike input_seq (0, 1, 2, ...), so echoing the wrong field is caught.
    return 3000 + 11 * i


def push_all(run, inputs, first: int = 0) -> None:
    """Pushes inputs[first:], then closes the input. Closes it even when a push raises, so a
    puller sees the end of the stream at once instead of waiting for its timeout."""
    try:
        for i in range(first, len(inputs)):
            assert run.push(inputs[i], frame_id=frame_id_for(i)) is True
    finally:
        run.close_input()


def pull_and_check(run, inputs, oracle, first: int = 0, atol=FLOAT_ATOL) -> int:
    """Pulls until Closed, checking that results come in push order (inputs[first] first), each
    equal to the oracle's outputs for that input alone (checked on arrival, so pooled buffers go
    back at once). Returns how many came."""
    seen = 0
    for sample in pull_until_closed(run):
        i = first + seen
        assert i < len(inputs), "more results than pushes"
        assert (sample.input_seq, sample.frame_id) == (i, frame_id_for(i)), \
            f"result {i} is input_seq={sample.input_seq}, frame_id={sample.frame_id}"
        assert_outputs_match(sample, oracle(inputs[i]), atol, what=f"sample {i}")
        seen += 1
    return seen


def stream(run, inputs, oracle, spawn, first: int = 0) -> None:
    """Pushes inputs[first:] from a producer thread while this thread pulls and checks them."""
    producer = spawn(lambda: push_all(run, inputs, first), name="producer")
    seen = pull_and_check(run, inputs, oracle, first)
    producer.join()  # a refused push shows here, as itself
    assert seen == len(inputs) - first, f"{seen} results for {len(inputs) - first} pushes"


def check_batch_accounting(stats, n: int, max_batch: int) -> None:
    assert stats.errors == 0
    assert 1.0 <= stats.avg_batch_size <= max_batch
    # Every sample went through exactly one inference call.
    assert stats.batches * stats.avg_batch_size == pytest.approx(n, rel=1e-9)


def run_lengths(values) -> list[int]:
    """Sizes of the runs of equal consecutive values: [5, 5, 7, 5] -> [2, 1, 1]."""
    sizes: list[int] = []
    for i, v in enumerate(values):
        if i and v == values[i - 1]:
            sizes[-1] += 1
        else:
            sizes.append(1)
    return sizes


# --------------------------------------------------------------------------------------------
# Specs: dynamic dimensions are None, in the model and in a Run built from a seed
# --------------------------------------------------------------------------------------------

def spec_tuples(specs):
    return [(s.name, np.dtype(s.dtype), tuple(s.shape)) for s in specs]


def test_specs_show_dynamic_dimensions_as_none(encoder, fcn, nonzero, two_io, make_run):
    assert spec_tuples(encoder.model.input_specs()) == [
        ("input_ids", np.int64, (None, None)), ("attention_mask", np.int64, (None, None))]
    assert spec_tuples(encoder.model.output_specs()) == [
        ("embeddings", np.float32, (None, None, HIDDEN)), ("pooled", np.float32, (None, HIDDEN))]
    assert spec_tuples(fcn.model.input_specs()) == [
        ("image", np.float32, (1, FCN_IN_CHANNELS, None, None))]
    assert spec_tuples(nonzero.model.output_specs()) == [("indices", np.int64, (1, None))]
    assert [s.name for s in two_io.model.output_specs()] == ["prod", "sum"]

    # The seed only warms the Run up: it does not turn the dynamic dimensions into its own.
    seed = encoder_inputs(np.random.default_rng(0), 8)
    run = make_run(encoder.model, seed)
    assert spec_tuples(run.input_specs()) == spec_tuples(encoder.model.input_specs())
    assert spec_tuples(run.output_specs()) == spec_tuples(encoder.model.output_specs())


# --------------------------------------------------------------------------------------------
# encoder: sequence length per sample
# --------------------------------------------------------------------------------------------

def random_lengths(seed: int, n: int) -> list[int]:
    lengths = np.random.default_rng(seed).integers(1, MAX_SEQ + 1, n).tolist()
    lengths[10], lengths[20] = 1, MAX_SEQ  # the extremes, whatever the draw
    return lengths


@pytest.mark.parametrize("max_batch, max_delay_us", [(1, 0), (8, 2000)],
                         ids=["unbatched", "max_batch=8"])
def test_encoder_random_lengths_match_the_oracle_in_order(encoder, make_run, spawn,
                                                          max_batch, max_delay_us):
    lengths = random_lengths(77, N_ENCODER)
    assert len(set(lengths)) > 40  # really interleaved lengths, not a few repeated ones
    rng = np.random.default_rng(78)
    inputs = [encoder_inputs(rng, seq) for seq in lengths]
    # Seeded with a length the stream mostly does not use.
    run = make_run(encoder.model, encoder_inputs(rng, 8), max_batch=max_batch,
                   max_delay_us=max_delay_us)
    stream(run, inputs, encoder.oracle, spawn)
    check_batch_accounting(run.stats(), len(inputs), max_batch)


def test_encoder_runs_of_equal_length_are_batched_and_split_back(encoder, make_run):
    """All samples are queued before any is pulled, in runs of 1 to 12 equal lengths: batches
    form within each run (avg_batch_size > 1) but never across a change of length, so at least
    ceil(run / max_batch) batches are needed per run."""
    max_batch = 8
    rng = np.random.default_rng(79)
    lengths: list[int] = []
    while len(lengths) < N_ENCODER:
        lengths += [int(rng.integers(1, MAX_SEQ + 1))] * int(rng.integers(1, 13))
    inputs = [encoder_inputs(rng, seq) for seq in lengths]
    run = make_run(encoder.model, inputs[0], queue_depth=len(inputs), max_batch=max_batch,
                   max_delay_us=2000)
    push_all(run, inputs)
    assert pull_and_check(run, inputs, encoder.oracle) == len(inputs)

    stats = run.stats()
    check_batch_accounting(stats, len(inputs), max_batch)
    assert stats.avg_batch_size > 1, f"{stats.batches} batches for {len(inputs)} samples"
    # Computed from the final list, so two neighbouring runs that drew the same length count as one.
    fewest = sum(math.ceil(size / max_batch) for size in run_lengths(lengths))
    assert stats.batches >= fewest, "samples of different lengths were stacked into one batch"


def test_encoder_samples_of_several_rows_and_lengths(encoder, make_run, spawn):
    """The batch dimension varies per sample too: each sample comes back with its own rows."""
    rng = np.random.default_rng(80)
    shapes = [(1, 5), (3, 5), (3, 5), (2, 64), (1, 1), (4, 17), (4, 17), (1, 5)] * 5
    inputs = [encoder_inputs(rng, seq, batch=rows) for rows, seq in shapes]
    run = make_run(encoder.model, inputs[0], max_batch=4, max_delay_us=2000)
    stream(run, inputs, encoder.oracle, spawn)
    check_batch_accounting(run.stats(), len(inputs), 4)


def test_encoder_model_run_and_run_run_take_any_length(encoder, make_run):
    rng = np.random.default_rng(81)
    run = make_run(encoder.model, encoder_inputs(rng, 8))
    for seq in (1, 8, 33, MAX_SEQ):
        x = encoder_inputs(rng, seq)
        expected = encoder.oracle(x)
        assert_outputs_match(encoder.model.run(x), expected, FLOAT_ATOL, f"Model.run seq={seq}")
        assert_outputs_match(run.run(x), expected, FLOAT_ATOL, f"Run.run seq={seq}")


# --------------------------------------------------------------------------------------------
# fcn: height and width per sample
# --------------------------------------------------------------------------------------------

FCN_SIZES = [(17, 23), (32, 32), (8, 40), (64, 16), (31, 7), (1, 1), (17, 23)]


@pytest.mark.parametrize("output_memory", [rf.OutputMemory.Owned, rf.OutputMemory.Pooled],
                         ids=["owned", "pooled"])
def test_fcn_each_image_size_matches_the_oracle(fcn, make_run, spawn, output_memory):
    rng = np.random.default_rng(90)
    images = [rng.standard_normal((1, FCN_IN_CHANNELS) + hw).astype(np.float32)
              for hw in FCN_SIZES * 3]
    run = make_run(fcn.model, images[1], queue_depth=4, output_memory=output_memory)

    # The first result is held across the whole stream: a pooled buffer of one size must not be
    # handed to a later result of another size while it is still referenced.
    run.push(images[0], frame_id=frame_id_for(0))
    held = run.pull(timeout_ms=30_000)["heatmap"]
    held_values = held.copy()
    assert_matches(held, fcn.oracle(images[0])["heatmap"], atol=FLOAT_ATOL, what="sample 0")

    stream(run, images, fcn.oracle, spawn, first=1)
    np.testing.assert_array_equal(held, held_values, err_msg="held result was overwritten")


def test_fcn_model_run_takes_any_image_size(fcn):
    rng = np.random.default_rng(91)
    for hw in FCN_SIZES:
        image = rng.standard_normal((1, FCN_IN_CHANNELS) + hw).astype(np.float32)
        assert_outputs_match(fcn.model.run(image), fcn.oracle(image), FLOAT_ATOL, f"{hw}")


def test_fcn_with_fixed_batch_refuses_max_batch(fcn):
    image = np.zeros((1, FCN_IN_CHANNELS, 8, 8), np.float32)
    with pytest.raises(rf.ShapeError, match="max_batch"):
        build_run(fcn.model, image, max_batch=2)


# --------------------------------------------------------------------------------------------
# nonzero: outputs whose size depends on the data
# --------------------------------------------------------------------------------------------

def nonzero_inputs() -> list[np.ndarray]:
    """Lengths and hit counts that vary independently, including no hits at all (output
    [1, 0]) right after large outputs and vice versa."""
    rng = np.random.default_rng(100)
    inputs = [
        -np.ones(5, np.float32),                # no hits
        np.ones(1000, np.float32),              # every element
        np.array([-1.0], np.float32),           # one element, no hit
        np.array([2.0], np.float32),            # one element, one hit
        np.zeros(64, np.float32),               # 0 is not > 0
    ]
    for n in (3, 100, 257, 1000, 10):
        x = rng.standard_normal(n).astype(np.float32)
        x[rng.random(n) < rng.random()] = -1.0  # a different hit ratio per sample
        inputs.append(x)
    return inputs * 3


@pytest.mark.parametrize("output_memory", [rf.OutputMemory.Owned, rf.OutputMemory.Pooled],
                         ids=["owned", "pooled"])
def test_nonzero_outputs_have_the_oracles_data_dependent_shape(nonzero, make_run, spawn,
                                                               output_memory):
    inputs = nonzero_inputs()
    hits = {nonzero.oracle(x)["indices"].shape for x in inputs}
    assert (1, 0) in hits and (1, 1000) in hits and len(hits) >= 6  # the cases really vary
    run = make_run(nonzero.model, inputs[3], output_memory=output_memory)
    stream(run, inputs, nonzero.oracle, spawn)


def test_nonzero_model_run_with_no_hits(nonzero):
    x = -np.ones(7, np.float32)
    result = nonzero.model.run(x)
    assert result["indices"].shape == nonzero.oracle(x)["indices"].shape == (1, 0)
    assert_outputs_match(result, nonzero.oracle(x), 0, "Model.run")


# --------------------------------------------------------------------------------------------
# two_io: several inputs and outputs, addressed by name
# --------------------------------------------------------------------------------------------

def two_io_inputs(rng, rows: int = 1) -> dict[str, np.ndarray]:
    return {"a": rng.standard_normal((rows, 8)).astype(np.float32),
            "b": rng.standard_normal((rows, 4)).astype(np.float32)}


def test_two_io_inputs_by_name_or_in_model_order_outputs_by_name(two_io, make_run):
    rng = np.random.default_rng(110)
    x = two_io_inputs(rng)
    a, b = x["a"], x["b"]
    expected = two_io.oracle(x)
    assert list(expected) == ["prod", "sum"]
    # Each output depends on both inputs, so a mix-up could not pass.
    assert max_abs_diff(two_io.oracle({"a": a, "b": 2 * b})["prod"], expected["prod"]) > 0.1

    run = make_run(two_io.model, {"b": b, "a": a})
    forms = {
        "dict, reversed order": {"b": b, "a": a},
        "dict, model order": {"a": a, "b": b},
        "list in model order": [a, b],
        "tuple in model order": (a, b),
    }
    for frame_id, inputs in enumerate(forms.values()):
        run.push(inputs, frame_id=frame_id)
    for frame_id, form in enumerate(forms):
        sample = run.pull(timeout_ms=10_000)
        assert sample.frame_id == frame_id
        assert_outputs_match(sample, expected, FLOAT_ATOL, form)
        # By position, the outputs are in the model's declared order.
        assert_matches(sample[0], expected["prod"], atol=FLOAT_ATOL, what=f"{form}, [0]")
        assert_matches(sample[1], expected["sum"], atol=FLOAT_ATOL, what=f"{form}, [1]")

    for form, inputs in forms.items():
        assert_outputs_match(two_io.model.run(inputs), expected, FLOAT_ATOL, f"Model.run {form}")

    # A list is positional: the wrong order is a shape mismatch, not silently re-sorted.
    with pytest.raises(rf.ShapeError):
        run.push([b, a])


def test_two_io_batching_keeps_order_with_mixed_row_counts(two_io, make_run, spawn):
    rng = np.random.default_rng(111)
    rows = [1, 1, 1, 2, 2, 3, 1, 2, 1, 1, 1, 1, 3, 3] * 10
    inputs = [two_io_inputs(rng, r) for r in rows]
    run = make_run(two_io.model, inputs[0], max_batch=4, max_delay_us=2000)
    stream(run, inputs, two_io.oracle, spawn)
    check_batch_accounting(run.stats(), len(inputs), 4)


# --------------------------------------------------------------------------------------------
# RunOptions.max_shape
# --------------------------------------------------------------------------------------------

def test_max_shape_bounds_each_push(encoder, make_run):
    rng = np.random.default_rng(120)
    run = make_run(encoder.model, encoder_inputs(rng, 8),
                   max_shape={"input_ids": (1, 32), "attention_mask": (1, 32)})
    too_long = encoder_inputs(rng, 33)
    two_rows = encoder_inputs(rng, 16, batch=2)
    for call in (run.push, run.try_push, run.check):
        with pytest.raises(rf.ShapeError, match="32"):  # the message names the bound
            call(too_long)
        with pytest.raises(rf.ShapeError):  # the batch dimension is bounded to 1 here
            call(two_rows)

    at_bound = encoder_inputs(rng, 32)
    run.check(at_bound)
    run.push(at_bound, frame_id=1)
    sample = run.pull(timeout_ms=10_000)
    assert sample.frame_id == 1 and sample.input_seq == 0  # nothing refused was enqueued
    assert_outputs_match(sample, encoder.oracle(at_bound), FLOAT_ATOL, "seq 32")

    # max_shape belongs to the Run; the Model itself still takes the longer sequence.
    assert_outputs_match(encoder.model.run(too_long), encoder.oracle(too_long), FLOAT_ATOL,
                         "Model.run seq 33")


@pytest.mark.parametrize("unbounded", [-1, None])
def test_max_shape_minus_one_or_none_leaves_a_dimension_unbounded(encoder, make_run, unbounded):
    rng = np.random.default_rng(121)
    run = make_run(encoder.model, encoder_inputs(rng, 8),
                   max_shape={"input_ids": (unbounded, 20), "attention_mask": (unbounded, 20)})
    x = encoder_inputs(rng, 20, batch=5)
    assert_outputs_match(run.run(x), encoder.oracle(x), FLOAT_ATOL, "5 rows of 20")
    with pytest.raises(rf.ShapeError, match="20"):
        run.push(encoder_inputs(rng, 21, batch=5))


@pytest.mark.parametrize("max_shape, named", [
    ({"input_ids": (32,)}, "input_ids"),                        # rank 1 for a rank-2 input
    ({"input_ids": (1, 32, 4)}, "input_ids"),                   # rank 3
    ({"token_ids": (1, 32)}, "token_ids"),                      # no such input
    ({"input_ids": (1, 32), "attention_mask": (1, 32), "mask": (1, 32)}, "mask"),
], ids=["rank 1", "rank 3", "unknown name", "unknown name among valid ones"])
def test_invalid_max_shape_is_refused_at_build(encoder, max_shape, named):
    seed = encoder_inputs(np.random.default_rng(122), 8)
    with pytest.raises(rf.ShapeError) as raised:
        build_run(encoder.model, seed, max_shape=max_shape)
    assert named in str(raised.value), str(raised.value)


# --------------------------------------------------------------------------------------------
# What stays checked: fixed dimensions, rank, dtype, empty dimensions
# --------------------------------------------------------------------------------------------

# The model's shape [1, 3, height, width], however the message spells the free dimensions.
FCN_EXPECTED = r"\[1, 3, (\?|-1|None|height), (\?|-1|None|width)\]"

FCN_BAD_INPUTS = {
    "4 channels": ((1, 4, 17, 23), ["[1, 4, 17, 23]"]),
    "batch 2 where the model fixes 1": ((2, 3, 17, 23), ["[2, 3, 17, 23]"]),
    "rank 3": ((3, 17, 23), ["[3, 17, 23]", "rank"]),
}


@pytest.mark.parametrize("case", list(FCN_BAD_INPUTS), ids=list(FCN_BAD_INPUTS))
def test_fixed_dimensions_of_a_dynamic_model_are_still_checked(fcn, make_run, case):
    shape, fragments = FCN_BAD_INPUTS[case]
    bad = np.zeros(shape, np.float32)
    good = np.random.default_rng(130).standard_normal((1, 3, 17, 23)).astype(np.float32)
    run = make_run(fcn.model, good)
    for call in (run.push, run.try_push, run.check, fcn.model.run):
        with pytest.raises(rf.ShapeError, match=FCN_EXPECTED) as raised:
            call(bad)
        for fragment in fragments:
            assert fragment in str(raised.value), str(raised.value)
    # The Run stays usable and nothing was enqueued.
    run.push(good, frame_id=5)
    sample = run.pull(timeout_ms=10_000)
    assert (sample.input_seq, sample.frame_id) == (0, 5)
    assert_outputs_match(sample, fcn.oracle(good), FLOAT_ATOL, "after the refusals")


def test_wrong_dtype_in_one_of_two_inputs_raises_dtype_error(encoder, make_run):
    rng = np.random.default_rng(131)
    x = encoder_inputs(rng, 8)
    run = make_run(encoder.model, x)
    bad = dict(x, attention_mask=x["attention_mask"].astype(np.int32))
    for call in (run.push, run.try_push, run.check, encoder.model.run):
        with pytest.raises(rf.DTypeError) as raised:
            call(bad)
        message = str(raised.value)
        assert "int32" in message and "int64" in message and "attention_mask" in message, message


@pytest.mark.parametrize("model_name, make_empty", [
    ("encoder", lambda: {"input_ids": np.zeros((1, 0), np.int64),
                         "attention_mask": np.zeros((1, 0), np.int64)}),
    ("encoder", lambda: {"input_ids": np.zeros((0, 8), np.int64),
                         "attention_mask": np.zeros((0, 8), np.int64)}),
    ("fcn", lambda: np.zeros((1, 3, 0, 5), np.float32)),
    ("nonzero", lambda: np.zeros(0, np.float32)),
], ids=["encoder seq 0", "encoder batch 0", "fcn height 0", "nonzero length 0"])
def test_a_dimension_of_size_zero_is_refused(dynamic_models, make_run, model_name, make_empty):
    case = dynamic_models[model_name]
    seeds = {"encoder": encoder_inputs(np.random.default_rng(132), 4),
             "fcn": np.ones((1, 3, 4, 4), np.float32),
             "nonzero": np.ones(4, np.float32)}
    run = make_run(case.model, seeds[model_name])
    for call in (run.push, run.try_push, run.check):
        with pytest.raises(rf.ShapeError, match="size 0"):
            call(make_empty())
    assert_outputs_match(run.run(seeds[model_name]), case.oracle(seeds[model_name]), FLOAT_ATOL,
                         "after the refusals")


# --------------------------------------------------------------------------------------------
# Frame preprocessing: frames of several sizes into one fixed-size model input
# --------------------------------------------------------------------------------------------

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
# As in test_preprocess.py: the engine folds /255, -mean, /std into one multiply-add.
PREPROCESS_ATOL = 1e-4


def imagenet_nchw(frame: np.ndarray) -> np.ndarray:
    """What preprocessing should feed the model for an RGB frame it does not resize."""
    normalized = (frame.astype(np.float32) / 255 - IMAGENET_MEAN) / IMAGENET_STD
    return normalized.transpose(2, 0, 1)[None].astype(np.float32)


@pytest.mark.parametrize("max_batch", [1, 4])
def test_preprocessed_frames_of_several_sizes_equal_model_run(dynamic_models, make_run,
                                                              max_batch):
    cnn = dynamic_models["small_cnn"]
    model = rf.Model(str(cnn.path), rf.Model.Options(
        preprocess=rf.PreprocessOptions.imagenet(CNN_SIZE, CNN_SIZE)))
    rng = np.random.default_rng(140)
    # Full size, then smaller frames (resized by the engine), up to the input_max bounds.
    sizes = [(CNN_SIZE, CNN_SIZE), (20, 27), (9, CNN_SIZE), (CNN_SIZE, 5)] * 2
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]

    # Anchor Model.run itself to onnxruntime on a frame that needs no resizing.
    reference = cnn.oracle(imagenet_nchw(frames[0]))
    assert_matches(model.run(frames[0])["logits"], reference["logits"], atol=PREPROCESS_ATOL,
                   what="Model.run vs onnxruntime")

    expected = [model.run(frame)["logits"].copy() for frame in frames]
    assert max_abs_diff(expected[0], expected[1]) > 100 * PREPROCESS_ATOL  # frames tell apart
    run = make_run(model, frames[0], max_batch=max_batch, max_delay_us=2000)
    push_all(run, frames)
    pulled = [(s.frame_id, s["logits"].copy()) for s in pull_until_closed(run)]
    assert [fid for fid, _ in pulled] == [frame_id_for(i) for i in range(len(frames))]
    for i, (_, logits) in enumerate(pulled):
        assert_matches(logits, expected[i], atol=PREPROCESS_ATOL, what=f"frame {i} {sizes[i]}")


def test_preprocessed_frames_keep_their_own_size_in_a_fully_convolutional_model(fcn, make_run):
    """A model whose height and width are dynamic takes each frame at its own size (nothing to
    resize to), as Model.run does: the heatmap has the frame's height and width."""
    model = rf.Model(str(fcn.path), rf.Model.Options(
        preprocess=rf.PreprocessOptions.imagenet(64, 64)))
    rng = np.random.default_rng(141)
    sizes = [(17, 23), (64, 64), (5, 40), (64, 1), (17, 23)]
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    run = make_run(model, frames[1])
    push_all(run, frames)
    pulled = 0
    for i, sample in enumerate(pull_until_closed(run)):
        assert sample.frame_id == frame_id_for(i)
        expected = fcn.oracle(imagenet_nchw(frames[i]))["heatmap"]
        assert expected.shape == (1, 4) + sizes[i]
        assert_matches(sample["heatmap"], expected, atol=PREPROCESS_ATOL, what=f"frame {sizes[i]}")
        pulled += 1
    assert pulled == len(frames)


def test_max_batch_is_refused_when_output_rows_depend_on_the_data(tmp_path, make_run):
    """An output whose first dimension is not the inputs' batch dimension (here: the positive
    entries' coordinates, [K, 2]) cannot be split by sample, so batching it would hand samples
    each other's rows. build() refuses it; unbatched, each sample's rows match the oracle."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("z", TensorProto.FLOAT, [], [0.0])),
         helper.make_node("Greater", ["x", "zero"], ["positive"]),
         helper.make_node("NonZero", ["positive"], ["where"]),
         helper.make_node("Transpose", ["where"], ["coords"], perm=[1, 0])],
        "coords", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("coords", TensorProto.INT64, ["hits", 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = tmp_path / "coords.onnx"
    onnx.save(model, str(path))
    rf_model = rf.Model(str(path))
    x = np.array([[1, -1, 2, -2]], np.float32)
    with pytest.raises(rf.ShapeError, match="cannot be split by sample"):
        build_run(rf_model, x, max_batch=4)

    import onnxruntime as ort
    oracle = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    run = make_run(rf_model, x)
    inputs = [np.array([[1, -1, 2, -2]], np.float32), np.array([[-1, -1, -1, -1]], np.float32),
              np.array([[3, 3, 3, 3], [0, 1, 0, 1]], np.float32)]
    for i, xi in enumerate(inputs):
        run.push(xi, frame_id=i)
    run.close_input()
    for i, sample in enumerate(pull_until_closed(run)):
        np.testing.assert_array_equal(sample["coords"], oracle.run(None, {"x": inputs[i]})[0])

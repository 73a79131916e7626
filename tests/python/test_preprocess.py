"""Frame preprocessing: HWC uint8 frames in, the model's normalized NCHW float32 input computed by
the engine, checked against the same preprocessing done in numpy (and OpenCV for resizing) and fed
to the onnxruntime oracle."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import ringflow as rf
from helpers import assert_matches, max_abs_diff

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
SIZE = 224  # resnet50's fixed input height and width

# Preprocessing reorders the arithmetic (the engine folds /255, -mean and /std into one multiply-
# add), so the float32 model input differs from numpy's in the last bits; through resnet50 that
# measured ~6e-6 on logits of magnitude ~5. 1e-4 leaves a wide margin.
PREPROCESS_ATOL = 1e-4


def preprocess_options(input_format=rf.ColorFormat.RGB, resize=True) -> rf.PreprocessOptions:
    return rf.PreprocessOptions(
        input_format=input_format, input_max_width=SIZE, input_max_height=SIZE,
        input_max_depth=3, mean=MEAN.tolist(), stddev=STD.tolist(), resize=resize)


def normalized_nchw(frame_rgb: np.ndarray) -> np.ndarray:
    """What the model should be fed for an RGB frame of the model's size, computed in numpy."""
    scaled = frame_rgb.astype(np.float32) / np.float32(255)
    return ((scaled - MEAN) / STD).transpose(2, 0, 1)[None].astype(np.float32)


def random_frame(seed: int, height: int = SIZE, width: int = SIZE) -> np.ndarray:
    return np.random.default_rng([7, seed]).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def rgb_model(resnet50_path):
    return rf.Model(str(resnet50_path), rf.Model.Options(preprocess=preprocess_options()))


@pytest.fixture(scope="module")
def bgr_model(resnet50_path):
    return rf.Model(str(resnet50_path),
                    rf.Model.Options(preprocess=preprocess_options(rf.ColorFormat.BGR)))


def test_run_with_preprocess_accepts_frames_of_any_size_up_to_the_limits(rgb_model, make_run):
    run = make_run(rgb_model, random_frame(0))
    (spec,) = run.input_specs()
    assert spec.dtype == np.uint8 and spec.shape == (None, None, 3)


def test_full_size_frame_matches_numpy_normalization(rgb_model, resnet50, make_run):
    frames = [random_frame(seed) for seed in range(3)]
    expected = [resnet50.oracle(normalized_nchw(frame)) for frame in frames]
    run = make_run(rgb_model, frames[0])
    for frame_id, frame in enumerate(frames):
        run.push(frame, frame_id=frame_id)
    for frame_id in range(len(frames)):
        sample = run.pull(timeout_ms=60_000)
        assert sample.frame_id == frame_id
        assert_matches(sample["logits"], expected[frame_id], atol=PREPROCESS_ATOL,
                       what=f"frame {frame_id}")
    assert_matches(rgb_model.run(frames[0])[0], expected[0], atol=PREPROCESS_ATOL,
                   what="Model.run")
    # Different frames give clearly different logits, so a mixed-up frame could not pass.
    assert max_abs_diff(expected[0], expected[1]) > 100 * PREPROCESS_ATOL


def test_bgr_input_format_swaps_channels_back(rgb_model, bgr_model, resnet50, make_run):
    frame_rgb = random_frame(10)
    frame_bgr = np.ascontiguousarray(frame_rgb[..., ::-1])
    expected = resnet50.oracle(normalized_nchw(frame_rgb))

    run = make_run(bgr_model, frame_bgr)
    run.push(frame_bgr)
    assert_matches(run.pull(timeout_ms=60_000)[0], expected, atol=PREPROCESS_ATOL, what="Run")
    assert_matches(bgr_model.run(frame_bgr)[0], expected, atol=PREPROCESS_ATOL, what="Model.run")
    # The channel order matters to this model, so ignoring input_format could not pass.
    assert max_abs_diff(resnet50.oracle(normalized_nchw(frame_bgr)), expected) > \
        100 * PREPROCESS_ATOL


def test_imagenet_preset_matches_the_explicit_options():
    preset = rf.PreprocessOptions.imagenet(SIZE, SIZE)
    explicit = preprocess_options()
    for field in ("input_format", "model_format", "input_max_width", "input_max_height",
                  "input_max_depth", "resize"):
        assert getattr(preset, field) == getattr(explicit, field), field
    assert preset.normalize.mean == pytest.approx(MEAN.tolist())
    assert preset.normalize.stddev == pytest.approx(STD.tolist())


# --------------------------------------------------------------------------------------------
# Resizing smaller frames
# --------------------------------------------------------------------------------------------

# Height and width scale differently, so swapped axes or a wrong scale would show.
SMALL_HEIGHT, SMALL_WIDTH = 180, 200

# cv2.resize on uint8 uses 11-bit fixed-point weights and rounds each output pixel back to uint8
# (up to 0.5/255 per pixel); the engine interpolates in float. Measured through resnet50: at most
# ~0.011 on logits of magnitude ~2. 5e-2 gives ~4x margin while staying far below what a different
# interpolation produces (INTER_AREA ~0.7, INTER_NEAREST ~4, asserted below).
OPENCV_UINT8_ATOL = 5e-2


def resized_by_opencv(frame: np.ndarray, as_float: bool) -> np.ndarray:
    source = frame.astype(np.float32) if as_float else frame
    return cv2.resize(source, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)


def test_smaller_frame_is_resized_like_opencv_inter_linear(rgb_model, resnet50, make_run):
    frame = random_frame(20, SMALL_HEIGHT, SMALL_WIDTH)
    run = make_run(rgb_model, random_frame(0))
    run.push(frame)
    logits = run.pull(timeout_ms=60_000)["logits"].copy()
    assert_matches(rgb_model.run(frame)[0], logits, atol=PREPROCESS_ATOL, what="Model.run")

    # Exact reference: OpenCV's INTER_LINEAR on float32 pixels is plain float bilinear with the
    # same pixel-centre convention the engine documents (measured diff ~1.2e-5).
    float_reference = resnet50.oracle(normalized_nchw(resized_by_opencv(frame, as_float=True)))
    assert_matches(logits, float_reference, atol=PREPROCESS_ATOL, what="vs float cv2.resize")

    # What a user would typically compare with: cv2.resize on the uint8 frame.
    uint8_reference = resnet50.oracle(normalized_nchw(resized_by_opencv(frame, as_float=False)))
    assert_matches(logits, uint8_reference, atol=OPENCV_UINT8_ATOL, what="vs uint8 cv2.resize")
    assert np.argmax(logits) == np.argmax(uint8_reference) == np.argmax(float_reference)

    # The tolerance is tight enough to tell bilinear from other interpolations.
    for other in (cv2.INTER_NEAREST, cv2.INTER_AREA):
        resized = cv2.resize(frame, (SIZE, SIZE), interpolation=other)
        assert max_abs_diff(logits, resnet50.oracle(normalized_nchw(resized))) > \
            5 * OPENCV_UINT8_ATOL


def test_smaller_frame_with_resize_off_is_rejected(resnet50_path):
    model = rf.Model(str(resnet50_path),
                     rf.Model.Options(preprocess=preprocess_options(resize=False)))
    with pytest.raises(rf.ShapeError, match="resize"):
        model.run(random_frame(0, SMALL_HEIGHT, SMALL_WIDTH))


# --------------------------------------------------------------------------------------------
# Frames the options do not admit
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(300, 300, 3), (SIZE + 1, SIZE, 3), (SIZE, SIZE + 1, 3),
                                   (SIZE, SIZE, 4), (SIZE, SIZE, 1), (SIZE, SIZE)],
                         ids=["300x300", "one row too many", "one column too many",
                              "4 channels", "1 channel", "rank 2"])
def test_frame_outside_the_limits_raises_shape_error(rgb_model, resnet50, make_run, shape):
    frame = np.zeros(shape, np.uint8)
    run = make_run(rgb_model, random_frame(0))
    actual = "[" + ", ".join(map(str, shape)) + "]"
    for call in (run.push, run.try_push, rgb_model.run):
        with pytest.raises(rf.ShapeError) as raised:
            call(frame)
        message = str(raised.value)
        assert actual in message and f"<= {SIZE}" in message, message
    # The Run stays usable.
    good = random_frame(1)
    run.push(good)
    assert_matches(run.pull(timeout_ms=60_000)[0], resnet50.oracle(normalized_nchw(good)),
                   atol=PREPROCESS_ATOL)


@pytest.mark.parametrize("frame", [
    np.zeros((SIZE, SIZE, 3), np.float32),     # a float frame
    np.zeros((1, 3, SIZE, SIZE), np.float32),  # the model's own input, preprocessing bypassed
    np.zeros((SIZE, SIZE, 3), np.int8),
], ids=["float32 HWC", "float32 NCHW", "int8 HWC"])
def test_non_uint8_frame_raises_dtype_error(rgb_model, make_run, frame):
    run = make_run(rgb_model, random_frame(0))
    for call in (run.push, run.try_push, rgb_model.run):
        with pytest.raises(rf.DTypeError) as raised:
            call(frame)
        assert str(frame.dtype) in str(raised.value) and "uint8" in str(raised.value)


def test_build_rejects_an_oversize_seed_frame(rgb_model):
    graph = rf.Graph()
    graph.add(rgb_model.graph(rf.Model.RouteOptions(include_input=True, include_output=True)))
    with pytest.raises(rf.ShapeError):
        graph.build(np.zeros((300, 300, 3), np.uint8))

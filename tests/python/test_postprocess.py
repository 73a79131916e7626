"""rf.TopK and rf.DetectionOutput against NumPy references written from the contract in
cpp/include/ringflow/postprocess.hpp (plain loops, no shared code with the C++ stages).

The stages are called directly (``stage(inputs)`` runs the stage's function on this thread), on
hand-made cases whose answers are written out, and on a few hundred seeded random cases each: ties
made by rounding, NaNs, empty results, boxes that all overlap, raw boxes and scores with a
background class. One test runs TopK behind a model in a Run.

What must agree exactly: indices, labels, image ids, boxes, the order of detections and, without
softmax, the scores. Softmax probabilities are compared to float rounding (SOFTMAX_RTOL): the
reference's float32 exp and sum are not the C++ ones. Random softmax logits lie on a 0.01 grid, so
two classes either tie exactly or differ far beyond that rounding, and both sides rank them alike.

IoU is evaluated here with the same double-precision expression as the contract gives, so
thresholds that an IoU can hit exactly (0.5) are decided alike on both sides.
"""

from __future__ import annotations

import collections
import math
import re
from typing import Any, Sequence

import numpy as np
import pytest

import ringflow as rf

SOFTMAX_RTOL = 1e-5
SOFTMAX_ATOL = 1e-7
RANDOM_CASES = 400

# ------------------------------------------------------------------------------------------------
# References
# ------------------------------------------------------------------------------------------------


def reference_softmax(row: np.ndarray) -> np.ndarray:
    """float32 softmax with the row's maximum subtracted first; a NaN or +inf makes it all NaN."""
    row = np.asarray(row, dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.exp(row - np.max(row))
        return (e / np.sum(e, dtype=np.float32)).astype(np.float32)


def rank_key(value: float, index: int) -> tuple:
    """Best first: numbers before NaN, larger before smaller, then the lower index."""
    if math.isnan(value):
        return (1, 0.0, index)
    return (0, -value, index)


def reference_topk(x: np.ndarray, k: int, softmax: bool = False) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float32)
    assert x.ndim in (1, 2)
    rows = x.reshape(1, -1) if x.ndim == 1 else x
    n, classes = rows.shape
    kept = min(k, classes)
    indices = np.zeros((n, kept), dtype=np.int64)
    scores = np.zeros((n, kept), dtype=np.float32)
    for r in range(n):
        values = reference_softmax(rows[r]) if softmax else rows[r]
        order = sorted(range(classes), key=lambda i: rank_key(float(values[i]), i))[:kept]
        indices[r] = order
        scores[r] = values[order]
    if x.ndim == 1:
        return indices[0], scores[0]
    return indices, scores


def reference_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union in double; a box without positive width and height overlaps
    nothing. Python floats are doubles, evaluated in the order the contract writes."""
    ax0, ay0, ax1, ay1 = (float(v) for v in a)
    bx0, by0, bx1, by1 = (float(v) for v in b)
    aw, ah = ax1 - ax0, ay1 - ay0
    bw, bh = bx1 - bx0, by1 - by0
    if not (aw > 0 and ah > 0 and bw > 0 and bh > 0):
        return 0.0
    w = min(ax1, bx1) - max(ax0, bx0)
    h = min(ay1, by1) - max(ay0, by0)
    if not (w > 0 and h > 0):
        return 0.0
    inter = w * h
    return inter / (aw * ah + bw * bh - inter)


def reference_detection_output(score_threshold: float, iou_threshold: float, top_k: int, *,
                               ssd: np.ndarray | None = None, boxes: np.ndarray | None = None,
                               scores: np.ndarray | None = None,
                               background_label: int = -1) -> np.ndarray:
    """The [M, 7] detections for SSD rows (`ssd`) or raw `boxes` and `scores`."""
    threshold = np.float32(score_threshold)
    iou_limit = float(np.float32(iou_threshold))  # the stage holds it as a float
    # (image_id, label, score, row, box)
    candidates: list[tuple[float, float, float, int, np.ndarray]] = []
    if ssd is not None:
        rows = np.asarray(ssd, dtype=np.float32).reshape(-1, 7)
        for r, row in enumerate(rows):
            image_id, label = float(row[0]), float(row[1])
            if math.isnan(image_id) or math.isnan(label) or not row[2] > threshold:
                continue
            candidates.append((image_id, label, float(row[2]), r, row[3:7]))
    else:
        b = np.asarray(boxes, dtype=np.float32)
        s = np.asarray(scores, dtype=np.float32)
        b = b.reshape(b.shape[-2], 4)
        s = s.reshape(s.shape[-2], s.shape[-1])
        for r in range(s.shape[0]):
            for c in range(s.shape[1]):
                if c != background_label and s[r, c] > threshold:
                    candidates.append((0.0, float(c), float(s[r, c]), r, b[r]))

    groups: dict[tuple[float, float], list] = collections.defaultdict(list)
    for candidate in candidates:
        groups[(candidate[0], candidate[1])].append(candidate)
    kept = []
    for group in groups.values():
        group.sort(key=lambda c: (-c[2], c[3]))
        survivors: list = []
        for candidate in group:
            if not any(reference_iou(s[4], candidate[4]) > iou_limit for s in survivors):
                survivors.append(candidate)
        kept.extend(survivors)
    kept.sort(key=lambda c: (-c[2], c[3], c[1]))
    kept = kept[:top_k]

    out = np.zeros((len(kept), 7), dtype=np.float32)
    for i, (image_id, label, score, _, box) in enumerate(kept):
        out[i, :3] = (image_id, label, score)
        out[i, 3:] = box
    return out


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------


def f32(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def topk_of(stage: rf.Stage, inputs: Any) -> tuple[np.ndarray, np.ndarray, list[str]]:
    sample = stage(inputs)
    indices, scores = np.asarray(sample["topk_indices"]), np.asarray(sample["topk_scores"])
    assert indices.dtype == np.int64
    assert scores.dtype == np.float32
    return indices, scores, list(sample.names)


def detections_of(stage: rf.Stage, inputs: Any) -> tuple[np.ndarray, list[str]]:
    sample = stage(inputs)
    detections = np.asarray(sample["detections"])
    assert detections.dtype == np.float32
    assert detections.ndim == 2 and detections.shape[1] == 7
    return detections, list(sample.names)


def assert_topk_equal(indices, scores, expected, softmax: bool, context: str = "") -> None:
    expected_indices, expected_scores = expected
    np.testing.assert_array_equal(indices, expected_indices, err_msg=context)
    if softmax:
        np.testing.assert_allclose(scores, expected_scores, rtol=SOFTMAX_RTOL, atol=SOFTMAX_ATOL,
                                   err_msg=context)
    else:
        np.testing.assert_array_equal(scores, expected_scores, err_msg=context)


def ssd_rows(*rows: Sequence[float]) -> np.ndarray:
    return f32(rows).reshape(-1, 7)


NAN = float("nan")
INF = float("inf")

# ------------------------------------------------------------------------------------------------
# TopK: hand cases (each answer checked against the reference too)
# ------------------------------------------------------------------------------------------------

TOPK_CASES = [
    # (name, input, k, softmax, expected indices)
    ("ties_go_to_the_lower_index", f32([1, 3, 0, 3, 2, 3]), 3, False, [1, 3, 5]),
    ("negative_zero_ties_with_zero", f32([-1.0, -0.0, 0.0]), 2, False, [1, 2]),
    ("k_above_C_gives_C", f32([[0.5, 2, 1], [7, 7, -1]]), 10, False, [[1, 2, 0], [0, 1, 2]]),
    ("each_row_on_its_own", f32([[1, 2], [4, 3], [5, 5]]), 1, False, [[1], [0], [0]]),
    ("nan_ranks_below_every_number", f32([NAN, -INF, NAN, 1]), 4, False, [3, 1, 0, 2]),
    ("softmax_order", f32([1, 2, 3, 0]), 4, True, [2, 1, 0, 3]),
    ("softmax_huge_logits", f32([1000, 999, -1000]), 2, True, [0, 1]),
    # exp() underflows to 0 for the last three: equal probabilities, so index order.
    ("softmax_underflow_ties", f32([0, -300, -200, -250]), 4, True, [0, 1, 2, 3]),
    ("softmax_nan_row_is_all_nan", f32([[1, NAN, 2], [1, 2, 3]]), 2, True, [[0, 1], [2, 1]]),
]


@pytest.mark.parametrize("name,x,k,softmax,expected", TOPK_CASES, ids=[c[0] for c in TOPK_CASES])
def test_topk_hand_cases(name, x, k, softmax, expected):
    reference = reference_topk(x, k, softmax)
    np.testing.assert_array_equal(reference[0], expected)
    indices, scores, names = topk_of(rf.TopK(k=k, softmax=softmax), x)
    assert names == ["topk_indices", "topk_scores"]
    assert indices.shape == scores.shape == np.asarray(expected).shape
    assert_topk_equal(indices, scores, reference, softmax)


def test_topk_softmax_probabilities_sum_to_one_over_the_whole_row():
    x = f32([[0.0, 0.0], [0.0, np.log(3.0)]])
    indices, scores, _ = topk_of(rf.TopK(1, softmax=True), x)
    np.testing.assert_array_equal(indices, [[0], [1]])
    np.testing.assert_allclose(scores, [[0.5], [0.75]], rtol=1e-6)
    _, all_scores, _ = topk_of(rf.TopK(10, softmax=True), f32(np.arange(10) / 3.0))
    assert abs(float(np.sum(all_scores, dtype=np.float64)) - 1.0) < 1e-6
    np.testing.assert_allclose(all_scores, np.sort(reference_softmax(np.arange(10) / 3.0))[::-1],
                               rtol=SOFTMAX_RTOL)


def test_topk_softmax_of_huge_logits_is_finite():
    _, scores, _ = topk_of(rf.TopK(2, softmax=True), f32([1000, 999, -1000]))
    np.testing.assert_allclose(scores, [0.7310586, 0.2689414], rtol=1e-6)


def test_topk_of_a_vector_and_of_a_one_row_matrix_differ_only_in_shape():
    logits = [0.1, 0.9, 0.4, 0.8, 0.2]
    vi, vs, _ = topk_of(rf.TopK(2), f32(logits))
    mi, ms, _ = topk_of(rf.TopK(2), f32([logits]))
    assert vi.shape == vs.shape == (2,)
    assert mi.shape == ms.shape == (1, 2)
    np.testing.assert_array_equal(mi[0], vi)
    np.testing.assert_array_equal(ms[0], vs)
    np.testing.assert_array_equal(vi, [1, 3])


def test_topk_replaces_its_named_input_and_keeps_the_others():
    stage = rf.TopK(k=1, input="logits")
    indices, _, names = topk_of(stage, {"features": f32([9, 8]), "logits": f32([1, 5, 2]),
                                        "extra": f32([4])})
    assert names == ["features", "extra", "topk_indices", "topk_scores"]
    np.testing.assert_array_equal(indices, [1])
    sample = stage({"features": f32([9, 8]), "logits": f32([1, 5, 2])})
    np.testing.assert_array_equal(sample["features"], [9, 8])


def test_topk_without_a_name_ranks_the_first_tensor():
    sample = rf.TopK(1)([f32([1, 2]), f32([4, 3])])
    assert list(sample.names)[-2:] == ["topk_indices", "topk_scores"]
    assert len(sample.names) == 3
    np.testing.assert_array_equal(sample["topk_indices"], [1])
    np.testing.assert_array_equal(sample[0], [4, 3])


def test_topk_of_zero_rows_is_empty():
    indices, scores, _ = topk_of(rf.TopK(2), np.zeros((0, 4), np.float32))
    assert indices.shape == scores.shape == (0, 2)


# ------------------------------------------------------------------------------------------------
# TopK: random cases
# ------------------------------------------------------------------------------------------------


def random_topk_case(seed: int) -> dict[str, Any]:
    rng = np.random.default_rng([2024, seed])
    classes = int(rng.integers(1, 41))
    shape = (classes,) if rng.random() < 0.3 else (int(rng.integers(1, 7)), classes)
    softmax = bool(rng.random() < 0.5)
    x = rng.standard_normal(shape) * rng.choice([0.5, 1.0, 5.0])
    if softmax or rng.random() < 0.5:
        # A coarse grid: many exact ties, and logits that differ do so by far more than rounding.
        x = np.round(x, 1 if rng.random() < 0.5 else 2)
    x = x.astype(np.float32)
    if rng.random() < 0.15:
        flat = x.reshape(-1)
        spots = rng.integers(0, flat.size, size=int(rng.integers(1, 4)))
        flat[spots] = rng.choice([NAN, INF, -INF], size=spots.size)
    k = int(rng.integers(1, classes + 6))
    return {"x": x, "k": k, "softmax": softmax, "style": int(rng.integers(0, 3))}


@pytest.mark.parametrize("block", range(4))
def test_topk_equals_the_reference_on_random_inputs(block):
    per_block = RANDOM_CASES // 4
    seen = collections.Counter()
    for seed in range(block * per_block, (block + 1) * per_block):
        case = random_topk_case(seed)
        x, k, softmax = case["x"], case["k"], case["softmax"]
        context = f"seed {seed}: k={k} softmax={softmax} x={x.tolist()}"
        if case["style"] == 0:
            indices, scores, names = topk_of(rf.TopK(k=k, softmax=softmax), x)
            assert names == ["topk_indices", "topk_scores"], context
        elif case["style"] == 1:
            indices, scores, names = topk_of(rf.TopK(k=k, softmax=softmax), [x, f32([1, 2])])
            assert names[-2:] == ["topk_indices", "topk_scores"] and len(names) == 3, context
        else:
            stage = rf.TopK(k=k, softmax=softmax, input="logits")
            indices, scores, names = topk_of(stage, {"other": f32([7]), "logits": x})
            assert names == ["other", "topk_indices", "topk_scores"], context
        expected = reference_topk(x, k, softmax)
        assert indices.shape == expected[0].shape, context
        assert_topk_equal(indices, scores, expected, softmax, context)
        rows = x.reshape(-1, x.shape[-1])
        seen["ties"] += any(len(set(r.tolist())) < r.size for r in rows)
        seen["k above C"] += k > x.shape[-1]
        seen["softmax"] += softmax
    # The generator must keep producing the cases this test is for.
    assert seen["ties"] >= 10 and seen["k above C"] >= 5 and seen["softmax"] >= 20, seen


# ------------------------------------------------------------------------------------------------
# TopK: errors
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs,text", [({"k": 0}, "k must be at least 1"),
                                         ({"k": 3, "threads": 0}, "threads must be at least 1")])
def test_topk_rejects_bad_options(kwargs, text):
    with pytest.raises(rf.Error, match=text):
        rf.TopK(**kwargs)


@pytest.mark.parametrize("x,got", [(np.zeros((1, 3), np.float64), "float64 [1, 3]"),
                                   (np.zeros(3, np.int32), "int32 [3]"),
                                   (np.zeros(3, np.int64), "int64 [3]")])
def test_topk_rejects_the_wrong_dtype_saying_what_it_got(x, got):
    with pytest.raises(rf.DTypeError, match=r"TopK: .*" + re.escape(got) + r".*expected float32"):
        rf.TopK(2)(x)


@pytest.mark.parametrize("shape", [(2, 3, 4), (), (3, 0)])
def test_topk_rejects_the_wrong_rank_saying_what_it_got(shape):
    with pytest.raises(rf.ShapeError, match=re.escape("float32 " + shape_text(shape))):
        rf.TopK(2)(np.zeros(shape, np.float32))


def test_topk_rejects_a_missing_input_naming_what_the_sample_has():
    with pytest.raises(rf.ShapeError, match=r"no tensor named 'logits'.*'probs' float32 \[2\]"):
        rf.TopK(1, input="logits")({"probs": f32([1, 2])})


def test_topk_errors_are_ringflow_errors():
    assert issubclass(rf.ShapeError, rf.Error)
    assert issubclass(rf.DTypeError, rf.Error)


def shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


# ------------------------------------------------------------------------------------------------
# DetectionOutput: hand cases (each answer checked against the reference too)
# ------------------------------------------------------------------------------------------------

SSD_CASES = [
    # (name, rows, (score_threshold, iou_threshold, top_k), expected rows)
    ("all_below_threshold", ssd_rows([0, 1, 0.5, 0, 0, 1, 1], [0, 1, 0.2, 0, 0, 1, 1],
                                     [0, 2, NAN, 0, 0, 1, 1]),
     (0.5, 0.45, 200), []),
    ("one_class_overlapping_keeps_the_best",
     ssd_rows([0, 3, 0.6, 0.00, 0.00, 1.00, 1.00], [0, 3, 0.9, 0.05, 0.00, 1.00, 1.00],
              [0, 3, 0.7, 0.00, 0.05, 1.00, 0.95], [0, 3, 0.8, 0.00, 0.00, 0.90, 1.00]),
     (0.1, 0.45, 200), [[0, 3, 0.9, 0.05, 0.00, 1.00, 1.00]]),
    ("two_classes_overlapping_are_both_kept",
     ssd_rows([0, 1, 0.6, 0, 0, 1, 1], [0, 2, 0.9, 0, 0, 1, 1], [0, 1, 0.7, 0, 0, 1, 1]),
     (0.1, 0.45, 200), [[0, 2, 0.9, 0, 0, 1, 1], [0, 1, 0.7, 0, 0, 1, 1]]),
    ("images_do_not_suppress_each_other",
     ssd_rows([1, 1, 0.6, 0, 0, 1, 1], [0, 1, 0.9, 0, 0, 1, 1]),
     (0.1, 0.45, 200), [[0, 1, 0.9, 0, 0, 1, 1], [1, 1, 0.6, 0, 0, 1, 1]]),
    ("iou_equal_to_the_threshold_is_kept",  # IoU 2 / 4 = 0.5 exactly
     ssd_rows([0, 1, 0.9, 0, 0, 2, 2], [0, 1, 0.8, 0, 0, 2, 1]),
     (0.1, 0.5, 200), [[0, 1, 0.9, 0, 0, 2, 2], [0, 1, 0.8, 0, 0, 2, 1]]),
    ("iou_above_the_threshold_is_dropped",
     ssd_rows([0, 1, 0.9, 0, 0, 2, 2], [0, 1, 0.8, 0, 0, 2, 1]),
     (0.1, 0.49, 200), [[0, 1, 0.9, 0, 0, 2, 2]]),
    ("iou_threshold_one_keeps_everything",
     ssd_rows([0, 1, 0.9, 0, 0, 1, 1], [0, 1, 0.8, 0, 0, 1, 1], [0, 1, 0.7, 0.99, 0.99, 2, 2]),
     (0.1, 1.0, 200),
     [[0, 1, 0.9, 0, 0, 1, 1], [0, 1, 0.8, 0, 0, 1, 1], [0, 1, 0.7, 0.99, 0.99, 2, 2]]),
    ("iou_threshold_zero_drops_any_overlap",
     ssd_rows([0, 1, 0.9, 0, 0, 1, 1], [0, 1, 0.8, 0, 0, 1, 1], [0, 1, 0.7, 0.99, 0.99, 2, 2]),
     (0.1, 0.0, 200), [[0, 1, 0.9, 0, 0, 1, 1]]),
    ("touching_boxes_do_not_overlap",
     ssd_rows([0, 1, 0.9, 0, 0, 1, 1], [0, 1, 0.8, 1, 0, 2, 1]),
     (0.1, 0.0, 200), [[0, 1, 0.9, 0, 0, 1, 1], [0, 1, 0.8, 1, 0, 2, 1]]),
    ("degenerate_boxes_overlap_nothing",
     ssd_rows([0, 1, 0.9, 0.5, 0.5, 0.5, 0.5], [0, 1, 0.8, 0.5, 0.5, 0.5, 0.5],
              [0, 1, 0.7, 0, 0, 1, 0], [0, 1, 0.6, 1, 1, 0, 0]),
     (0.1, 0.0, 200),
     [[0, 1, 0.9, 0.5, 0.5, 0.5, 0.5], [0, 1, 0.8, 0.5, 0.5, 0.5, 0.5], [0, 1, 0.7, 0, 0, 1, 0],
      [0, 1, 0.6, 1, 1, 0, 0]]),
    ("top_k_keeps_the_best",
     ssd_rows([0, 1, 0.3, 0, 0, 1, 1], [0, 2, 0.8, 0, 0, 1, 1], [0, 3, 0.5, 0, 0, 1, 1],
              [0, 1, 0.9, 2, 2, 3, 3]),
     (0.1, 0.45, 2), [[0, 1, 0.9, 2, 2, 3, 3], [0, 2, 0.8, 0, 0, 1, 1]]),
    ("equal_scores_keep_the_input_order",
     ssd_rows([0, 5, 0.5, 0, 0, 1, 1], [0, 1, 0.5, 2, 2, 3, 3], [0, 1, 0.5, 0, 0, 1, 1]),
     (0.1, 0.45, 200),
     [[0, 5, 0.5, 0, 0, 1, 1], [0, 1, 0.5, 2, 2, 3, 3], [0, 1, 0.5, 0, 0, 1, 1]]),
    ("equal_scores_earlier_box_wins_suppression",
     ssd_rows([0, 1, 0.5, 0, 0, 1, 1], [0, 1, 0.5, 0, 0, 1, 1.01]),
     (0.1, 0.45, 200), [[0, 1, 0.5, 0, 0, 1, 1]]),
    ("nan_label_or_image_is_skipped",
     ssd_rows([0, NAN, 0.9, 0, 0, 1, 1], [NAN, 1, 0.9, 0, 0, 1, 1], [0, 1, 0.8, 0, 0, 1, 1]),
     (0.1, 0.45, 200), [[0, 1, 0.8, 0, 0, 1, 1]]),
]


@pytest.mark.parametrize("name,rows,options,expected", SSD_CASES, ids=[c[0] for c in SSD_CASES])
@pytest.mark.parametrize("layout", ["N7", "11N7"])
def test_detection_output_ssd_hand_cases(name, rows, options, expected, layout):
    expected = f32(expected).reshape(-1, 7)
    score_threshold, iou_threshold, top_k = options
    reference = reference_detection_output(score_threshold, iou_threshold, top_k, ssd=rows)
    np.testing.assert_array_equal(reference, expected)
    x = rows if layout == "N7" else rows.reshape(1, 1, -1, 7)
    stage = rf.DetectionOutput(score_threshold=score_threshold, iou_threshold=iou_threshold,
                               top_k=top_k)
    detections, names = detections_of(stage, x)
    assert names == ["detections"]
    np.testing.assert_array_equal(detections, expected)


RAW_CASES = [
    # (name, boxes, scores, (score_threshold, iou_threshold, top_k, background_label), expected)
    ("suppressed_per_class",
     [[0, 0, 1, 1], [0, 0, 1, 0.9], [5, 5, 6, 6]],
     [[0.1, 0.9, 0.4], [0.2, 0.8, 0.6], [0.95, 0.0, 0.35]],
     (0.3, 0.5, 200, -1),
     [[0, 0, 0.95, 5, 5, 6, 6], [0, 1, 0.9, 0, 0, 1, 1], [0, 2, 0.6, 0, 0, 1, 0.9],
      [0, 2, 0.35, 5, 5, 6, 6]]),
    ("background_label_is_skipped",
     [[0, 0, 1, 1], [2, 2, 3, 3]], [[0.9, 0.4], [0.8, 0.2]],
     (0.3, 0.5, 200, 0), [[0, 1, 0.4, 0, 0, 1, 1]]),
    ("equal_scores_of_one_box_go_to_the_lower_label",
     [[0, 0, 1, 1], [2, 2, 3, 3]], [[0.5, 0.7, 0.7], [0.7, 0.7, 0.0]],
     (0.1, 0.5, 200, -1),
     [[0, 1, 0.7, 0, 0, 1, 1], [0, 2, 0.7, 0, 0, 1, 1], [0, 0, 0.7, 2, 2, 3, 3],
      [0, 1, 0.7, 2, 2, 3, 3], [0, 0, 0.5, 0, 0, 1, 1]]),
    ("top_k_truncates_across_classes",
     [[0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 5, 5]], [[0.2, 0.3], [0.9, 0.4], [0.5, 0.6]],
     (0.1, 0.5, 3, -1),
     [[0, 0, 0.9, 2, 2, 3, 3], [0, 1, 0.6, 4, 4, 5, 5], [0, 0, 0.5, 4, 4, 5, 5]]),
    ("all_below_threshold",
     [[0, 0, 1, 1], [2, 2, 3, 3]], [[0.5, 0.1], [NAN, 0.0]],
     (0.5, 0.5, 200, -1), []),
    ("all_overlapping_only_the_best_per_class",
     [[0, 0, 1, 1], [0.01, 0, 1, 1], [0, 0.01, 1, 1], [0, 0, 0.99, 1]],
     [[0.6, 0.1], [0.7, 0.9], [0.8, 0.2], [0.65, 0.95]],
     (0.15, 0.45, 200, -1),
     [[0, 1, 0.95, 0, 0, 0.99, 1], [0, 0, 0.8, 0, 0.01, 1, 1]]),
]


@pytest.mark.parametrize("name,boxes,scores,options,expected", RAW_CASES,
                         ids=[c[0] for c in RAW_CASES])
@pytest.mark.parametrize("leading_one", [False, True])
def test_detection_output_raw_hand_cases(name, boxes, scores, options, expected, leading_one):
    boxes, scores, expected = f32(boxes), f32(scores), f32(expected).reshape(-1, 7)
    score_threshold, iou_threshold, top_k, background_label = options
    reference = reference_detection_output(score_threshold, iou_threshold, top_k, boxes=boxes,
                                           scores=scores, background_label=background_label)
    np.testing.assert_array_equal(reference, expected)
    if leading_one:
        boxes, scores = boxes[None], scores[None]
    stage = rf.DetectionOutput(score_threshold=score_threshold, iou_threshold=iou_threshold,
                               top_k=top_k, boxes="b", scores="s",
                               background_label=background_label)
    # Scores before boxes, and a tensor the stage does not read: it stays, the inputs go.
    detections, names = detections_of(stage, {"s": scores, "keep": f32([7]), "b": boxes})
    assert names == ["keep", "detections"]
    np.testing.assert_array_equal(detections, expected)


def test_detection_output_finds_ssd_rows_by_last_dimension_or_name():
    detections, names = detections_of(rf.DetectionOutput(), {
        "boxes": f32([[0, 0, 1, 1]]), "out": ssd_rows([0, 1, 0.9, 0, 0, 1, 1])})
    assert names == ["boxes", "detections"]
    np.testing.assert_array_equal(detections, ssd_rows([0, 1, 0.9, 0, 0, 1, 1]))

    detections, names = detections_of(rf.DetectionOutput(detections="second"), {
        "first": ssd_rows([0, 1, 0.9, 0, 0, 1, 1]), "second": ssd_rows([0, 2, 0.8, 0, 0, 1, 1])})
    assert names == ["first", "detections"]
    np.testing.assert_array_equal(detections, ssd_rows([0, 2, 0.8, 0, 0, 1, 1]))


def test_detection_output_of_zero_rows_is_empty():
    detections, _ = detections_of(rf.DetectionOutput(), np.zeros((0, 7), np.float32))
    assert detections.shape == (0, 7)


# ------------------------------------------------------------------------------------------------
# DetectionOutput: random cases
# ------------------------------------------------------------------------------------------------

SCORE_THRESHOLDS = [0.0, 0.2, 0.5, 0.95]
# IoU thresholds an IoU of grid coordinates cannot hit exactly; 0.5 and 1.0 are exercised by the
# hand cases, where every value is exact.
IOU_THRESHOLDS = [0.0, 0.3, 0.45, 0.6, 0.7]
TOP_KS = [1, 3, 10, 200]


def random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    style = rng.choice(["scatter", "overlap", "grid"])
    if style == "scatter":
        x0, y0 = rng.random(n), rng.random(n)
        w, h = rng.random(n) * 0.5, rng.random(n) * 0.5
    elif style == "overlap":
        # One object seen many times: every pair overlaps by far more than any IoU threshold.
        x0, y0 = 0.2 + rng.random(n) * 0.02, 0.3 + rng.random(n) * 0.02
        w, h = 0.5 + rng.random(n) * 0.02, 0.4 + rng.random(n) * 0.02
    else:
        # Few distinct coordinates: equal boxes, shared edges, zero widths and inverted boxes.
        x0, y0 = np.round(rng.random(n) * 0.6, 1), np.round(rng.random(n) * 0.6, 1)
        w, h = np.round(rng.random(n) * 0.6 - 0.1, 1), np.round(rng.random(n) * 0.6 - 0.1, 1)
    return np.stack([x0, y0, x0 + w, y0 + h], axis=1).astype(np.float32)


def random_scores(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    scores = rng.random(shape)
    if rng.random() < 0.5:
        scores = np.round(scores, 1)  # ties within and across classes
    if rng.random() < 0.2:
        scores = scores * 0.9  # everything may fall below a high threshold
    return scores.astype(np.float32)


def random_options(rng: np.random.Generator) -> dict[str, Any]:
    return {"score_threshold": float(rng.choice(SCORE_THRESHOLDS)),
            "iou_threshold": float(rng.choice(IOU_THRESHOLDS)),
            "top_k": int(rng.choice(TOP_KS))}


def count_candidates(reference_kwargs: dict[str, Any], options: dict[str, Any]) -> int:
    """Detections that pass the threshold, before suppression and top_k."""
    loose = dict(options, iou_threshold=1.0, top_k=10**9)
    return len(reference_detection_output(**loose, **reference_kwargs))


@pytest.mark.parametrize("block", range(4))
def test_detection_output_ssd_equals_the_reference_on_random_inputs(block):
    per_block = RANDOM_CASES // 4
    seen = collections.Counter()
    for seed in range(block * per_block, (block + 1) * per_block):
        rng = np.random.default_rng([7, seed])
        n = int(rng.integers(1, 31))
        labels = rng.integers(0, int(rng.integers(1, 5)), size=n)
        images = rng.integers(0, 2, size=n) if rng.random() < 0.25 else np.zeros(n)
        rows = np.concatenate([np.stack([images, labels], axis=1).astype(np.float32),
                               random_scores(rng, (n, 1)), random_boxes(rng, n)], axis=1)
        rows = rows.astype(np.float32)
        options = random_options(rng)
        x = rows if rng.random() < 0.5 else rows.reshape(1, 1, n, 7)
        context = f"seed {seed}: options={options} rows={rows.tolist()}"

        expected = reference_detection_output(**options, ssd=rows)
        detections, names = detections_of(rf.DetectionOutput(**options), x)
        assert names == ["detections"], context
        np.testing.assert_array_equal(detections, expected, err_msg=context)

        candidates = count_candidates({"ssd": rows}, options)
        seen["empty"] += len(expected) == 0
        seen["suppressed or truncated"] += 0 < len(expected) < candidates
        seen["truncated"] += len(expected) == options["top_k"] < candidates
    assert seen["empty"] >= 3 and seen["suppressed or truncated"] >= 20 and seen["truncated"] >= 3, seen


@pytest.mark.parametrize("block", range(4))
def test_detection_output_raw_equals_the_reference_on_random_inputs(block):
    per_block = RANDOM_CASES // 4
    seen = collections.Counter()
    for seed in range(block * per_block, (block + 1) * per_block):
        rng = np.random.default_rng([11, seed])
        n, classes = int(rng.integers(1, 31)), int(rng.integers(1, 6))
        boxes, scores = random_boxes(rng, n), random_scores(rng, (n, classes))
        background_label = int(rng.choice([-1, 0, classes - 1]))
        options = random_options(rng)
        context = (f"seed {seed}: options={options} background_label={background_label} "
                   f"boxes={boxes.tolist()} scores={scores.tolist()}")

        expected = reference_detection_output(**options, boxes=boxes, scores=scores,
                                              background_label=background_label)
        stage = rf.DetectionOutput(**options, boxes="boxes", scores="scores",
                                   background_label=background_label)
        inputs = {"boxes": boxes[None] if rng.random() < 0.3 else boxes,
                  "scores": scores[None] if rng.random() < 0.3 else scores}
        detections, names = detections_of(stage, inputs)
        assert names == ["detections"], context
        np.testing.assert_array_equal(detections, expected, err_msg=context)

        candidates = count_candidates({"boxes": boxes, "scores": scores,
                                       "background_label": background_label}, options)
        seen["empty"] += len(expected) == 0
        seen["suppressed or truncated"] += 0 < len(expected) < candidates
        seen["background"] += background_label >= 0
    assert seen["empty"] >= 3 and seen["suppressed or truncated"] >= 20 and seen["background"] >= 30, seen


# ------------------------------------------------------------------------------------------------
# DetectionOutput: errors
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs,text", [
    ({"top_k": 0}, "top_k must be at least 1"),
    ({"iou_threshold": 1.5}, r"iou_threshold must be in \[0, 1\]"),
    ({"iou_threshold": -0.1}, r"iou_threshold must be in \[0, 1\]"),
    ({"iou_threshold": NAN}, "iou_threshold"),
    ({"score_threshold": NAN}, "score_threshold must be a finite number"),
    ({"threads": 0}, "threads must be at least 1"),
    ({"background_label": -2}, "background_label"),
    ({"boxes": "boxes"}, "both boxes and scores"),
    ({"scores": "scores"}, "both boxes and scores"),
    ({"boxes": "x", "scores": "x"}, "two tensors"),
    ({"detections": "d", "boxes": "b", "scores": "s"}, "either SSD detections or raw boxes"),
])
def test_detection_output_rejects_bad_options(kwargs, text):
    with pytest.raises(rf.Error, match=text):
        rf.DetectionOutput(**kwargs)


@pytest.mark.parametrize("x,error,text", [
    (np.zeros((2, 7), np.float64), rf.DTypeError, "float64 [2, 7]; expected float32 [1, 1, N, 7] or [N, 7]"),
    (np.zeros((1, 2, 7), np.float32), rf.ShapeError, "float32 [1, 2, 7]; expected float32 [1, 1, N, 7]"),
    (np.zeros((2, 1, 3, 7), np.float32), rf.ShapeError, "float32 [2, 1, 3, 7]"),
    (np.zeros((1, 6), np.float32), rf.ShapeError, "no tensor has a last dimension of 7"),
])
def test_detection_output_rejects_wrong_ssd_input(x, error, text):
    with pytest.raises(error, match=re.escape(text)):
        rf.DetectionOutput()(x)


def test_detection_output_rejects_a_missing_named_input():
    with pytest.raises(rf.ShapeError, match=r"no tensor named 'dets'; it has 'out' float32 \[1, 7\]"):
        rf.DetectionOutput(detections="dets")({"out": np.zeros((1, 7), np.float32)})
    with pytest.raises(rf.ShapeError, match="no tensor named 'scores'"):
        rf.DetectionOutput(boxes="boxes", scores="scores")({"boxes": np.zeros((3, 4), np.float32)})


@pytest.mark.parametrize("boxes,scores,error,text", [
    (np.zeros((3, 5), np.float32), np.zeros((3, 2), np.float32), rf.ShapeError,
     "'boxes' is float32 [3, 5]; expected float32 [N, 4] or [1, N, 4]"),
    (np.zeros((2, 3, 4), np.float32), np.zeros((3, 2), np.float32), rf.ShapeError,
     "'boxes' is float32 [2, 3, 4]"),
    (np.zeros((3, 4), np.float32), np.zeros(3, np.float32), rf.ShapeError,
     "'scores' is float32 [3]; expected float32 [N, C] or [1, N, C]"),
    (np.zeros((3, 4), np.float32), np.zeros((2, 3), np.float32), rf.ShapeError,
     "'boxes' is float32 [3, 4] but 'scores' is float32 [2, 3]"),
    (np.zeros((3, 4), np.float16), np.zeros((3, 2), np.float32), rf.DTypeError,
     "'boxes' is float16 [3, 4]"),
    (np.zeros((3, 4), np.float32), np.zeros((3, 2), np.int64), rf.DTypeError,
     "'scores' is int64 [3, 2]"),
])
def test_detection_output_rejects_wrong_raw_input(boxes, scores, error, text):
    stage = rf.DetectionOutput(boxes="boxes", scores="scores")
    with pytest.raises(error, match=re.escape(text)):
        stage({"boxes": boxes, "scores": scores})


# ------------------------------------------------------------------------------------------------
# End to end: TopK behind a model in a Run
# ------------------------------------------------------------------------------------------------


def write_identity_model(path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # onnxruntime 1.21, the oldest ringflow supports, reads IR <= 10
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_topk_after_a_model_in_a_run_gives_the_reference_in_push_order(tmp_path):
    path = tmp_path / "identity.onnx"
    write_identity_model(path)
    model = rf.Model(str(path))
    rng = np.random.default_rng(99)
    # On a 0.01 grid, as in the random TopK cases: ties are exact, other gaps far above rounding.
    inputs = [np.round(rng.standard_normal((1, 10)) * 2, 2).astype(np.float32) for _ in range(50)]

    # Room for all 50: they are pulled only after the last push.
    run = rf.Graph().add(model.graph()).add(rf.TopK(3, softmax=True)).build(
        np.zeros((1, 10), np.float32), rf.RunOptions(queue_depth=64))
    with run:
        for i, x in enumerate(inputs):
            assert run.push(x, frame_id=i) is True
        run.close_input()
        results = []
        while (out := run.pull(timeout_ms=5000)) is not None:
            results.append(out)
            assert len(results) <= len(inputs)

    assert [r.frame_id for r in results] == list(range(len(inputs)))
    for i, (result, x) in enumerate(zip(results, inputs)):
        assert list(result.names) == ["topk_indices", "topk_scores"], result.names
        indices, scores = np.asarray(result["topk_indices"]), np.asarray(result["topk_scores"])
        assert indices.shape == scores.shape == (1, 3)
        assert_topk_equal(indices, scores, reference_topk(x, 3, softmax=True), softmax=True,
                          context=f"input {i}: {x.tolist()}")

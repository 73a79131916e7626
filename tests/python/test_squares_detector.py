"""The built-in squares-detector really finds its squares.

It is run with onnxruntime directly (the model, not the engine) on frames of grey noise with a red,
a green and a blue 32x32 square at seeded positions, and checked after a per-class NMS of its own:
every square found with IoU >= 0.85 (anchors are 2 px apart), nothing else found.
"""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest

import ringflow as rf

H, W, S = 240, 320, 32
COLOURS = {1: (1.0, 0.0, 0.0), 2: (0.0, 1.0, 0.0), 3: (0.0, 0.0, 1.0)}  # RGB, as the model sees them


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def nms(rows: np.ndarray, score_threshold: float = 0.5, iou_threshold: float = 0.45) -> list[np.ndarray]:
    rows = rows[rows[:, 2] > score_threshold]
    kept: list[np.ndarray] = []
    for row in rows[np.argsort(-rows[:, 2], kind="stable")]:
        if all(k[1] != row[1] or iou(k[3:], row[3:]) <= iou_threshold for k in kept):
            kept.append(row)
    return kept


@pytest.fixture(scope="module")
def session() -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(rf.models.ensure("squares-detector")),
                                        providers=["CPUExecutionProvider"])


def test_signature(session: onnxruntime.InferenceSession) -> None:
    (image,), (detections,) = session.get_inputs(), session.get_outputs()
    assert (image.name, image.shape) == ("image", [1, 3, H, W])
    assert detections.name == "detections" and detections.shape[:2] == [1, 1] and detections.shape[3] == 7


@pytest.mark.parametrize("seed", range(8))
def test_finds_each_square_and_nothing_else(session: onnxruntime.InferenceSession, seed: int) -> None:
    rng = np.random.default_rng(seed)
    image = np.repeat(rng.uniform(0.25, 0.75, (1, 1, H, W)).astype(np.float32), 3, axis=1)
    truth = {}
    for label, rgb in COLOURS.items():  # one square per third of the frame: they never overlap
        x = int(rng.integers(0, W - S + 1))
        y = (H // 3) * (label - 1) + int(rng.integers(0, H // 3 - S + 1))
        image[0, :, y:y + S, x:x + S] = np.array(rgb, np.float32)[:, None, None]
        truth[label] = np.array([x / W, y / H, (x + S) / W, (y + S) / H])

    rows = session.run(None, {"image": image})[0][0, 0]
    found = nms(rows)

    assert sorted(int(r[1]) for r in found) == [1, 2, 3]
    for r in found:
        assert iou(truth[int(r[1])], r[3:]) >= 0.85
        assert r[0] == 0 and r[2] > 0.7  # 0.75 when the square sits between anchors in x and y

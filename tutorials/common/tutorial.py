"""What the Python tutorials share and is not part of ringflow itself."""

import cv2
import numpy as np


def gray_frame(size: int, level: int) -> np.ndarray:
    """A uniform grey frame: the tutorials' default input, identical in C++ and Python."""
    return np.full((size, size, 3), level, dtype=np.uint8)


def load_rgb(path: str) -> np.ndarray:
    """An image file as an RGB uint8 [H, W, 3] frame."""
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise RuntimeError(f"failed to read image: {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def top1(sample) -> int:
    return int(np.argmax(sample[0]))

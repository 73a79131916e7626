"""What the Python tutorials share and is not part of ringflow itself."""

import sys
from typing import Callable

import cv2
import numpy as np


def run(main: Callable[[], None], name: str) -> int:
    """The tutorials' contract: "[OK] <name>" and exit status 0, or one "[FAIL] <reason>" line on
    stderr and exit status 1."""
    try:
        main()
    except Exception as e:
        print(f"[FAIL] {e}", file=sys.stderr)
        return 1
    print(f"[OK] {name}")
    return 0


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

"""Synchronous inference: load a model, run one frame, print the top-1 class.

Usage: python run_inference_sync.py [--model PATH.onnx] [--image PATH]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "common"))
import tutorial  # noqa: E402

import ringflow as rf  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="ONNX file (default: the built-in ResNet-50)")
    parser.add_argument("--image", help="image file (default: a uniform grey 224x224 frame)")
    args = parser.parse_args()
    model_path = args.model or str(rf.models.ensure("resnet50"))
    frame = tutorial.load_rgb(args.image) if args.image else tutorial.gray_frame(224, 99)

    # The model resizes and normalizes frames itself, so any frame up to this size can be passed.
    height, width = frame.shape[:2]
    options = rf.Model.Options(preprocess=rf.PreprocessOptions.imagenet(max(224, width), max(224, height)))
    model = rf.Model(model_path, options)

    out = model.run(frame, timeout_ms=10000)
    print(f"top1={tutorial.top1(out)}")


if __name__ == "__main__":
    sys.exit(tutorial.run(main, "001_run_inference_sync"))

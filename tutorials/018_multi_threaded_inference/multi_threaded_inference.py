"""Many threads, one model: every thread runs inference on its own frames through one shared Model
(one set of weights, one ONNX Runtime session, which is safe to call concurrently). Results are
reported in the order each thread's inputs were given, and checked against a single-threaded run.

Usage: python multi_threaded_inference.py [--model PATH.onnx] [--threads 3] [--frames 4]
"""

import argparse
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "common"))
import tutorial  # noqa: E402

import ringflow as rf  # noqa: E402


def level_for(thread: int, frame: int) -> int:
    """Thread t's k-th frame: a grey level of its own, so every thread has different inputs."""
    return (25 + 70 * thread + 13 * frame) % 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="ONNX file (default: the built-in ResNet-50)")
    parser.add_argument("--threads", type=int, default=3)
    parser.add_argument("--frames", type=int, default=4, help="frames per thread")
    args = parser.parse_args()
    model = rf.Model(args.model or str(rf.models.ensure("resnet50")),
                     rf.Model.Options(preprocess=rf.PreprocessOptions.imagenet()))

    def classify(level: int) -> int:
        return tutorial.top1(model.run(tutorial.gray_frame(224, level)))  # releases the GIL

    top1 = [[0] * args.frames for _ in range(args.threads)]

    def work(t: int) -> None:
        for k in range(args.frames):
            top1[t][k] = classify(level_for(t, k))

    pool = [threading.Thread(target=work, args=(t,)) for t in range(args.threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()

    match = True
    for t in range(args.threads):
        print(f"thread={t} frames={args.frames} top1={','.join(map(str, top1[t]))}")
        match &= all(top1[t][k] == classify(level_for(t, k)) for k in range(args.frames))
    print(f"match_single_threaded={'true' if match else 'false'}")
    if not match:
        raise RuntimeError("concurrent results differ from single-threaded ones")


if __name__ == "__main__":
    sys.exit(tutorial.run(main, "018_multi_threaded_inference"))

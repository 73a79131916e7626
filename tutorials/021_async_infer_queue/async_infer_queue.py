"""OpenVINO's AsyncInferQueue loop on ringflow: N frames go to start_async() with their userdata
(frame id, start time); a callback per finished request computes the top-1 class and the running
FPS. ordered=True delivers the callbacks in submission order, so every run prints the same lines.

Usage: python async_infer_queue.py [--model PATH.onnx] [--n COUNT]
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "common"))
import tutorial  # noqa: E402

import ringflow as rf  # noqa: E402

# A "scene" of four grey levels, repeating: each level must always get the same class.
LEVELS = [20, 99, 160, 230]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="ONNX file (default: the built-in ResNet-50)")
    parser.add_argument("--n", type=int, default=16, help="frames to submit")
    args = parser.parse_args()
    if args.n < 0:
        raise ValueError(f"--n must be at least 0, got {args.n}")

    model = rf.Model(args.model or str(rf.models.ensure("resnet50")),
                     rf.Model.Options(preprocess=rf.PreprocessOptions.imagenet()))
    # jobs=0: two requests per core. ordered=True: callbacks in submission order.
    infer_queue = rf.AsyncInferQueue(model, jobs=0, ordered=True)

    # The callback runs on the queue's report thread, one request at a time, holding the GIL only
    # for the call. The main thread reads these only after wait_all().
    counts = {"completed": 0, "failed": 0, "out_of_order": 0, "inconsistent": 0}
    fps = 0.0
    top1_by_level = {}

    def callback(request, info) -> None:
        nonlocal fps
        frame_id, start_time = info
        if frame_id != counts["completed"] + counts["failed"]:
            counts["out_of_order"] += 1
        if request.error is not None:
            print(f"frame {frame_id} failed: {request.error}", file=sys.stderr)
            counts["failed"] += 1
            return
        counts["completed"] += 1
        fps = counts["completed"] / (time.perf_counter() - start_time)
        top1 = int(np.argmax(request.get_output_tensor(0).data[0]))
        level = LEVELS[frame_id % len(LEVELS)]
        if top1_by_level.setdefault(level, top1) != top1:
            counts["inconsistent"] += 1
        print(f"frame={frame_id} top1={top1}")

    infer_queue.set_callback(callback)

    frame = tutorial.gray_frame(224, LEVELS[0])
    start_time = time.perf_counter()
    for i in range(args.n):
        # start_async copies the frame, so one buffer can be refilled for every frame.
        frame[...] = LEVELS[i % len(LEVELS)]
        infer_queue.start_async(frame, (i, start_time))  # waits only while every job is busy
    infer_queue.wait_all()

    print(f"fps={fps:.1f}")  # measured: CTest compares only its key
    print(f"completed={counts['completed']} in_order={'true' if counts['out_of_order'] == 0 else 'false'}")
    if counts["completed"] != args.n or counts["failed"] or counts["out_of_order"] or counts["inconsistent"]:
        raise RuntimeError("the queue lost, reordered or mixed up results")


if __name__ == "__main__":
    sys.exit(tutorial.run(main, "021_async_infer_queue"))

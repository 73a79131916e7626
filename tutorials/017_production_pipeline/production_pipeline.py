"""A production-shaped pipeline: a camera thread pushes frames with their stream id, frame id and
timestamp; a consumer thread pulls results; shutdown closes the input and drains every result
before the Run is destroyed. Queue depth 8, Block (nothing dropped), Owned outputs.

Usage: python production_pipeline.py [--model PATH.onnx] [--frames 24]
"""

import argparse
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "common"))
import tutorial  # noqa: E402

import ringflow as rf  # noqa: E402

# A "scene" of four grey levels, repeating: each level must always get the same class.
LEVELS = [20, 99, 160, 230]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="ONNX file (default: the built-in ResNet-50)")
    parser.add_argument("--frames", type=int, default=24, help="frames the camera produces")
    args = parser.parse_args()
    model = rf.Model(args.model or str(rf.models.ensure("resnet50")),
                     rf.Model.Options(preprocess=rf.PreprocessOptions.imagenet()))
    options = rf.RunOptions(queue_depth=8, overflow_policy=rf.OverflowPolicy.Block,
                            output_memory=rf.OutputMemory.Owned)
    graph = rf.Graph()
    graph.add(model.graph())
    run = graph.build(tutorial.gray_frame(224, LEVELS[0]), options)

    camera_errors = []

    def camera() -> None:
        try:
            for i in range(args.frames):
                frame = tutorial.gray_frame(224, LEVELS[i % len(LEVELS)])
                run.push(frame, stream_id="cam0", frame_id=i, pts_ns=i * 33_333_333)  # 30 fps
        except Exception as e:
            camera_errors.append(e)
        finally:
            run.close_input()  # shutdown: no more frames, but every accepted one is still delivered

    top1_by_level = {}
    counts = {"results": 0, "errors": 0, "out_of_order": 0, "inconsistent": 0}

    def consumer() -> None:
        last_frame = -1
        while True:
            r = run.pull_with_status(timeout_ms=1000)
            if r.status == rf.PullStatus.Closed:
                break
            if r.status == rf.PullStatus.Timeout:
                continue
            if r.status == rf.PullStatus.Error:
                print(f"frame {r.sample.frame_id} failed: {r.error}", file=sys.stderr)
                counts["errors"] += 1
                continue
            out = r.sample
            if out.frame_id <= last_frame or out.stream_id != "cam0":
                counts["out_of_order"] += 1
            last_frame = out.frame_id
            level = LEVELS[out.frame_id % len(LEVELS)]
            top1 = tutorial.top1(out)
            if top1_by_level.setdefault(level, top1) != top1:
                counts["inconsistent"] += 1
            counts["results"] += 1

    threads = [threading.Thread(target=camera), threading.Thread(target=consumer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if camera_errors:
        raise camera_errors[0]

    stats = run.stats()
    print(f"frames_pushed={args.frames}")
    print(f"results={counts['results']}")
    print(f"errors={counts['errors']}")
    print(f"dropped={stats.input.inputs_dropped}")
    print(f"in_order={'true' if counts['out_of_order'] == 0 else 'false'}")
    for level in sorted(top1_by_level):
        print(f"level={level} top1={top1_by_level[level]}")
    if (counts["results"] != args.frames or counts["errors"] or counts["out_of_order"]
            or counts["inconsistent"] or stats.input.inputs_dropped):
        raise RuntimeError("the pipeline lost, reordered or mixed up results")


if __name__ == "__main__":
    sys.exit(tutorial.run(main, "017_production_pipeline"))

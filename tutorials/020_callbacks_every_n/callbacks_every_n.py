"""Results by callback, AscendCL style: the main thread pushes N frames and never pulls; every K
results reach a callback on the Run's report thread, together and in push order. Outputs are
Pooled: the buffers a callback does not keep go back to the pool when it returns.

Usage: python callbacks_every_n.py [--model PATH.onnx] [--n COUNT] [--every K]
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
    parser.add_argument("--n", type=int, default=20, help="frames to push")
    parser.add_argument("--every", type=int, default=4, help="results per callback")
    args = parser.parse_args()
    if args.n < 0:
        raise ValueError(f"--n must be at least 0, got {args.n}")
    if args.every < 1:
        raise ValueError(f"--every must be at least 1, got {args.every}")

    model = rf.Model(args.model or str(rf.models.ensure("resnet50")),
                     rf.Model.Options(preprocess=rf.PreprocessOptions.imagenet()))
    # Pooled: results borrow their buffers from a pool instead of allocating one per frame.
    options = rf.RunOptions(output_memory=rf.OutputMemory.Pooled)
    graph = rf.Graph()
    graph.add(model.graph())
    frame = tutorial.gray_frame(224, 99)
    run = graph.build(frame, options)

    # The callback runs on the report thread, one group at a time, holding the GIL only for the
    # call. The main thread reads these counters only after wait_all(), once the last one returned.
    counts = {"groups": 0, "results": 0, "failed": 0, "out_of_order": 0, "next_seq": 0}
    classes = set()

    def on_results(group) -> None:
        print(f"callback group={counts['groups']} size={len(group)} first_seq={group[0].sample.input_seq}")
        for r in group:
            if r.sample.input_seq != counts["next_seq"]:
                counts["out_of_order"] += 1
            counts["next_seq"] += 1
            if r.status == rf.PullStatus.Error:
                print(f"sample {r.sample.input_seq} failed: {r.error}", file=sys.stderr)
                counts["failed"] += 1
                continue
            classes.add(tutorial.top1(r.sample))  # reads the pooled output in place, no copy
        counts["groups"] += 1
        counts["results"] += len(group)
        # Returning drops the last reference to the group's arrays: their buffers go back to the pool.

    run.set_callback(on_results, every=args.every)

    for _ in range(args.n):
        run.push(frame)  # waits while the Run is full; never pulls
    run.close_input()
    run.wait_all()  # every callback has returned, the last partial group included

    print(f"callbacks={counts['groups']} results={counts['results']}")
    if counts["results"] != args.n or counts["failed"] or counts["out_of_order"] or len(classes) > 1:
        raise RuntimeError("the callbacks lost, reordered or mixed up results")


if __name__ == "__main__":
    sys.exit(tutorial.run(main, "020_callbacks_every_n"))

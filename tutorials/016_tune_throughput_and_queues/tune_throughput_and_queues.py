"""Queue depth and overflow policy under a burst: try_push faster than the model can keep up, then
close the input, drain, and read what the Run measured.

Usage: python tune_throughput_and_queues.py [--model PATH.onnx] [--iters 32] [--queue 4]
                                            [--drop block|latest|incoming]
"""

import argparse
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "common"))
import tutorial  # noqa: E402

import ringflow as rf  # noqa: E402

POLICIES = {
    "block": rf.OverflowPolicy.Block,
    "latest": rf.OverflowPolicy.KeepLatest,
    "incoming": rf.OverflowPolicy.DropIncoming,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="ONNX file (default: the built-in ResNet-50)")
    parser.add_argument("--iters", type=int, default=32, help="samples in the burst")
    parser.add_argument("--queue", type=int, default=4, help="queue_depth")
    parser.add_argument("--drop", default="block", help="overflow policy: block, latest or incoming")
    args = parser.parse_args()
    if args.drop not in POLICIES:
        raise ValueError(f"--drop must be block, latest or incoming; got '{args.drop}'")
    policy = POLICIES[args.drop]
    options = rf.RunOptions(queue_depth=args.queue, overflow_policy=policy)

    model = rf.Model(args.model or str(rf.models.ensure("resnet50")),
                     rf.Model.Options(preprocess=rf.PreprocessOptions.imagenet()))
    graph = rf.Graph()
    graph.add(model.graph())
    frame = tutorial.gray_frame(224, 99)
    run = graph.build(frame, options)

    # A consumer drains results while the burst runs, so Block has somewhere to make room.
    def drain() -> None:
        while run.pull_with_status(timeout_ms=5000).status != rf.PullStatus.Closed:
            pass

    consumer = threading.Thread(target=drain)
    consumer.start()
    # The burst: try_push never waits. Under Block a full queue makes it return False, and we
    # fall back to push(), which waits for room; the other policies drop instead, and count it.
    for i in range(args.iters):
        if not run.try_push(frame, frame_id=i) and policy == rf.OverflowPolicy.Block:
            run.push(frame, frame_id=i)
    run.close_input()
    consumer.join()

    stats = run.stats()
    print(f"inputs_enqueued={stats.input.inputs_enqueued}")
    print(f"inputs_dropped={stats.input.inputs_dropped}")
    print(f"outputs_pulled={stats.outputs_pulled}")
    print(f"avg_latency_ms={stats.latency.avg_ms:.3f}")
    print(f"avg_push_us={stats.input.avg_push_us:.3f}")

    if stats.input.inputs_enqueued + stats.input.inputs_dropped != args.iters:
        raise RuntimeError("enqueued + dropped != pushed")
    if stats.outputs_pulled != stats.input.inputs_enqueued:
        raise RuntimeError("pulled != enqueued")


if __name__ == "__main__":
    sys.exit(tutorial.run(main, "016_tune_throughput_and_queues"))

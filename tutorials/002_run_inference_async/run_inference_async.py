"""Asynchronous push/pull: a producer thread pushes N frames and closes the input; the main thread
pulls results as they come.

Usage: python run_inference_async.py [--model PATH.onnx] [--image PATH] [--n COUNT]
"""

import argparse
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "common"))
import tutorial  # noqa: E402

import ringflow as rf  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="ONNX file (default: the built-in ResNet-50)")
    parser.add_argument("--image", help="image file (default: a uniform grey 224x224 frame)")
    parser.add_argument("--n", type=int, default=4, help="frames to push")
    args = parser.parse_args()
    model_path = args.model or str(rf.models.ensure("resnet50"))
    frame = tutorial.load_rgb(args.image) if args.image else tutorial.gray_frame(224, 99)

    height, width = frame.shape[:2]
    options = rf.Model.Options(preprocess=rf.PreprocessOptions.imagenet(max(224, width), max(224, height)))
    model = rf.Model(model_path, options)

    # Expose the model's input and output so the Run can be pushed to and pulled from.
    graph = rf.Graph()
    graph.add(model.graph(rf.Model.RouteOptions(include_input=True, include_output=True)))
    # The seed frame fixes the shapes the Run negotiates and warms the model up.
    run = graph.build(frame)

    pushed = 0
    producer_errors = []

    def produce() -> None:
        nonlocal pushed
        try:
            for _ in range(args.n):
                run.push(frame)  # waits while the Run is full
                pushed += 1
        except Exception as e:
            producer_errors.append(e)
        finally:
            run.close_input()  # results already pushed still arrive

    producer = threading.Thread(target=produce)
    producer.start()

    pulled = 0
    while True:
        result = run.pull_with_status(timeout_ms=2000)
        if result.status == rf.PullStatus.Closed:  # end of stream
            break
        if result.status == rf.PullStatus.Timeout:  # still computing
            continue
        if result.status == rf.PullStatus.Error:
            raise rf.InferenceError(result.error)
        print(f"top1={tutorial.top1(result.sample)}")
        pulled += 1
    producer.join()
    if producer_errors:
        raise producer_errors[0]

    print(f"pushed={pushed} pulled={pulled}")
    if pulled != args.n:
        raise RuntimeError(f"pulled={pulled} != pushed={args.n}")


if __name__ == "__main__":
    sys.exit(tutorial.run(main, "002_run_inference_async"))

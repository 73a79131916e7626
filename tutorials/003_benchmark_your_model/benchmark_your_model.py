"""Benchmark a model: single-flight latency, then async throughput at each worker count, on
deterministic synthetic inputs built from the model's input specs.

Usage: python benchmark_your_model.py [--model PATH.onnx] [--samples COUNT]
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
    parser.add_argument("--samples", type=int, default=16, help="samples per measurement")
    args = parser.parse_args()
    model = rf.Model(args.model or str(rf.models.ensure("resnet50")))
    report = model.benchmark(args.samples)

    print(report.to_text(), end="")
    print(f"report_latency_ms={report.latency_ms:.3f}")
    print(f"report_fps={report.fps:.1f}")


if __name__ == "__main__":
    sys.exit(tutorial.run(main, "003_benchmark_your_model"))

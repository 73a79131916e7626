"""Benchmark a model: single-flight latency, then async throughput at each worker count, on
deterministic synthetic inputs built from the model's input specs.

Usage: python benchmark_your_model.py [--model PATH.onnx] [--samples COUNT]
"""

import argparse
import sys

import ringflow as rf


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="ONNX file (default: the built-in ResNet-50)")
    parser.add_argument("--samples", type=int, default=16, help="samples per measurement")
    args = parser.parse_args()
    try:
        model = rf.Model(args.model or str(rf.models.ensure("resnet50")))
        report = model.benchmark(args.samples)

        print(report.to_text(), end="")
        print(f"report_latency_ms={report.latency_ms:.3f}")
        print(f"report_fps={report.fps:.1f}")
        print("[OK] 003_benchmark_your_model")
        return 0
    except Exception as e:  # the tutorial's contract: one [FAIL] line and exit status 1
        print(f"[FAIL] {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

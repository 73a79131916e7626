"""The `ringflow` command line. `ringflow bench MODEL` measures a model the way you would run it.

    ringflow bench resnet50 --mode async --workers 2 -t 10
    ringflow bench model.onnx --batch 32 --max-delay-us 500 -n 100000 --json out.json
    ringflow bench tiny-mlp --auto
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import ringflow as rf


@dataclass
class BenchResult:
    model: str
    mode: str
    workers: int
    queue: int
    batch: int
    max_delay_us: int
    count: int
    seconds: float
    fps: float
    latency_ms: dict
    stages: list = field(default_factory=list)
    avg_batch_size: float = 1.0


def resolve_model(name: str) -> str:
    """A path to an .onnx file, or the name of a built-in model."""
    if name in rf.models.BUILTIN:
        return str(rf.models.ensure(name))
    if not Path(name).is_file():
        raise SystemExit(f"ringflow bench: no model file '{name}', and it is not a built-in model "
                         f"({', '.join(rf.models.BUILTIN)})")
    return name


class Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, total_count: int | None, total_seconds: float | None) -> None:
        self.total_count, self.total_seconds = total_count, total_seconds
        self.enabled = sys.stderr.isatty()
        self.start = time.perf_counter()
        self.last_draw = 0.0

    def update(self, done: int, force: bool = False) -> None:
        now = time.perf_counter()
        if not self.enabled or (not force and now - self.last_draw < 0.1):
            return
        self.last_draw = now
        elapsed = now - self.start
        if self.total_count:
            fraction = done / self.total_count
        else:
            fraction = elapsed / self.total_seconds
        fraction = min(max(fraction, 0.0), 1.0)
        width = 30
        bar = "#" * int(fraction * width) + "-" * (width - int(fraction * width))
        rate = done / elapsed if elapsed > 0 else 0.0
        sys.stderr.write(f"\r[{bar}] {fraction * 100:5.1f}%  {done} samples  {rate:,.1f}/s ")
        sys.stderr.flush()

    def finish(self, done: int) -> None:
        self.update(done, force=True)
        if self.enabled:
            sys.stderr.write("\n")


def percentiles(latencies_ms: list[float]) -> dict:
    ordered = sorted(latencies_ms)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1)))]  # noqa: E731
    return {"avg": statistics.fmean(ordered), "min": ordered[0], "max": ordered[-1],
            "median": pick(0.5), "p90": pick(0.9), "p99": pick(0.99)}


def bench_sync(model: rf.Model, inputs, count: int | None, seconds: float | None, warmup: int) -> dict:
    for _ in range(warmup):
        model.run(inputs)
    progress = Progress(count, seconds)
    latencies = []
    start = time.perf_counter()
    deadline = start + seconds if seconds else None
    while (count is None or len(latencies) < count) and (deadline is None or time.perf_counter() < deadline):
        t = time.perf_counter()
        model.run(inputs)
        latencies.append((time.perf_counter() - t) * 1e3)
        progress.update(len(latencies))
    elapsed = time.perf_counter() - start
    progress.finish(len(latencies))
    return {"count": len(latencies), "seconds": elapsed, "latency_ms": percentiles(latencies), "stages": []}


def bench_async(model: rf.Model, inputs, options: rf.RunOptions, count: int | None, seconds: float | None,
                warmup: int, show_progress: bool = True) -> dict:
    graph = rf.Graph()
    graph.add(model.graph())
    run = graph.build(inputs, options)
    for _ in range(warmup):  # on the model directly, so the Run's stats cover only measured samples
        model.run(inputs)
    stop = threading.Event()

    def produce() -> None:
        try:
            pushed = 0
            while not stop.is_set() and (count is None or pushed < count):
                run.push(inputs)
                pushed += 1
        finally:
            run.close_input()

    progress = Progress(count, seconds) if show_progress else None
    start = time.perf_counter()
    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    if seconds:
        timer = threading.Timer(seconds, stop.set)
        timer.daemon = True
        timer.start()
    pulled = 0
    while run.pull() is not None:
        pulled += 1
        if progress and pulled % 64 == 0:
            progress.update(pulled)
    elapsed = time.perf_counter() - start
    producer.join()
    stop.set()
    if progress:
        progress.finish(pulled)

    stats = run.stats()
    lat = stats.latency
    return {
        "count": pulled,
        "seconds": elapsed,
        # Push-to-pull latency, from the engine's histogram.
        "latency_ms": {"avg": lat.avg_ms, "min": lat.min_ms, "max": lat.max_ms, "median": lat.p50_ms,
                       "p90": lat.p90_ms, "p99": lat.p99_ms},
        "stages": [{"name": s.name, "avg_wait_ms": s.avg_wait_ms, "avg_compute_ms": s.avg_compute_ms}
                   for s in stats.stages],
        "avg_batch_size": stats.avg_batch_size,
    }


def print_report(r: BenchResult) -> None:
    lat = r.latency_ms
    print(f"model:       {r.model}")
    config = f"mode={r.mode}"
    if r.mode == "async":
        config += f" workers={r.workers} queue={r.queue} batch={r.batch} max_delay_us={r.max_delay_us}"
    print(f"config:      {config}")
    print(f"count:       {r.count}")
    print(f"duration:    {r.seconds:.3f} s")
    print(f"throughput:  {r.fps:,.1f} samples/s")
    print(f"latency ms:  median {lat['median']:.3f}  avg {lat['avg']:.3f}  min {lat['min']:.3f}  "
          f"max {lat['max']:.3f}  p90 {lat['p90']:.3f}  p99 {lat['p99']:.3f}")
    if r.mode == "async" and r.batch > 1:
        print(f"avg batch:   {r.avg_batch_size:.2f}")
    for s in r.stages:
        print(f"stage {s['name']:<12} wait {s['avg_wait_ms']:8.3f} ms   compute {s['avg_compute_ms']:8.3f} ms")


def run_one(args, model: rf.Model, inputs, workers: int, queue: int, show_progress: bool = True) -> BenchResult:
    count = None if args.t else args.n
    if args.mode == "sync":
        measured = bench_sync(model, inputs, count, args.t, args.warmup)
    else:
        options = rf.RunOptions(queue_depth=queue, workers=workers, max_batch=args.batch,
                                max_delay_us=args.max_delay_us,
                                output_memory=rf.OutputMemory.Pooled if args.pooled else rf.OutputMemory.Owned)
        measured = bench_async(model, inputs, options, count, args.t, args.warmup, show_progress)
    return BenchResult(model=args.model, mode=args.mode, workers=workers, queue=queue, batch=args.batch,
                       max_delay_us=args.max_delay_us, count=measured["count"], seconds=measured["seconds"],
                       fps=measured["count"] / measured["seconds"], latency_ms=measured["latency_ms"],
                       stages=measured["stages"], avg_batch_size=measured.get("avg_batch_size", 1.0))


def auto_tune(args, model: rf.Model, inputs) -> tuple[BenchResult, list[BenchResult]]:
    """Sweeps workers and queue depth with short runs, as benchmark_app and perf_analyzer do."""
    cores = os.cpu_count() or 1
    trials = []
    for workers in range(1, cores + 1):
        for queue in (2, 8, 32):
            trial = run_one(args, model, inputs, workers, queue, show_progress=False)
            trials.append(trial)
            print(f"  workers={workers} queue={queue:<3} {trial.fps:12,.1f} samples/s  "
                  f"p50 {trial.latency_ms['median']:.3f} ms", flush=True)
    return max(trials, key=lambda t: t.fps), trials


def cmd_bench(args) -> int:
    if args.t is None and args.n is None:
        args.t = 10.0
    path = resolve_model(args.model)
    model = rf.Model(path)
    inputs = model.synthetic_inputs()
    report = {"ringflow_version": importlib.metadata.version("ringflow"), "onnxruntime": rf.onnxruntime_version(),
              "cores": os.cpu_count()}
    if args.auto:
        args.mode = "async"
        if args.n is None:  # keep each trial short
            args.t = min(args.t, 3.0)
        print(f"auto-tuning {args.model}: {args.t or args.n} {'s' if args.t else 'samples'} per trial")
        best, trials = auto_tune(args, model, inputs)
        print(f"best: workers={best.workers} queue={best.queue}\n")
        print_report(best)
        report.update(best=asdict(best), trials=[asdict(t) for t in trials])
    else:
        result = run_one(args, model, inputs, args.workers, args.queue)
        print_report(result)
        report.update(result=asdict(result))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ringflow", description="ringflow command line")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="measure a model's throughput and latency",
                           description="Measure a model on deterministic synthetic inputs.")
    bench.add_argument("model", help=f"an .onnx file or a built-in model ({', '.join(rf.models.BUILTIN)})")
    bench.add_argument("--mode", choices=["sync", "async"], default="async",
                       help="sync: Model.run in a loop; async: push/pull through a Run (default)")
    bench.add_argument("--workers", type=int, default=1, help="concurrent inference requests")
    bench.add_argument("--queue", type=int, default=8, help="queue depth")
    bench.add_argument("--batch", type=int, default=1, help="dynamic batching: max batch size")
    bench.add_argument("--max-delay-us", type=int, default=0, help="dynamic batching: max wait for a batch")
    bench.add_argument("--pooled", action="store_true", help="pooled (zero-allocation) output buffers")
    limit = bench.add_mutually_exclusive_group()
    limit.add_argument("-t", type=float, metavar="SECONDS", help="run for this long (default 10)")
    limit.add_argument("-n", type=int, metavar="COUNT", help="run this many samples")
    bench.add_argument("--warmup", type=int, default=10, help="untimed samples first")
    bench.add_argument("--auto", action="store_true", help="sweep workers and queue depth, report the best")
    bench.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    bench.set_defaults(func=cmd_bench)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except rf.Error as e:
        print(f"ringflow {args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

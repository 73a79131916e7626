#!/usr/bin/env python3
"""ringflow against its peers, side by side, in one process run.

Every contender serves the same workload (a built-in model fed deterministic synthetic batch-1
requests) within the same run of this script, and the repeats are interleaved round-robin. On a
small or busy machine the noise then lands on every contender alike, so the ratios between them
stay meaningful even when the absolute numbers do not.

    python benchmarks/compare.py --quick                  # smoke run, about a minute
    python benchmarks/compare.py --repeats 5 --tag run1   # the full comparison
    python benchmarks/compare.py --cpp-bench ../other-build/benchmarks/cpp/ringflow_bench

Writes <results>/<tag>.json (raw numbers, machine info), <results>/latest.md (tables, targets,
memory) and <results>/latest.png (bar chart). benchmarks/README.md explains the contenders.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import datetime
import gc
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort

import ringflow as rf

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
DEFAULT_RESULTS_DIR = BENCH_DIR / "results"
# Where the project's documented CMake build puts the benchmark programs.
DEFAULT_CPP_BUILD_DIR = REPO_DIR / "build" / "cpp" / "benchmarks" / "cpp"

WORKLOADS = ("tiny-mlp", "resnet50")

# Settings shared by the ringflow contenders (Python and C++), so they differ only in the language.
QUEUE_DEPTH = 64
MAX_BATCH = 32
MAX_DELAY_US = 500
# asyncio contenders: this many requests in flight, as concurrent server handlers would be.
ASYNC_TASKS = 1000
# ort-run-async: requests kept outstanding. A few are enough to hide the callback round trip;
# more only queue up inside ONNX Runtime's thread pool.
ASYNC_IN_FLIGHT = 4
CALLBACK_EVERY = 16  # ringflow-callback's group size
# ort-threadpool: one worker per core (at least two, or it is just ort-run with extra hops), and
# twice as many submissions in flight, so a worker never waits for the submitting thread.
THREADPOOL_WORKERS = max(2, os.cpu_count() or 1)
THREADPOOL_IN_FLIGHT = 2 * THREADPOOL_WORKERS
# The resnet50 ceiling sweep: ONNX Runtime intra-op threads × Python threads calling run().
SWEEP_INTRA_OP_THREADS = (1, 2)
SWEEP_THREADS = (1, 2)

# ringflow-py-bulk: samples per push_many call, and the most results one pull_many call takes.
PUSH_CHUNK = 16
PULL_CHUNK = QUEUE_DEPTH

# A result that does not arrive within this long means a stuck pipeline: fail, do not hang.
PULL_TIMEOUT_MS = 60_000
SUBPROCESS_TIMEOUT_S = 1800
# A timed phase shorter than this is at the mercy of one scheduler hiccup; the report says so.
SHORT_PHASE_S = 0.2
STEADY_STATE_TOLERANCE = 0.02  # ±2 %


@dataclass(frozen=True)
class Settings:
    """Everything a run needs to know, resolved from the command line (with --quick's defaults)."""

    workloads: tuple[str, ...]
    repeats: int
    count: dict  # workload -> timed samples per repeat
    warmup: dict  # workload -> untimed samples first
    steady_samples: int
    steady_every: int
    quick: bool
    cpp_bench: str | None
    queue_bench: str | None
    memory: bool


FULL_DEFAULTS = {"repeats": 5, "count_tiny": 20_000, "count_resnet": 64, "warmup_tiny": 1_000,
                 "warmup_resnet": 4, "steady_samples": 100_000, "steady_every": 10_000}
QUICK_DEFAULTS = {"repeats": 1, "count_tiny": 2_000, "count_resnet": 4, "warmup_tiny": 200,
                  "warmup_resnet": 1, "steady_samples": 20_000, "steady_every": 2_000}


# ---- workloads and measurements ---------------------------------------------------------------

@dataclass
class Workload:
    name: str
    path: str
    input_names: list[str]
    arrays: list[np.ndarray]  # one batch-1 request, in the model's input order
    count: int
    warmup: int
    reference: list[np.ndarray] | None = None  # ONNX Runtime's outputs for `arrays`

    @property
    def workers(self) -> int:
        """ringflow's inference requests: one for the overhead-bound model, where more only add
        hand-offs; one per core for the compute-bound one, each with its share of ORT threads, as
        `ringflow bench --auto` finds. The ceiling sweeps the same space for raw ORT."""
        return 1 if self.name == "tiny-mlp" else (os.cpu_count() or 1)

    @property
    def feed(self) -> dict[str, np.ndarray]:
        return dict(zip(self.input_names, self.arrays))


def load_workload(name: str, count: int, warmup: int, with_reference: bool = True) -> Workload:
    path = str(rf.models.ensure(name))
    model = rf.Model(path)
    names = [spec.name for spec in model.input_specs()]
    # The model's own deterministic synthetic inputs (batch 1), copied into plain numpy arrays so
    # every contender, ringflow or not, is handed exactly the same objects.
    arrays = [np.array(tensor) for tensor in model.synthetic_inputs(seed=0)]
    workload = Workload(name, path, names, arrays, count, max(1, warmup))
    if with_reference:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        workload.reference = session.run(None, workload.feed)
    return workload


@dataclass
class Measurement:
    samples: int
    seconds: float
    first_output: np.ndarray | None = None  # first output of one result, checked against ORT's
    extra: dict = field(default_factory=dict)
    latency_ms: dict | None = None  # {"p50": ..., "p99": ...} over the timed requests

    @property
    def fps(self) -> float:
        return self.samples / self.seconds


def latency_summary(seconds) -> dict:
    """p50 and p99 in milliseconds of per-request latencies given in seconds."""
    p50, p99 = np.percentile(np.asarray(seconds, dtype=np.float64) * 1e3, [50, 99])
    return {"p50": float(p50), "p99": float(p99)}


class Stamps:
    """When each of n requests went in and when its result came out, for latency beside throughput.
    Preallocated lists, so a stamp costs one perf_counter() call and one store; requests are
    numbered in submission order (a Run delivers in that order too)."""

    def __init__(self, n: int) -> None:
        self.submitted = [0.0] * n
        self.completed = [0.0] * n

    def latency_ms(self) -> dict:
        return latency_summary(np.subtract(self.completed, self.submitted))


# ---- ringflow contenders ----------------------------------------------------------------------

def ringflow_options(workload: Workload, pooled: bool = False, batched: bool = False) -> rf.RunOptions:
    return rf.RunOptions(queue_depth=QUEUE_DEPTH, workers=workload.workers,
                         max_batch=MAX_BATCH if batched else 1,
                         max_delay_us=MAX_DELAY_US if batched else 0,
                         output_memory=rf.OutputMemory.Pooled if pooled else rf.OutputMemory.Owned)


def push_and_pull(run: rf.Run, inputs: list[np.ndarray], n: int,
                  on_pulled: Callable[[int], None] | None = None,
                  bulk: bool = False) -> tuple[float, np.ndarray, dict]:
    """Pushes n requests from a producer thread while this thread, the consumer, pulls n results:
    one per push() and pull() call, or with bulk, PUSH_CHUNK per push_many() and up to PULL_CHUNK
    per pull_many().

    Returns the elapsed seconds, a copy of the first result's first output and the latency from
    push to pull. The Run stays open, so a warm-up phase and a timed phase can share it.
    """
    producer_errors: list[BaseException] = []
    stamps = Stamps(n)
    clock = time.perf_counter

    def produce() -> None:
        submitted = stamps.submitted
        try:
            if bulk:
                chunk = [inputs] * PUSH_CHUNK  # PUSH_CHUNK requests, each the workload's inputs
                for first_index in range(0, n, PUSH_CHUNK):
                    count = min(PUSH_CHUNK, n - first_index)
                    now = clock()
                    run.push_many(chunk if count == PUSH_CHUNK else chunk[:count])
                    submitted[first_index:first_index + count] = [now] * count
            else:
                for i in range(n):
                    submitted[i] = clock()
                    run.push(inputs)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer below
            producer_errors.append(error)
            run.close_input()  # so the consumer sees Closed instead of waiting for results

    first = None
    completed = stamps.completed
    start = clock()
    producer = threading.Thread(target=produce, name="producer", daemon=True)
    producer.start()
    try:
        pulled = 0
        while pulled < n:
            if bulk:
                samples = run.pull_many(min(PULL_CHUNK, n - pulled), PULL_TIMEOUT_MS)
                if not samples:
                    raise RuntimeError(f"pull_many after {pulled}/{n}: end of stream or timeout")
            else:
                result = run.pull_with_status(PULL_TIMEOUT_MS)
                if result.status != rf.PullStatus.Ok:
                    raise RuntimeError(f"pull {pulled + 1}/{n}: {result.status.name} {result.error}".strip())
                samples = (result.sample,)
            now = clock()
            for sample in samples:
                # Take the output as a numpy array, as a real consumer would (a zero-copy view).
                output = sample[0]
                if first is None:
                    first = output.copy()  # a copy: holding a Pooled buffer would shrink the pool
                completed[pulled] = now
                pulled += 1
                if on_pulled is not None:
                    on_pulled(pulled)
    except BaseException:
        run.close_input()  # a push blocked on a full queue raises ClosedError instead of hanging
        producer.join()
        if producer_errors:
            raise producer_errors[0] from None
        raise
    elapsed = clock() - start
    producer.join()
    if producer_errors:
        raise producer_errors[0]
    return elapsed, first, stamps.latency_ms()


def close_and_drain(run: rf.Run) -> None:
    run.close_input()
    while run.pull(timeout_ms=PULL_TIMEOUT_MS) is not None:
        pass


def build_run(workload: Workload, options: rf.RunOptions) -> rf.Run:
    graph = rf.Graph()
    graph.add(rf.Model(workload.path).graph())
    return graph.build(workload.arrays, options)


def measure_ringflow_py(workload: Workload, options: rf.RunOptions, bulk: bool = False) -> Measurement:
    run = build_run(workload, options)
    try:
        _, first, _ = push_and_pull(run, workload.arrays, workload.warmup, bulk=bulk)
        seconds, _, latency = push_and_pull(run, workload.arrays, workload.count, bulk=bulk)
        stats = run.stats()
    finally:
        close_and_drain(run)
    return Measurement(workload.count, seconds, first, {"avg_batch_size": stats.avg_batch_size}, latency)


def ringflow_py(workload: Workload) -> Measurement:
    return measure_ringflow_py(workload, ringflow_options(workload))


def ringflow_py_pooled(workload: Workload) -> Measurement:
    return measure_ringflow_py(workload, ringflow_options(workload, pooled=True))


def ringflow_py_batched(workload: Workload) -> Measurement:
    return measure_ringflow_py(workload, ringflow_options(workload, pooled=True, batched=True))


def ringflow_py_bulk(workload: Workload, batched: bool = False) -> Measurement:
    return measure_ringflow_py(workload, ringflow_options(workload, pooled=True, batched=batched), bulk=True)


class FirstOutput:
    """Keeps a copy of the first output a callback sees, for the correctness check."""

    def __init__(self) -> None:
        self.value: np.ndarray | None = None

    def keep(self, output: np.ndarray) -> None:
        if self.value is None:
            self.value = output.copy()


def ringflow_queue(workload: Workload) -> Measurement:
    """AsyncInferQueue with a Python callback, written as OpenVINO users write theirs."""
    queue = rf.AsyncInferQueue(rf.Model(workload.path))  # jobs=0: eight per core
    first = FirstOutput()
    clock = time.perf_counter

    def phase(n: int) -> tuple[float, Stamps]:
        stamps = Stamps(n)
        submitted, completed = stamps.submitted, stamps.completed

        def on_done(request, index: int) -> None:
            completed[index] = clock()
            first.keep(request.get_output_tensor(0).data)

        queue.set_callback(on_done)
        start = clock()
        for i in range(n):
            submitted[i] = clock()
            queue.start_async(workload.arrays, i)
        queue.wait_all()
        return clock() - start, stamps

    phase(workload.warmup)
    seconds, stamps = phase(workload.count)
    return Measurement(workload.count, seconds, first.value, {"jobs": len(queue)}, stamps.latency_ms())


def ringflow_callback(workload: Workload, batched: bool = False) -> Measurement:
    """One thread pushes; results come back in groups of CALLBACK_EVERY on the report thread."""
    run = build_run(workload, ringflow_options(workload, pooled=batched, batched=batched))
    first = FirstOutput()
    clock = time.perf_counter
    stamps = Stamps(0)
    delivered = [0]  # results delivered so far in this phase: they arrive in push order

    def on_results(results) -> None:
        now, start = clock(), delivered[0]
        stamps.completed[start:start + len(results)] = [now] * len(results)
        delivered[0] += len(results)
        first.keep(results[0].sample[0])

    run.set_callback(on_results, every=CALLBACK_EVERY)

    def phase(n: int) -> float:
        nonlocal stamps
        stamps, delivered[0] = Stamps(n), 0
        submitted = stamps.submitted
        start = clock()
        for i in range(n):
            submitted[i] = clock()
            run.push(workload.arrays)
        run.wait_all()
        return clock() - start

    try:
        phase(workload.warmup)
        seconds = phase(workload.count)
    finally:
        run.stop()
    return Measurement(workload.count, seconds, first.value, latency_ms=stamps.latency_ms())


def asyncio_requests(n: int, infer: Callable) -> tuple[float, np.ndarray | None, dict]:
    """n requests from ASYNC_TASKS concurrent coroutines, each awaiting infer() for its share in
    turn, as server handlers would; seconds taken and the first output. (Not a Semaphore over n
    tasks: waking its waiters costs asyncio time quadratic in their number.)"""
    first = FirstOutput()
    latencies: list[float] = []
    clock = time.perf_counter

    async def main() -> float:
        async def handler(requests: int) -> None:
            for _ in range(requests):
                started = clock()
                output = await infer()
                latencies.append(clock() - started)
                first.keep(output)

        shares = [n // ASYNC_TASKS + (1 if k < n % ASYNC_TASKS else 0) for k in range(ASYNC_TASKS)]
        start = clock()
        await asyncio.gather(*(handler(k) for k in shares if k))
        return clock() - start

    seconds = asyncio.run(main())
    return seconds, first.value, latency_summary(latencies)


def ringflow_asyncio(workload: Workload) -> Measurement:
    """await run.infer(x) from ASYNC_TASKS concurrent coroutines; ringflow batches them."""
    options = ringflow_options(workload, pooled=True, batched=True)
    options.queue_depth = ASYNC_TASKS  # a submit never blocks the event loop
    run = build_run(workload, options)

    async def infer() -> np.ndarray:
        return (await run.infer(workload.arrays))[0]

    try:
        asyncio_requests(workload.warmup, infer)
        seconds, first, latency = asyncio_requests(workload.count, infer)
        stats = run.stats()
    finally:
        run.stop()
    return Measurement(workload.count, seconds, first, {"avg_batch_size": stats.avg_batch_size}, latency)


def ort_executor(workload: Workload) -> Measurement:
    """The usual asyncio bridge to ONNX Runtime: loop.run_in_executor(None, session.run, ...) from
    ASYNC_TASKS concurrent coroutines, on asyncio's default thread pool."""
    session = ort_session(workload.path)
    feed = workload.feed

    async def infer() -> np.ndarray:
        return (await asyncio.get_running_loop().run_in_executor(None, session.run, None, feed))[0]

    asyncio_requests(workload.warmup, infer)
    seconds, first, latency = asyncio_requests(workload.count, infer)
    return Measurement(workload.count, seconds, first, latency_ms=latency)


def measure_ringflow_cpp(workload: Workload, binary: str, options: list[str]) -> Measurement:
    """Runs the C++ bench program once; it prints one JSON line with at least fps and peak_rss_kb."""
    command = [binary, "--model", workload.path, "--samples", str(workload.count),
               "--warmup", str(workload.warmup), "--queue", str(QUEUE_DEPTH),
               "--workers", str(workload.workers), *options]
    stdout, stderr, returncode, polled_peak_kb = run_polling_peak_rss(command)
    if returncode != 0:
        raise RuntimeError(f"{Path(binary).name} exited with {returncode}: {stderr.strip()[-400:]}")
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"{Path(binary).name} printed nothing on stdout")
    report = json.loads(lines[-1])
    samples = int(report.get("samples", workload.count))
    fps = float(report["fps"])
    if fps <= 0:
        raise RuntimeError(f"{Path(binary).name} reported fps {fps}")
    extra = {key: report[key] for key in ("stages",) if key in report}
    # The program's own figure comes from getrusage(), whose ru_maxrss on Linux survives exec():
    # launched from this Python process it reads at least this process's RSS. Kept for reference;
    # the peak reported is VmHWM of the program's own address space.
    extra["reported_peak_rss_kb"] = report.get("peak_rss_kb")
    extra["peak_rss_kb"] = polled_peak_kb
    # No output to check: the program keeps its results to itself.
    latency = report.get("latency_ms") or {}  # the engine's own push-to-result figures
    latency = {key: latency[key] for key in ("p50", "p99") if latency.get(key) is not None} or None
    return Measurement(samples, samples / fps, None, extra, latency)


def run_polling_peak_rss(command: list[str], interval_s: float = 0.02) -> tuple[str, str, int, int | None]:
    """Runs a program to completion, polling its VmHWM (peak RSS of its own address space, which
    starts afresh at exec) until it exits. Returns stdout, stderr, exit status and the last peak seen."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    status_file = Path(f"/proc/{process.pid}/status")
    peak_kb = None
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT_S
    while True:
        try:
            for line in status_file.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kb = int(line.split()[1])
        except (OSError, ValueError):
            pass  # exiting, or already a zombie without an address space
        try:
            stdout, stderr = process.communicate(timeout=interval_s)
            return stdout, stderr, process.returncode, peak_kb
        except subprocess.TimeoutExpired:
            if time.monotonic() > deadline:
                process.kill()
                process.communicate()
                raise


def ringflow_cpp(workload: Workload, binary: str) -> Measurement:
    return measure_ringflow_cpp(workload, binary, [])


def ringflow_cpp_batched(workload: Workload, binary: str) -> Measurement:
    return measure_ringflow_cpp(workload, binary, ["--max-batch", str(MAX_BATCH),
                                                   "--max-delay-us", str(MAX_DELAY_US), "--pooled"])


# ---- ONNX Runtime contenders ------------------------------------------------------------------

def ort_session(path: str, intra_op_threads: int | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()  # defaults, unless the ceiling sweep sets the thread count
    if intra_op_threads is not None:
        options.intra_op_num_threads = intra_op_threads
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def ort_run(workload: Workload) -> Measurement:
    session = ort_session(workload.path)
    feed = workload.feed
    first = session.run(None, feed)[0]
    for _ in range(workload.warmup):
        session.run(None, feed)
    return timed_loop(workload.count, lambda: session.run(None, feed), first)


def timed_loop(n: int, call: Callable[[], object], first: np.ndarray | None) -> Measurement:
    """n synchronous calls in a row; each call's duration is its request's latency."""
    clock = time.perf_counter
    stamps = [0.0] * (n + 1)  # stamps[i] is when call i started, and call i - 1 ended
    stamps[0] = clock()
    for i in range(1, n + 1):
        call()
        stamps[i] = clock()
    return Measurement(n, stamps[n] - stamps[0], first, latency_ms=latency_summary(np.diff(stamps)))


class InFlight:
    """Bounds the requests outstanding and counts completions.

    Completion callbacks arrive on ONNX Runtime's threads while the submitting thread waits for a
    free slot, so every count lives under one condition variable.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.condition = threading.Condition()
        self.outstanding = 0
        self.completed = 0
        self.error: str | None = None
        self.first_output: np.ndarray | None = None

    def acquire(self) -> None:
        with self.condition:
            self.condition.wait_for(lambda: self.outstanding < self.limit or self.error is not None)
            if self.error is not None:
                raise RuntimeError(self.error)
            self.outstanding += 1

    def release(self, output: np.ndarray | None = None, error: str | None = None) -> None:
        with self.condition:
            self.outstanding -= 1
            if error:
                self.error = self.error or error
            else:
                self.completed += 1
                if self.first_output is None and output is not None:
                    self.first_output = output
            self.condition.notify_all()

    def wait_until_idle(self, timeout_s: float) -> None:
        with self.condition:
            if not self.condition.wait_for(lambda: self.outstanding == 0, timeout_s):
                raise TimeoutError(f"{self.outstanding} requests still outstanding after {timeout_s:.0f} s")
            if self.error is not None:
                raise RuntimeError(self.error)


def ort_run_async(workload: Workload) -> Measurement:
    session = ort_session(workload.path)
    feed = workload.feed  # must stay alive until every callback has run

    clock = time.perf_counter

    def submit(n: int) -> tuple[InFlight, Stamps]:
        tracker = InFlight(ASYNC_IN_FLIGHT)
        stamps = Stamps(n)
        submitted, completed = stamps.submitted, stamps.completed

        def on_done(outputs, index: int, error: str) -> None:
            completed[index] = clock()
            tracker.release(outputs[0] if outputs else None, error or None)

        try:
            for i in range(n):
                tracker.acquire()
                submitted[i] = clock()
                try:
                    session.run_async(None, feed, on_done, i)
                except BaseException:
                    tracker.release(error="run_async raised")
                    raise
        finally:
            # Even on failure: the session must outlive every request still running on it.
            tracker.wait_until_idle(PULL_TIMEOUT_MS / 1000)
        if tracker.completed != n:
            raise RuntimeError(f"submitted {n} requests, {tracker.completed} completed")
        return tracker, stamps

    warm, _ = submit(workload.warmup)
    start = clock()
    _, stamps = submit(workload.count)
    return Measurement(workload.count, clock() - start, warm.first_output, latency_ms=stamps.latency_ms())


def ort_threadpool(workload: Workload) -> Measurement:
    session = ort_session(workload.path)  # one session shared by the workers: run() is thread-safe
    feed = workload.feed
    clock = time.perf_counter
    with concurrent.futures.ThreadPoolExecutor(max_workers=THREADPOOL_WORKERS) as pool:

        def submit(n: int) -> Stamps:
            stamps = Stamps(n)
            submitted, completed = stamps.submitted, stamps.completed

            def run_one(index: int) -> None:
                session.run(None, feed)
                completed[index] = clock()

            pending: collections.deque = collections.deque()
            for i in range(n):
                if len(pending) >= THREADPOOL_IN_FLIGHT:
                    pending.popleft().result()  # bounded: wait for the oldest before submitting more
                submitted[i] = clock()
                pending.append(pool.submit(run_one, i))
            for future in pending:
                future.result()
            return stamps

        first = pool.submit(session.run, None, feed).result()[0]
        submit(workload.warmup)
        start = clock()
        stamps = submit(workload.count)
        seconds = clock() - start
    return Measurement(workload.count, seconds, first, latency_ms=stamps.latency_ms())


def ort_sweep(workload: Workload, intra_op_threads: int, threads: int, own_sessions: bool) -> Measurement:
    """One configuration of the raw-ORT ceiling: `threads` Python threads calling run(), each on its
    own session or all on one. ORT releases the GIL inside run(), so the threads really overlap."""
    sessions = [ort_session(workload.path, intra_op_threads) for _ in range(threads if own_sessions else 1)]
    feed = workload.feed
    first = sessions[0].run(None, feed)[0]

    clock = time.perf_counter
    latencies: list[float] = []  # appended from several threads: list.append is atomic

    def run_all(n: int) -> float:
        lock = threading.Lock()
        remaining = [n]
        errors: list[BaseException] = []
        latencies.clear()

        def take_one() -> bool:
            with lock:  # shared work, so a thread that gets ahead does not idle at the end
                if remaining[0] == 0:
                    return False
                remaining[0] -= 1
                return True

        def work(session: ort.InferenceSession) -> None:
            try:
                while take_one():
                    started = clock()
                    session.run(None, feed)
                    latencies.append(clock() - started)
            except BaseException as error:  # noqa: BLE001 - re-raised on the main thread
                errors.append(error)

        workers = [threading.Thread(target=work, args=(sessions[i % len(sessions)],)) for i in range(threads)]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        if errors:
            raise errors[0]
        return time.perf_counter() - start

    run_all(workload.warmup)
    seconds = run_all(workload.count)
    return Measurement(workload.count, seconds, first, latency_ms=latency_summary(latencies))


# ---- OpenVINO contenders (optional) -----------------------------------------------------------

def openvino_compiled(workload: Workload, hint: str):
    import openvino as ov

    core = ov.Core()
    model = core.read_model(workload.path)
    # Every request is batch 1: a static shape lets OpenVINO compile for it once, as
    # benchmark_app -shape does. This favours the peer, never ringflow.
    model.reshape({name: list(array.shape) for name, array in zip(workload.input_names, workload.arrays)})
    return core.compile_model(model, "CPU", {"PERFORMANCE_HINT": hint})


def openvino_async(workload: Workload) -> Measurement:
    import openvino as ov

    # THROUGHPUT: several streams, with as many requests as OpenVINO finds optimal.
    queue = ov.AsyncInferQueue(openvino_compiled(workload, "THROUGHPUT"))
    lock = threading.Lock()
    completed = [0]
    first: list[np.ndarray] = []
    clock = time.perf_counter
    stamps = Stamps(0)

    def on_done(request, index: int) -> None:
        stamps.completed[index] = clock()
        # The request is reused as soon as this returns: keep a copy, as a real consumer must.
        output = request.get_output_tensor(0).data.copy()
        with lock:
            completed[0] += 1
            if not first:
                first.append(output)

    queue.set_callback(on_done)
    feed = workload.feed

    def submit(n: int) -> None:
        nonlocal stamps
        stamps, completed[0] = Stamps(n), 0
        for i in range(n):
            stamps.submitted[i] = clock()
            queue.start_async(feed, i)  # blocks while every request is busy: bounded in flight
        queue.wait_all()
        if completed[0] != n:
            raise RuntimeError(f"submitted {n} requests, {completed[0]} callbacks ran")

    submit(workload.warmup)
    start = clock()
    submit(workload.count)
    return Measurement(workload.count, clock() - start, first[0] if first else None,
                       latency_ms=stamps.latency_ms())


def openvino_sync(workload: Workload) -> Measurement:
    request = openvino_compiled(workload, "LATENCY").create_infer_request()
    feed = workload.feed
    first = np.array(request.infer(feed)[0])
    for _ in range(workload.warmup):
        request.infer(feed)[0]
    # infer() hands back copies of the outputs by default
    return timed_loop(workload.count, lambda: request.infer(feed)[0], first)


# ---- the contender registry -------------------------------------------------------------------

@dataclass
class Contender:
    name: str
    kind: str  # "ringflow", "peer", or "sweep" (a candidate for the resnet50 ceiling)
    measure: Callable[[Workload], Measurement]
    description: str
    skip_note: str | None = None  # why it cannot run on this machine
    workloads: tuple[str, ...] = WORKLOADS
    needs_openvino: bool = False


def sweep_name(intra_op_threads: int, threads: int, own_sessions: bool) -> str:
    sharing = "" if threads == 1 else ("-own" if own_sessions else "-shared")
    return f"ort-sweep-i{intra_op_threads}-t{threads}{sharing}"


def openvino_available() -> str | None:
    """None if OpenVINO imports, else why not."""
    if importlib.util.find_spec("openvino") is None:
        return "openvino is not installed (pip install openvino)"
    try:
        import openvino  # noqa: F401
    except Exception as error:  # noqa: BLE001 - any import failure just means "skip"
        return f"import openvino failed: {error}"
    return None


def build_contenders(settings: Settings) -> list[Contender]:
    cpp = settings.cpp_bench
    cpp_note = None if cpp else ("no ringflow_bench binary: build benchmarks/cpp "
                                 "(-DRINGFLOW_BUILD_BENCHMARKS=ON) or pass --cpp-bench PATH")
    ov_note = openvino_available()
    batching = f"max_batch {MAX_BATCH}, max_delay_us {MAX_DELAY_US}, Pooled"
    contenders = [
        Contender("ringflow-py", "ringflow", ringflow_py,
                  f"push/pull, one producer and one consumer thread; RunOptions(queue_depth={QUEUE_DEPTH})"),
        Contender("ringflow-py-pooled", "ringflow", ringflow_py_pooled, "as ringflow-py, output_memory Pooled"),
        Contender("ringflow-py-batched", "ringflow", ringflow_py_batched,
                  f"as ringflow-py, dynamic batching ({batching})"),
        Contender("ringflow-py-bulk", "ringflow", ringflow_py_bulk,
                  f"as ringflow-py-pooled, but push_many({PUSH_CHUNK} samples) and pull_many(up to {PULL_CHUNK})",
                  workloads=("tiny-mlp",)),
        Contender("ringflow-py-batched-bulk", "ringflow", lambda w: ringflow_py_bulk(w, batched=True),
                  f"as ringflow-py-bulk, dynamic batching ({batching})", workloads=("tiny-mlp",)),
        Contender("ringflow-queue", "ringflow", ringflow_queue,
                  "rf.AsyncInferQueue (jobs=0: eight per core) with a Python callback(request, userdata)"),
        Contender("ringflow-callback", "ringflow", ringflow_callback,
                  f"one thread pushes; Run.set_callback(every={CALLBACK_EVERY}) on the report thread; "
                  f"RunOptions(queue_depth={QUEUE_DEPTH})"),
        Contender("ringflow-callback-batched", "ringflow", lambda w: ringflow_callback(w, batched=True),
                  f"as ringflow-callback, dynamic batching ({batching})"),
        Contender("ringflow-asyncio", "ringflow", ringflow_asyncio,
                  f"await run.infer(x) from {ASYNC_TASKS} concurrent coroutines ({batching}, "
                  f"queue_depth {ASYNC_TASKS})"),
        Contender("ringflow-cpp", "ringflow", lambda w: ringflow_cpp(w, cpp),
                  f"C++ ringflow_bench, async, queue {QUEUE_DEPTH} (subprocess)", cpp_note),
        Contender("ringflow-cpp-batched", "ringflow", lambda w: ringflow_cpp_batched(w, cpp),
                  f"C++ ringflow_bench, async, {batching} (subprocess)", cpp_note),
        Contender("ort-run", "peer", ort_run, "InferenceSession.run in a loop, default session options"),
        Contender("ort-run-async", "peer", ort_run_async,
                  f"InferenceSession.run_async with a callback, up to {ASYNC_IN_FLIGHT} outstanding"),
        Contender("ort-threadpool", "peer", ort_threadpool,
                  f"ThreadPoolExecutor({THREADPOOL_WORKERS}) around run on one session, "
                  f"up to {THREADPOOL_IN_FLIGHT} in flight"),
        Contender("ort-executor", "peer", ort_executor,
                  f"await loop.run_in_executor(None, session.run, ...) from {ASYNC_TASKS} concurrent coroutines"),
        Contender("openvino-async", "peer", openvino_async,
                  "OpenVINO AsyncInferQueue with callbacks, THROUGHPUT hint, static batch-1 shape",
                  ov_note, needs_openvino=True),
        Contender("openvino-sync", "peer", openvino_sync,
                  "OpenVINO InferRequest.infer in a loop, LATENCY hint, static batch-1 shape",
                  ov_note, needs_openvino=True),
    ]
    for intra in SWEEP_INTRA_OP_THREADS:
        for threads in SWEEP_THREADS:
            for own in ((True, False) if threads > 1 else (True,)):
                sharing = "" if threads == 1 else (", a session each" if own else ", one shared session")
                contenders.append(Contender(
                    sweep_name(intra, threads, own), "sweep",
                    lambda w, i=intra, t=threads, o=own: ort_sweep(w, i, t, o),
                    f"ceiling candidate: intra_op_num_threads={intra}, {threads} thread(s) calling run{sharing}",
                    workloads=("resnet50",)))
    return contenders


# ---- interleaved measurement ------------------------------------------------------------------

@dataclass
class ContenderResult:
    name: str
    kind: str
    description: str
    runs: list  # samples/s per repeat; None where the repeat did not produce a number
    seconds: list
    skipped: str | None = None
    error: str | None = None
    output_check: str = "n/a"  # "ok", "MISMATCH: ...", or "n/a" (no output to compare)
    extra: dict = field(default_factory=dict)
    latency_ms: list = field(default_factory=list)  # {"p50", "p99"} per repeat that measured them

    @property
    def values(self) -> list[float]:
        return [v for v in self.runs if v is not None]

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    def latency_median(self, key: str) -> float | None:
        """The median over repeats of one latency percentile ("p50" or "p99")."""
        values = [latency[key] for latency in self.latency_ms if key in latency]
        return statistics.median(values) if values else None


_STARTED = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - _STARTED:4.0f} s] {message}", file=sys.stderr, flush=True)


def check_output(output: np.ndarray | None, reference: list[np.ndarray] | None) -> str:
    if output is None or not reference:
        return "n/a"
    expected = reference[0]
    output = np.asarray(output)
    if output.shape != expected.shape:
        return f"MISMATCH: shape {output.shape}, ORT gives {expected.shape}"
    # Loose enough for other kernels (OpenVINO) and batched GEMMs to round differently.
    scale = max(1.0, float(np.abs(expected).max()))
    difference = float(np.abs(output - expected).max())
    return "ok" if difference <= 1e-3 * scale else f"MISMATCH: max |difference| {difference:.3g}"


def run_interleaved(workload: Workload, contenders: list[Contender], repeats: int) -> dict[str, ContenderResult]:
    results = {c.name: ContenderResult(c.name, c.kind, c.description, [None] * repeats, [None] * repeats,
                                       skipped=c.skip_note)
               for c in contenders}
    active = [c for c in contenders if c.skip_note is None]
    for repeat in range(repeats):
        # Round-robin, starting one further along each repeat, so no contender always runs first
        # (coldest caches, freshest process) and a slow drift in the machine's load is shared out.
        shift = repeat % len(active) if active else 0
        for contender in active[shift:] + active[:shift]:
            result = results[contender.name]
            if result.error:
                continue  # it failed before: say so once instead of failing every repeat
            try:
                measurement = contender.measure(workload)
            except Exception as error:  # noqa: BLE001 - recorded and reported, never hidden
                result.error = f"{type(error).__name__}: {error}"
                log(f"  [{workload.name} {repeat + 1}/{repeats}] {contender.name:<24} FAILED {result.error}")
                continue
            result.runs[repeat] = measurement.fps
            result.seconds[repeat] = measurement.seconds
            result.extra = measurement.extra
            if measurement.latency_ms:
                result.latency_ms.append(measurement.latency_ms)
            if result.output_check == "n/a":  # the first output there is to compare
                result.output_check = check_output(measurement.first_output, workload.reference)
            log(f"  [{workload.name} {repeat + 1}/{repeats}] {contender.name:<24} "
                f"{measurement.fps:>12,.1f} samples/s  ({measurement.seconds:.2f} s)")
    return results


# ---- ratios and targets -----------------------------------------------------------------------

CEILING = "ort-ceiling"


@dataclass(frozen=True)
class Target:
    workload: str
    contender: str
    baseline: str  # a contender name, or CEILING
    at_least: float


TARGETS = (
    Target("tiny-mlp", "ringflow-py", "ort-run", 2.0),
    Target("tiny-mlp", "ringflow-py-batched", "ort-run", 4.0),
    Target("resnet50", "ringflow-py", CEILING, 0.97),
    Target("resnet50", "ringflow-py", "ort-run", 1.0),
    # run_async has no threshold of its own; parity is what is checked.
    Target("resnet50", "ringflow-py", "ort-run-async", 1.0),
    # Results by callback (issue 8).
    Target("tiny-mlp", "ringflow-queue", "openvino-async", 3.0),
    Target("tiny-mlp", "ringflow-queue", "ort-run-async", 2.0),
    Target("tiny-mlp", "ringflow-callback", "ort-run", 1.5),
    Target("resnet50", "ringflow-queue", CEILING, 0.97),
    Target("resnet50", "ringflow-callback", CEILING, 0.97),
    # Futures and asyncio (issue 10).
    Target("tiny-mlp", "ringflow-asyncio", "ort-executor", 4.0),
    Target("tiny-mlp", "ringflow-asyncio", "ort-run", 2.0),
    Target("resnet50", "ringflow-asyncio", CEILING, 0.97),
)


def best_of(results: dict[str, ContenderResult], kind: str) -> ContenderResult | None:
    measured = [r for r in results.values() if r.kind == kind and r.median is not None]
    return max(measured, key=lambda r: r.median) if measured else None


def resolve(results: dict[str, ContenderResult], name: str) -> ContenderResult | None:
    if name == CEILING:
        return best_of(results, "sweep")
    return results.get(name)


def paired_ratios(a: ContenderResult, b: ContenderResult) -> list[float]:
    """A/B within each repeat: both ran back to back, so they saw much the same machine."""
    return [x / y for x, y in zip(a.runs, b.runs) if x is not None and y is not None and y > 0]


def evaluate_targets(all_results: dict[str, dict[str, ContenderResult]]) -> list[dict]:
    verdicts = []
    for target in TARGETS:
        entry = asdict(target)
        results = all_results.get(target.workload)
        a = resolve(results, target.contender) if results else None
        b = resolve(results, target.baseline) if results else None
        if not results:
            entry.update(verdict="SKIP", reason=f"workload {target.workload} not run")
        elif a is None or a.median is None:
            entry.update(verdict="SKIP", reason=f"{target.contender} not measured")
        elif b is None or b.median is None:
            entry.update(verdict="SKIP", reason=f"{target.baseline} not measured")
        else:
            ratio = a.median / b.median
            paired = paired_ratios(a, b)
            entry.update(ratio=ratio, baseline_resolved=b.name,
                         paired_min=min(paired) if paired else None, paired_max=max(paired) if paired else None,
                         verdict="PASS" if ratio >= target.at_least else "MISS")
        verdicts.append(entry)
    return verdicts


# ---- memory -----------------------------------------------------------------------------------

def proc_status_kb(field_name: str) -> int | None:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return None


def reset_peak_rss() -> bool:
    """Resets VmHWM to the current RSS (Linux 4.0+), so the peak covers only what follows."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def prime_runtimes(with_openvino: bool) -> None:
    """Pays each runtime's one-time costs (library load, global environment, first session) on
    tiny-mlp, so the baseline holds them for every contender alike and no contender is charged
    for a runtime merely being present."""
    path = str(rf.models.ensure("tiny-mlp"))
    model = rf.Model(path)
    inputs = [np.array(tensor) for tensor in model.synthetic_inputs()]
    feed = {spec.name: array for spec, array in zip(model.input_specs(), inputs)}
    model.run(inputs)
    ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feed)
    if with_openvino:
        import openvino as ov

        ov.Core().compile_model(path, "CPU").create_infer_request().infer(feed)


def probe_rss(settings: Settings, contender_name: str, workload_name: str, inputs_path: str) -> dict:
    """Runs one contender once in this (fresh) process and reports its peak RSS."""
    contenders = {c.name: c for c in build_contenders(settings)}
    contender = contenders[contender_name]
    if contender.skip_note:
        return {"skipped": contender.skip_note}
    # The inputs come from the parent: building this model here to make them would leave its
    # session's memory behind in the baseline.
    with np.load(inputs_path) as saved:
        names, arrays = list(saved.files), [saved[name] for name in saved.files]
    workload = Workload(workload_name, str(rf.models.ensure(workload_name)), names, arrays,
                        settings.count[workload_name], max(1, settings.warmup[workload_name]))
    prime_runtimes(contender.needs_openvino)
    gc.collect()
    peak_was_reset = reset_peak_rss()
    baseline = proc_status_kb("VmRSS")
    measurement = contender.measure(workload)
    if "peak_rss_kb" in measurement.extra:  # a subprocess: its own peak, for the whole program
        return {"peak_rss_kb": measurement.extra["peak_rss_kb"], "delta_kb": None,
                "reported_peak_rss_kb": measurement.extra.get("reported_peak_rss_kb"),
                "scope": "whole C++ process (VmHWM polled every 20 ms)", "fps": measurement.fps}
    peak = proc_status_kb("VmHWM")
    return {"peak_rss_kb": peak, "baseline_rss_kb": baseline, "delta_kb": peak - baseline,
            "scope": "Python process" if peak_was_reset else "Python process (peak not reset: includes imports)",
            "fps": measurement.fps}


def probe_steady_state(settings: Settings, memory: str) -> dict:
    """RSS every `steady_every` samples while tiny-mlp samples stream through ringflow-py."""
    workload = load_workload("tiny-mlp", settings.steady_samples, settings.warmup["tiny-mlp"], with_reference=False)
    run = build_run(workload, ringflow_options(workload, pooled=memory == "pooled"))
    readings: list[list[int]] = []

    def sample_rss(pulled: int) -> None:
        if pulled % settings.steady_every == 0:
            readings.append([pulled, proc_status_kb("VmRSS")])

    try:
        push_and_pull(run, workload.arrays, workload.warmup)
        push_and_pull(run, workload.arrays, settings.steady_samples, on_pulled=sample_rss)
    finally:
        close_and_drain(run)
    first, last = readings[0][1], readings[-1][1]
    change = (last - first) / first
    return {"memory": memory, "samples": settings.steady_samples, "every": settings.steady_every,
            "warmup": workload.warmup, "readings_kb": readings, "first_kb": first, "last_kb": last,
            "change": change, "within_tolerance": abs(change) <= STEADY_STATE_TOLERANCE}


def probe_args(settings: Settings) -> list[str]:
    """The command-line options a probe subprocess needs to rebuild the same settings."""
    args = ["--count-tiny", str(settings.count["tiny-mlp"]), "--count-resnet", str(settings.count["resnet50"]),
            "--warmup-tiny", str(settings.warmup["tiny-mlp"]), "--warmup-resnet", str(settings.warmup["resnet50"]),
            "--steady-samples", str(settings.steady_samples), "--steady-every", str(settings.steady_every)]
    if settings.cpp_bench:
        args += ["--cpp-bench", settings.cpp_bench]
    return args


def run_probe(settings: Settings, probe: list[str]) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), *probe, *probe_args(settings)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": f"probe exited with {done.returncode}: {done.stderr.strip()[-400:]}"}
    return json.loads(lines[-1])


def measure_memory(settings: Settings, contenders: list[Contender], workloads: dict[str, Workload],
                   all_results: dict[str, dict[str, ContenderResult]], scratch: Path) -> dict:
    peaks: dict[str, dict] = {}
    for workload_name, results in all_results.items():
        if settings.quick and workload_name != "tiny-mlp":
            continue  # a quick run has no time for a model load per probe; tiny-mlp shows they work
        ceiling = best_of(results, "sweep")
        peaks[workload_name] = {}
        inputs_path = scratch / f"{workload_name}-inputs.npz"
        np.savez(inputs_path, **workloads[workload_name].feed)
        for contender in contenders:
            if workload_name not in contender.workloads:
                continue
            if contender.kind == "sweep" and (ceiling is None or contender.name != ceiling.name):
                continue  # only the configuration that became the ceiling
            if contender.skip_note:
                peaks[workload_name][contender.name] = {"skipped": contender.skip_note}
                continue
            log(f"  memory probe: {workload_name} {contender.name}")
            peaks[workload_name][contender.name] = run_probe(
                settings, ["--probe-rss", contender.name, workload_name, "--probe-inputs", str(inputs_path)])
    steady = {}
    if "tiny-mlp" in all_results:
        for memory in ("owned", "pooled"):
            log(f"  steady-state probe: ringflow-py {memory}, {settings.steady_samples:,} tiny-mlp samples")
            steady[memory] = run_probe(settings, ["--probe-steady", memory])
    return {"peak": peaks, "steady_state": steady}


# ---- queue microbenchmark ---------------------------------------------------------------------

def run_queue_bench(settings: Settings) -> dict:
    if not settings.queue_bench:
        return {"skipped": "no queue_bench binary: build benchmarks/cpp or pass --queue-bench PATH"}
    command = [settings.queue_bench, "--json"] + (["--quick"] if settings.quick else [])
    log(f"queue microbenchmark: {' '.join(command)}")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        return {"error": str(error)}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": f"queue_bench exited with {done.returncode}: {done.stderr.strip()[-400:]}"}
    return json.loads(lines[-1])


# ---- machine and environment ------------------------------------------------------------------

def machine_info() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    physical = set()  # distinct (package, core) pairs: hyperthreads share a core
    for block in cpuinfo.split("\n\n"):
        fields = dict(tuple(part.strip() for part in line.split(":", 1)) for line in block.splitlines() if ":" in line)
        if "core id" in fields:
            physical.add((fields.get("physical id"), fields["core id"]))
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    ram_kb = next((int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal:")), None)

    def version(package: str) -> str | None:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    try:
        commit = subprocess.run(["git", "-C", str(REPO_DIR), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        commit = None
    return {
        "cpu_model": models[0] if models else platform.processor(),
        "logical_cpus": os.cpu_count(),
        "physical_cores": len(physical) or None,
        "ram_gb": round(ram_kb / 2**20, 1) if ram_kb else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": ort.__version__,
        "ringflow": version("ringflow"),
        "ringflow_onnxruntime": rf.onnxruntime_version(),
        "openvino": version("openvino"),
        "openvino_importable": openvino_available() is None,
        "opencv": version("opencv-python") or version("opencv-python-headless") or version("opencv-contrib-python"),
        "git_commit": commit,
        "load_average_start": list(os.getloadavg()),
        "environment": {name: os.environ[name] for name in NOTED_ENVIRONMENT if name in os.environ},
    }


NOTED_ENVIRONMENT = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "ORT_NUM_THREADS",
                     "OPENVINO_NUM_THREADS")


def environment_notes() -> list[str]:
    notes = []
    for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if name in os.environ:
            notes.append(f"{name}={os.environ[name]} is set; it affects numpy only, which is not on the "
                         f"measured path.")
    for name in ("OMP_NUM_THREADS", "ORT_NUM_THREADS", "OPENVINO_NUM_THREADS"):
        if name in os.environ:
            notes.append(f"{name}={os.environ[name]} is set and may change thread counts.")
    return notes


# ---- reports ----------------------------------------------------------------------------------

def fmt_fps(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def fmt_ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.3g}" if value < 100 else f"{value:,.0f}"


def fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def cell(text: str) -> str:
    """Free text (an error message) made safe for a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def fmt_mb(kb: float | None) -> str:
    return "—" if kb is None else f"{kb / 1024:,.1f}"


def workload_rows(results: dict[str, ContenderResult]) -> tuple[list[ContenderResult], ContenderResult | None,
                                                                ContenderResult | None]:
    """The rows of a workload's main table: ringflow, then peers, then the ceiling (the best sweep)."""
    ceiling = best_of(results, "sweep")
    rows = [r for r in results.values() if r.kind == "ringflow"] + [r for r in results.values() if r.kind == "peer"]
    if ceiling:
        rows.append(ceiling)
    return rows, best_of(results, "peer"), ceiling


def markdown_report(report: dict, all_results: dict[str, dict[str, ContenderResult]]) -> str:
    info, settings = report["machine"], report["settings"]
    openvino = info["openvino"] or "not installed"
    if info["openvino"] and not info["openvino_importable"]:
        openvino += " (not importable)"
    out = [f"# ringflow vs peers: {report['tag']}", ""]
    if settings["quick"]:
        out += ["> **Quick smoke run** (`--quick`): tiny counts, one repeat. It shows that the harness works,",
                "> not how the contenders compare.", ""]
    out += [f"- Machine: {info['cpu_model']}, {info['logical_cpus']} logical CPUs "
            f"({info['physical_cores']} physical cores), {info['ram_gb']} GB RAM; {info['platform']}",
            f"- Versions: Python {info['python']}, numpy {info['numpy']}, onnxruntime {info['onnxruntime']} "
            f"(ringflow loads ORT {info['ringflow_onnxruntime']}), ringflow {info['ringflow']}, "
            f"OpenVINO {openvino}; commit {(info['git_commit'] or '?')[:12]}",
            f"- Load average at start / end: {' '.join(f'{x:.2f}' for x in info['load_average_start'])} / "
            f"{' '.join(f'{x:.2f}' for x in info['load_average_end'])}",
            f"- {settings['repeats']} repeat(s), interleaved round-robin; samples/s is the median over repeats, "
            f"min–max beside it. Ratios are of medians; \"paired\" is the range of per-repeat ratios.",
            "- p50/p99 ms: each request's latency from submission (push, start_async, run, await) to its "
            "result, median over repeats. Every contender is driven at full load, so latency includes the "
            "time a request waits behind those in flight; a deeper queue buys throughput with latency. "
            "ringflow-cpp reports the engine's own push-to-pull figures, warm-up included.", ""]

    for workload_name, results in all_results.items():
        rows, best_peer, ceiling = workload_rows(results)
        wl = report["workloads"][workload_name]
        out += [f"## {workload_name}: batch-1 requests, {wl['count']:,} timed samples per repeat "
                f"(after {wl['warmup']:,} warm-up)", ""]
        header = "| contender | median samples/s | min–max | p50 ms | p99 ms | vs best peer" + \
                 (f" ({best_peer.name})" if best_peer else "") + " |"
        divider = "|---|---:|---:|---:|---:|---:|"
        if ceiling:
            header += " vs ceiling |"
            divider += "---:|"
        out += [header + " output vs ORT |", divider + "---|"]
        for r in rows:
            label = f"{CEILING} ({r.name})" if r is ceiling else r.name
            if r.median is None:
                status = cell(f"skipped: {r.skipped}" if r.skipped else f"failed: {r.error}")
                out.append(f"| {label} | {status} | | | | |" + (" |" if ceiling else "") + " |")
                continue
            line = (f"| {label} | {fmt_fps(r.median)} | {fmt_fps(min(r.values))}–{fmt_fps(max(r.values))} | "
                    f"{fmt_ms(r.latency_median('p50'))} | {fmt_ms(r.latency_median('p99'))} | "
                    f"{fmt_ratio(r.median / best_peer.median) if best_peer else '—'} |")
            if ceiling:
                line += f" {fmt_ratio(r.median / ceiling.median)} |"
            batch = r.extra.get("avg_batch_size")
            out.append(line + f" {r.output_check}" + (f"; avg batch {batch:.1f}" if batch and batch > 1 else "") + " |")
        out.append("")
        sweeps = [r for r in results.values() if r.kind == "sweep"]
        if sweeps:
            out += ["Ceiling sweep (raw ORT from Python threads; the fastest median becomes the ceiling):", "",
                    "| configuration | median samples/s | min–max |", "|---|---:|---:|"]
            for r in sorted(sweeps, key=lambda r: -(r.median or 0)):
                spread = f"{fmt_fps(min(r.values))}–{fmt_fps(max(r.values))}" if r.values else (r.error or "")
                out.append(f"| {r.description.removeprefix('ceiling candidate: ')} | {fmt_fps(r.median)} | {spread} |")
            out.append("")

    out += ["## Targets", "", "| workload | ratio | measured | paired range | target | verdict |",
            "|---|---|---:|---:|---:|---|"]
    for t in report["targets"]:
        name = f"{t['contender']} / {t['baseline']}"
        if t["verdict"] == "SKIP":
            out.append(f"| {t['workload']} | {name} | — | — | ≥{t['at_least']:.2f}x | SKIP ({cell(t['reason'])}) |")
        else:
            out.append(f"| {t['workload']} | {name} | {fmt_ratio(t['ratio'])} | "
                       f"{fmt_ratio(t['paired_min'])}–{fmt_ratio(t['paired_max'])} | ≥{t['at_least']:.2f}x | "
                       f"**{t['verdict']}** |")
    out.append("")

    memory = report.get("memory")
    if memory:
        out += ["## Memory", "",
                "Peak RSS of one run (warm-up + timed samples), each contender in a fresh process. "
                "\"During run\" is the peak minus the RSS just before the run, by when the inputs are "
                "loaded and every runtime has paid its one-time set-up on tiny-mlp. The C++ program's peak "
                "is its own process's VmHWM, polled while it runs.", "",
                "| workload | contender | peak RSS MB | during run MB | scope |", "|---|---|---:|---:|---|"]
        for workload_name, peaks in memory["peak"].items():
            for name, p in peaks.items():
                if "skipped" in p or "error" in p:
                    out.append(f"| {workload_name} | {name} | {cell(p.get('skipped') or p.get('error'))} | | |")
                else:
                    out.append(f"| {workload_name} | {name} | {fmt_mb(p['peak_rss_kb'])} | {fmt_mb(p['delta_kb'])} | "
                               f"{p['scope']} |")
        out.append("")
        if memory["steady_state"]:
            out += ["Steady state: ringflow-py on tiny-mlp, RSS after warm-up, sampled every "
                    f"{settings['steady_every']:,} samples over {settings['steady_samples']:,}.", "",
                    "| output memory | first MB | last MB | change | within ±2% |", "|---|---:|---:|---:|---|"]
            for memory_kind, s in memory["steady_state"].items():
                if "error" in s:
                    out.append(f"| {memory_kind} | {cell(s['error'])} | | | |")
                else:
                    out.append(f"| {memory_kind} | {fmt_mb(s['first_kb'])} | {fmt_mb(s['last_kb'])} | "
                               f"{s['change'] * 100:+.2f}% | {'yes' if s['within_tolerance'] else '**NO**'} |")
            out.append("")

    queue = report.get("queue_bench") or {}
    out += ["## Queue microbenchmark (queue_bench)", ""]
    if "scenarios" in queue:
        out += [f"Hops/s, median of {queue.get('repeats')} repeat(s) ({queue.get('hardware_threads')} hardware threads; "
                "* = more threads than hardware threads).", "",
                "| scenario | ring-spin | ring-park | mutex-cv | spin / mutex | park / mutex |",
                "|---|---:|---:|---:|---:|---:|"]
        for s in queue["scenarios"]:
            c = s["contenders"]
            medians = " | ".join(f"{c[k]['median'] / 1e6:,.2f} M" if k in c else "—"
                                 for k in ("ring-spin", "ring-park", "mutex-cv"))
            ratios = s.get("ratio", {})
            out.append(f"| {s['name']}{'*' if s.get('oversubscribed') else ''} | {medians} | "
                       f"{fmt_ratio(ratios.get('ring-spin/mutex-cv'))} | {fmt_ratio(ratios.get('ring-park/mutex-cv'))} |")
    else:
        out.append(f"Not run: {queue.get('skipped') or queue.get('error')}")
    out.append("")

    out += ["## Contenders", ""]
    seen = set()
    for results in all_results.values():
        for r in results.values():
            if r.name not in seen and r.kind != "sweep":
                seen.add(r.name)
                out.append(f"- **{r.name}**: {r.description}")
    out.append(f"- **{CEILING}**: the fastest ort-sweep configuration (resnet50 only)")
    out.append("")
    if report["notes"]:
        out += ["## Notes", ""] + [f"- {note}" for note in report["notes"]] + [""]
    return "\n".join(out)


def nice_step(span: float, ticks: int = 5) -> float:
    raw = span / ticks
    magnitude = 10 ** np.floor(np.log10(raw))
    for multiple in (1, 2, 5, 10):
        if raw <= multiple * magnitude:
            return multiple * magnitude
    return 10 * magnitude


def draw_chart(all_results: dict[str, dict[str, ContenderResult]], title: str, path: Path) -> None:
    """Horizontal bars per workload: median samples/s, whiskers from min to max. Drawn with OpenCV."""
    import cv2

    colors = {"ringflow": (170, 110, 20), "peer": (120, 120, 120), "sweep": (40, 40, 190)}  # BGR
    font, small, regular, bold = cv2.FONT_HERSHEY_SIMPLEX, 0.5, 0.6, 0.8
    width, label_width, value_width, row_height = 1400, 360, 170, 34
    plot_left, plot_right = label_width + 10, width - value_width

    panels = []
    for workload_name, results in all_results.items():
        rows, _, ceiling = workload_rows(results)
        panels.append((workload_name, rows, ceiling))
    height = 90 + sum(80 + row_height * len(rows) + 40 for _, rows, _ in panels)
    image = np.full((height, width, 3), 255, np.uint8)

    def text(s: str, x: int, y: int, scale: float = regular, color=(30, 30, 30), thickness: int = 1,
             align: str = "left") -> None:
        (w, _), _ = cv2.getTextSize(s, font, scale, thickness)
        x = {"left": x, "right": x - w, "center": x - w / 2}[align]
        cv2.putText(image, s, (int(x), int(y)), font, scale, color, thickness, cv2.LINE_AA)

    text(title, 20, 36, bold, thickness=2)
    legend_x = 20
    for kind, label in (("ringflow", "ringflow"), ("peer", "peer"), ("sweep", "ceiling (best raw-ORT config)")):
        cv2.rectangle(image, (legend_x, 52), (legend_x + 18, 70), colors[kind], -1)
        text(label, legend_x + 26, 67, small)
        legend_x += 40 + cv2.getTextSize(label, font, small, 1)[0][0]
    text("bar = median samples/s, whisker = min-max over repeats", width - 20, 67, small, (90, 90, 90),
         align="right")

    y = 90
    for workload_name, rows, ceiling in panels:
        text(workload_name, 20, y + 30, bold, thickness=2)
        top = y + 50
        top_value = max([max(r.values) for r in rows if r.values] or [1.0]) * 1.05
        step = nice_step(top_value)
        scale = (plot_right - plot_left) / (np.ceil(top_value / step) * step)
        bottom = top + row_height * len(rows)
        tick = 0.0
        while plot_left + tick * scale <= plot_right + 1:  # grid and axis labels
            x = int(plot_left + tick * scale)
            cv2.line(image, (x, top - 4), (x, bottom), (225, 225, 225), 1)
            label = f"{tick:,.0f}" if step >= 1 else f"{tick:,.1f}"
            text(label, x, bottom + 20, small, (90, 90, 90), align="center")
            tick += step
        for i, r in enumerate(rows):
            center = top + i * row_height + row_height // 2
            label = f"{CEILING} ({r.name.removeprefix('ort-sweep-')})" if r is ceiling else r.name
            text(label, label_width, center + 6, regular, align="right")
            if r.median is None:
                text("skipped" if r.skipped else "failed", plot_left + 6, center + 6, small, (60, 60, 200))
                continue
            x_median = int(plot_left + r.median * scale)
            cv2.rectangle(image, (plot_left, center - 11), (x_median, center + 11), colors[r.kind], -1)
            x_min, x_max = int(plot_left + min(r.values) * scale), int(plot_left + max(r.values) * scale)
            cv2.line(image, (x_min, center), (x_max, center), (20, 20, 20), 2)
            for x in (x_min, x_max):
                cv2.line(image, (x, center - 7), (x, center + 7), (20, 20, 20), 2)
            text(fmt_fps(r.median) + "/s", max(x_median, x_max) + 8, center + 6, small)
        cv2.line(image, (plot_left, top - 4), (plot_left, bottom), (60, 60, 60), 1)
        y = bottom + 40 + 30
    cv2.imwrite(str(path), image)


def result_to_json(r: ContenderResult) -> dict:
    data = asdict(r)
    data.update(median=r.median, min=min(r.values) if r.values else None, max=max(r.values) if r.values else None,
                p50_ms=r.latency_median("p50"), p99_ms=r.latency_median("p99"))
    return data


# ---- command line -----------------------------------------------------------------------------

def locate(explicit: str | None, candidates: list[Path], flag: str) -> str | None:
    if explicit:
        if not Path(explicit).is_file():
            raise SystemExit(f"compare.py: {flag} {explicit}: no such file")
        return str(Path(explicit).resolve())
    return next((str(c) for c in candidates if c.is_file()), None)


def parse_settings(argv: list[str] | None) -> tuple[argparse.Namespace, Settings]:
    parser = argparse.ArgumentParser(
        description="ringflow vs its peers, side by side, in one process run. See benchmarks/README.md.")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated: tiny-mlp,resnet50")
    parser.add_argument("--repeats", type=int, help="interleaved repeats per contender (default 5; --quick 1)")
    parser.add_argument("--count-tiny", type=int, help="timed tiny-mlp samples per repeat (default 20000)")
    parser.add_argument("--count-resnet", type=int, help="timed resnet50 samples per repeat (default 64)")
    parser.add_argument("--warmup-tiny", type=int, help="untimed tiny-mlp samples first (default 1000)")
    parser.add_argument("--warmup-resnet", type=int, help="untimed resnet50 samples first (default 4)")
    parser.add_argument("--steady-samples", type=int, help="steady-state memory check: samples (default 100000)")
    parser.add_argument("--steady-every", type=int, help="steady-state memory check: RSS every N (default 10000)")
    parser.add_argument("--cpp-bench", metavar="PATH", help="the ringflow_bench binary "
                        f"(default: {DEFAULT_CPP_BUILD_DIR.relative_to(REPO_DIR)}/ringflow_bench, if built)")
    parser.add_argument("--queue-bench", metavar="PATH", help="the queue_bench binary (default: next to ringflow_bench)")
    parser.add_argument("--contenders", help="comma-separated subset of contender names (default: all)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory probes")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 repeat, small counts, about a minute")
    parser.add_argument("--tag", help="name of the results JSON (default: a timestamp)")
    parser.add_argument("--results-dir", default=str(DEFAULT_RESULTS_DIR), help="where reports go")
    # Internal: one measurement in a fresh process, so memory peaks do not mix.
    parser.add_argument("--probe-rss", nargs=2, metavar=("CONTENDER", "WORKLOAD"), help=argparse.SUPPRESS)
    parser.add_argument("--probe-inputs", metavar="NPZ", help=argparse.SUPPRESS)
    parser.add_argument("--probe-steady", choices=["owned", "pooled"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    defaults = QUICK_DEFAULTS if args.quick else FULL_DEFAULTS
    pick = lambda name: getattr(args, name) if getattr(args, name) is not None else defaults[name]  # noqa: E731
    workloads = tuple(w.strip() for w in args.workloads.split(",") if w.strip())
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown or not workloads:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    for name in ("repeats", "count_tiny", "count_resnet", "steady_samples", "steady_every"):
        if pick(name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if pick("steady_every") > pick("steady_samples"):
        parser.error("--steady-every must not exceed --steady-samples")
    cpp_bench = locate(args.cpp_bench, [DEFAULT_CPP_BUILD_DIR / "ringflow_bench"], "--cpp-bench")
    queue_candidates = ([Path(cpp_bench).parent / "queue_bench"] if cpp_bench else []) + \
                       [DEFAULT_CPP_BUILD_DIR / "queue_bench"]
    settings = Settings(
        workloads=workloads, repeats=pick("repeats"),
        count={"tiny-mlp": pick("count_tiny"), "resnet50": pick("count_resnet")},
        warmup={"tiny-mlp": pick("warmup_tiny"), "resnet50": pick("warmup_resnet")},
        steady_samples=pick("steady_samples"), steady_every=pick("steady_every"), quick=args.quick,
        cpp_bench=cpp_bench, queue_bench=locate(args.queue_bench, queue_candidates, "--queue-bench"),
        memory=not args.no_memory)
    return args, settings


def main(argv: list[str] | None = None) -> int:
    args, settings = parse_settings(argv)
    if args.probe_rss:
        print(json.dumps(probe_rss(settings, *args.probe_rss, args.probe_inputs)))
        return 0
    if args.probe_steady:
        print(json.dumps(probe_steady_state(settings, args.probe_steady)))
        return 0

    started = time.perf_counter()
    machine = machine_info()
    contenders = build_contenders(settings)
    if args.contenders:
        wanted = {name.strip() for name in args.contenders.split(",")}
        unknown = wanted - {c.name for c in contenders}
        if unknown:
            raise SystemExit(f"compare.py: unknown contender(s) {', '.join(sorted(unknown))}; "
                             f"choose from {', '.join(c.name for c in contenders)}")
        contenders = [c for c in contenders if c.name in wanted]
    notes = environment_notes()
    notes += [f"{c.name} skipped: {c.skip_note}" for c in contenders if c.skip_note and c.kind != "sweep"]

    all_results: dict[str, dict[str, ContenderResult]] = {}
    workloads: dict[str, Workload] = {}
    workload_info = {}
    for workload_name in settings.workloads:
        log(f"{workload_name}: loading, {settings.repeats} repeat(s) of {settings.count[workload_name]:,} samples")
        workload = workloads[workload_name] = load_workload(workload_name, settings.count[workload_name],
                                                            settings.warmup[workload_name])
        here = [c for c in contenders if workload_name in c.workloads]
        all_results[workload_name] = run_interleaved(workload, here, settings.repeats)
        workload_info[workload_name] = {"model": workload.path, "count": workload.count, "warmup": workload.warmup,
                                        "input_shapes": [list(a.shape) for a in workload.arrays]}

    for workload_name, results in all_results.items():
        short = sorted(r.name for r in results.values() if any(s is not None and s < SHORT_PHASE_S for s in r.seconds))
        if short:
            notes.append(f"{workload_name}: timed phases under {SHORT_PHASE_S * 1e3:.0f} ms for {', '.join(short)}; "
                         f"one scheduler hiccup moves such numbers, so raise the count for steadier ones.")
        for r in results.values():
            if r.output_check.startswith("MISMATCH"):
                notes.append(f"{workload_name} {r.name}: output differs from ONNX Runtime's ({r.output_check}).")
            if r.error:
                notes.append(f"{workload_name} {r.name} failed: {r.error}")

    memory = None
    if settings.memory:
        log("memory: each contender once in a fresh process")
        with tempfile.TemporaryDirectory(prefix="ringflow-compare-") as scratch:
            memory = measure_memory(settings, contenders, workloads, all_results, Path(scratch))
        if settings.quick and "resnet50" in all_results:
            notes.append("--quick: resnet50 memory probes skipped.")
    queue = run_queue_bench(settings)
    machine["load_average_end"] = list(os.getloadavg())

    tag = args.tag or datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + ("-quick" if settings.quick else "")
    report = {
        "tag": tag,
        "settings": {"repeats": settings.repeats, "quick": settings.quick, "counts": settings.count,
                     "warmups": settings.warmup, "steady_samples": settings.steady_samples,
                     "steady_every": settings.steady_every, "cpp_bench": settings.cpp_bench,
                     "queue_bench": settings.queue_bench, "queue_depth": QUEUE_DEPTH, "max_batch": MAX_BATCH,
                     "max_delay_us": MAX_DELAY_US, "async_in_flight": ASYNC_IN_FLIGHT,
                     "threadpool_workers": THREADPOOL_WORKERS, "threadpool_in_flight": THREADPOOL_IN_FLIGHT},
        "machine": machine,
        "workloads": {name: {**workload_info[name],
                             "best_peer": getattr(best_of(results, "peer"), "name", None),
                             "ceiling": getattr(best_of(results, "sweep"), "name", None),
                             "contenders": {r.name: result_to_json(r) for r in results.values()}}
                      for name, results in all_results.items()},
        "targets": evaluate_targets(all_results),
        "memory": memory,
        "queue_bench": queue,
        "notes": notes,
    }

    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{tag}.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    markdown = markdown_report(report, all_results)
    (results_dir / "latest.md").write_text(markdown)
    try:
        draw_chart(all_results, f"ringflow vs peers: {tag}", results_dir / "latest.png")
    except ImportError:
        log("no OpenCV (cv2): latest.png not drawn")
    print(markdown)
    log(f"wrote {results_dir / (tag + '.json')}, latest.md, latest.png in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

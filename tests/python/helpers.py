"""Plain helpers shared by the tests; the fixtures that hand them out live in conftest.py.

Every numerical check compares ringflow against a plain ``onnxruntime.InferenceSession`` opened on
the same model file (the "oracle"). ringflow loads the libonnxruntime shipped in that same wheel, so
the two should agree to float rounding; ORACLE_ATOL is the bound every parity test uses.
"""

from __future__ import annotations

import asyncio

import dataclasses
import pathlib
import threading
import time
from typing import Any, Callable

import numpy as np
import onnxruntime as ort
import pytest

import ringflow as rf

ORACLE_ATOL = 1e-5

# Generous bound for "this call must come back": only there to turn a hang into a failure, never
# to measure speed. resnet50 takes ~0.15 s per inference on the 2-core CI box.
HANG_TIMEOUT_S = 60.0


class Oracle:
    """Reference outputs from onnxruntime's own Python API on the same model file."""

    def __init__(self, path: pathlib.Path) -> None:
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The first output for one input array (any batch size)."""
        return self.session.run(None, {self.input_name: x})[0]

    def batched(self, xs: list[np.ndarray], chunk: int = 25) -> list[np.ndarray]:
        """Per-sample outputs for inputs of batch 1, computed `chunk` samples per ORT call.

        Much faster than one call per sample; test_oracle.py checks that batched and per-sample
        oracle outputs agree within ORACLE_ATOL, which is what makes this shortcut legitimate.
        """
        outputs: list[np.ndarray] = []
        for start in range(0, len(xs), chunk):
            batch_out = self(np.concatenate(xs[start:start + chunk]))
            outputs.extend(batch_out[i:i + 1] for i in range(len(batch_out)))
        return outputs


@dataclasses.dataclass
class ModelCase:
    """One built-in model with everything a test needs to drive it and check its outputs."""

    name: str
    path: pathlib.Path
    model: rf.Model          # default options, shared by the whole session
    oracle: Oracle
    sample_shape: tuple      # one sample's input shape, batch dimension 1

    @classmethod
    def load(cls, name: str) -> "ModelCase":
        path = rf.models.ensure(name)
        model = rf.Model(str(path))
        # Batch is dynamic ("N"); every other dimension is fixed in the built-in models.
        sample_shape = (1,) + tuple(model.input_specs()[0].shape[1:])
        return cls(name, path, model, Oracle(path), sample_shape)

    def input_for(self, key: int) -> np.ndarray:
        """A random float32 input determined by `key`, so producer and checker agree on it."""
        rng = np.random.default_rng([20240601, key])
        return rng.standard_normal(self.sample_shape, dtype=np.float32)


def build_run(model: rf.Model, seed: Any, queue_depth: int = 8, workers: int = 1,
              **options: Any) -> rf.Run:
    """A Run of `model` alone, routed input to output (the only graph this release builds).
    `options` are any further rf.RunOptions keyword arguments (overflow_policy, max_batch, ...)."""
    graph = rf.Graph()
    graph.add(model.graph(rf.Model.RouteOptions(include_input=True, include_output=True)))
    return graph.build(seed, rf.RunOptions(queue_depth=queue_depth, workers=workers, **options))


def pull_until_closed(run: rf.Run, timeout_ms: int = 30_000):
    """Yields each result until end of stream (close_input() must come, from this thread or
    another). Fails the test on a timeout or a failed sample. The caller decides what to keep, so
    pooled result buffers can be let go at once."""
    pulled = 0
    while True:
        result = run.pull_with_status(timeout_ms=timeout_ms)
        status = result.status
        assert status != rf.PullStatus.Timeout, f"no result within {timeout_ms} ms after {pulled}"
        if status == rf.PullStatus.Closed:
            return
        assert status == rf.PullStatus.Ok, result
        sample = result.sample
        del result
        pulled += 1
        yield sample
        del sample


class BackgroundCall:
    """Runs `fn` on a daemon thread. join() returns its result, re-raises its exception in the
    test thread, and fails the test if the call hangs (daemon, so a hang cannot block exit)."""

    def __init__(self, fn: Callable[[], Any], name: str = "background call") -> None:
        self._fn = fn
        self._result: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            self._result = self._fn()
        except BaseException as error:  # noqa: BLE001 - handed to the test thread by join()
            self._error = error

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout_s: float = HANG_TIMEOUT_S) -> Any:
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            pytest.fail(f"{self._thread.name} did not return within {timeout_s} s (hang?)")
        if self._error is not None:
            raise self._error
        return self._result


def call_with_deadline(fn: Callable[[], Any], timeout_s: float = HANG_TIMEOUT_S,
                       name: str = "call") -> Any:
    """fn() on another thread, so a call that never returns fails the test instead of hanging."""
    return BackgroundCall(fn, name).join(timeout_s)


def max_abs_diff(actual: np.ndarray, expected: np.ndarray) -> float:
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != expected {expected.shape}"
    assert actual.dtype == expected.dtype, f"dtype {actual.dtype} != expected {expected.dtype}"
    return float(np.max(np.abs(actual.astype(np.float64) - expected.astype(np.float64))))


def assert_matches(actual: np.ndarray, expected: np.ndarray, atol: float = ORACLE_ATOL,
                   what: str = "output") -> None:
    diff = max_abs_diff(actual, expected)
    assert diff <= atol, f"{what}: max abs diff {diff:.3g} exceeds {atol:.3g}"


class ProgressCounter:
    """A pure-Python thread that loops as fast as the GIL lets it, timestamping its progress.

    Whether a call released the GIL shows in the stamps taken while the call was in progress. A
    call that holds the GIL starves the counter completely from just after it enters C++ until it
    returns: the counter can only run around the call's edges. So only stamps inside the middle of
    the call's time window count as evidence; the edges are left out, however long they last.
    """

    STAMP_EVERY = 1000  # loop iterations per timestamp: a few per millisecond of running

    def __init__(self) -> None:
        self.stamps: list[float] = []
        self._stop = False
        self._thread = threading.Thread(target=self._main, name="progress counter", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        stamps, now, every = self.stamps, time.perf_counter, self.STAMP_EVERY
        i = 0
        while not self._stop:
            i += 1
            if i % every == 0:
                stamps.append(now())

    def ran_inside(self, fn: Callable[[], Any], edge_fraction: float = 0.25) -> tuple[bool, Any]:
        """Calls fn(). Returns (whether the counter ran during the middle of the call, result):
        the middle is the call's window minus `edge_fraction` of its duration at each end."""
        start = time.perf_counter()
        result = fn()
        end = time.perf_counter()
        edge = (end - start) * edge_fraction
        lo, hi = start + edge, end - edge
        # Only the newest stamps can fall in the window; scan back from the end.
        for stamp in reversed(self.stamps):
            if stamp < lo:
                break
            if stamp <= hi:
                return True, result
        return False, result

    def stop(self) -> None:
        self._stop = True
        self._thread.join()


def mlp_rows(n: int, seed: int = 0) -> list[np.ndarray]:
    """n random tiny-mlp inputs, float32 [1, 64] each."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((1, 64)).astype(np.float32) for _ in range(n)]


async def tick_gaps(gaps: list[float], stop: asyncio.Event) -> None:
    """A coroutine that ticks every 1 ms until `stop` is set, recording each gap between ticks: a
    gap far beyond 1 ms means the event loop was blocked."""
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now

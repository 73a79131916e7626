# Type stubs for the C++ extension (made with pybind11-stubgen, then edited: input unions,
# exception classes). Keep in step with python/src/bindings.cpp.
"""
ringflow engine (C++). Import `ringflow`, not this module.
"""
from __future__ import annotations
import builtins
import os
import typing
from collections.abc import Callable, Mapping, Sequence

import numpy

# What push(), try_push(), check(), run(), Model.run() and Graph.build() accept: one array, the
# model's inputs in order, inputs by name, or a Sample.
ArrayLike = typing.Union[numpy.ndarray, "Tensor"]
Inputs = typing.Union[ArrayLike, Sequence[ArrayLike], Mapping[str, ArrayLike], "Sample"]

class Error(RuntimeError): ...
class ShapeError(Error, ValueError): ...
class DTypeError(Error, TypeError): ...
class ModelError(Error): ...
class ClosedError(Error): ...
class TimeoutError(Error, builtins.TimeoutError): ...
class InferenceError(Error): ...
class CancelledError(Error): ...
class CallbackError(Error):
    accepted: bool
    errors: list[BaseException]
__all__: list[str] = ['AsyncInferQueue', 'BenchmarkReport', 'CallbackError', 'CancelledError', 'ClosedError', 'ColorFormat', 'DTypeError', 'DetectionOutput', 'Future', 'DropReason', 'DroppedInput', 'Error', 'Graph', 'GraphOptimization', 'InferRequest', 'InferenceError', 'InputStats', 'LatencySummary', 'Model', 'ModelError', 'NormalizeOptions', 'OutputMemory', 'OverflowPolicy', 'PreprocessOptions', 'PullResult', 'PullStatus', 'ReportThread', 'Run', 'RunOptions', 'RunStats', 'Sample', 'SessionOptions', 'ShapeError', 'Stage', 'StageStats', 'Tensor', 'TensorSpec', 'TimeoutError', 'TopK', 'Waker', 'onnxruntime_version', 'set_onnxruntime_library', 'tensors_from_sample']
class TensorSpec:
    def __repr__(self) -> str:
        ...
    @property
    def dtype(self) -> numpy.dtype[typing.Any]:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def shape(self) -> tuple[int | None, ...]:
        ...
class Tensor:
    def __array__(self, dtype: typing.Any = None, copy: typing.Any = None) -> numpy.ndarray:
        ...
    def __init__(self, array: numpy.ndarray | Tensor) -> None:
        """
        Copies a numpy array into a new Tensor.
        """
    def __repr__(self) -> str:
        ...
    def numpy(self) -> numpy.ndarray:
        """
        A zero-copy numpy view that keeps the buffer alive.
        """
    @property
    def data(self) -> numpy.ndarray:
        """
        The same view as numpy(), named as OpenVINO's Tensor.data.
        """
    @property
    def dtype(self) -> numpy.dtype[typing.Any]:
        ...
    @property
    def shape(self) -> tuple[int | None, ...]:
        ...
    @property
    def size_bytes(self) -> int:
        ...
class Sample:
    stream_id: str
    def __getitem__(self, key: str | int) -> numpy.ndarray:
        """
        The tensor at an index or with a name, as a zero-copy numpy array.
        """
    def __init__(self) -> None:
        ...
    def __len__(self) -> int:
        ...
    def __repr__(self) -> str:
        ...
    @property
    def frame_id(self) -> int:
        ...
    @frame_id.setter
    def frame_id(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def input_seq(self) -> int:
        ...
    @property
    def names(self) -> list[str]:
        ...
    @names.setter
    def names(self, arg0: Sequence[str]) -> None:
        ...
    @property
    def pts_ns(self) -> int:
        ...
    @pts_ns.setter
    def pts_ns(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def tensors(self) -> list[Tensor]:
        ...
    @tensors.setter
    def tensors(self, arg0: Sequence[Tensor]) -> None:
        ...
class ColorFormat:
    """
    Members:
    
      RGB
    
      BGR
    
      GRAY
    """
    BGR: typing.ClassVar[ColorFormat]
    GRAY: typing.ClassVar[ColorFormat]
    RGB: typing.ClassVar[ColorFormat]
    __members__: typing.ClassVar[dict[str, ColorFormat]]
    @typing.overload
    def __eq__(self, other: ColorFormat) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: ColorFormat) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class GraphOptimization:
    """
    Members:
    
      Disabled
    
      Basic
    
      Extended
    
      All
    """
    All: typing.ClassVar[GraphOptimization]
    Basic: typing.ClassVar[GraphOptimization]
    Disabled: typing.ClassVar[GraphOptimization]
    Extended: typing.ClassVar[GraphOptimization]
    __members__: typing.ClassVar[dict[str, GraphOptimization]]
    @typing.overload
    def __eq__(self, other: GraphOptimization) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: GraphOptimization) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class NormalizeOptions:
    def __init__(self, mean: Sequence[typing.SupportsFloat | typing.SupportsIndex] = [], stddev: Sequence[typing.SupportsFloat | typing.SupportsIndex] = []) -> None:
        ...
    @property
    def mean(self) -> list[float]:
        ...
    @mean.setter
    def mean(self, arg0: Sequence[typing.SupportsFloat | typing.SupportsIndex]) -> None:
        ...
    @property
    def stddev(self) -> list[float]:
        ...
    @stddev.setter
    def stddev(self, arg0: Sequence[typing.SupportsFloat | typing.SupportsIndex]) -> None:
        ...
class PreprocessOptions:
    input_format: ColorFormat
    model_format: ColorFormat
    normalize: NormalizeOptions
    resize: bool
    threads: int
    @staticmethod
    def imagenet(max_width: typing.SupportsInt | typing.SupportsIndex = 224, max_height: typing.SupportsInt | typing.SupportsIndex = 224) -> PreprocessOptions:
        ...
    def __init__(self, input_format: ColorFormat = ..., model_format: ColorFormat = ..., input_max_width: typing.SupportsInt | typing.SupportsIndex = 0, input_max_height: typing.SupportsInt | typing.SupportsIndex = 0, input_max_depth: typing.SupportsInt | typing.SupportsIndex = 0, mean: Sequence[typing.SupportsFloat | typing.SupportsIndex] = [], stddev: Sequence[typing.SupportsFloat | typing.SupportsIndex] = [], resize: bool = True, threads: typing.SupportsInt | typing.SupportsIndex = 1) -> None:
        ...
    def enabled(self) -> bool:
        ...
    @property
    def input_max_depth(self) -> int:
        ...
    @input_max_depth.setter
    def input_max_depth(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def input_max_height(self) -> int:
        ...
    @input_max_height.setter
    def input_max_height(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def input_max_width(self) -> int:
        ...
    @input_max_width.setter
    def input_max_width(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
class SessionOptions:
    allow_spinning: bool
    execution_provider: str
    optimization: GraphOptimization
    def __init__(self, intra_op_threads: typing.SupportsInt | typing.SupportsIndex = 0, inter_op_threads: typing.SupportsInt | typing.SupportsIndex = 0, optimization: GraphOptimization = ..., execution_provider: str = 'cpu', provider_options: Mapping[str, object] = {}, allow_spinning: bool = False) -> None:
        ...
    @property
    def inter_op_threads(self) -> int:
        ...
    @inter_op_threads.setter
    def inter_op_threads(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def intra_op_threads(self) -> int:
        ...
    @intra_op_threads.setter
    def intra_op_threads(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def provider_options(self) -> dict[str, str]:
        ...
    @provider_options.setter
    def provider_options(self, arg1: Mapping[str, object]) -> None:
        ...
class OverflowPolicy:
    """
    Members:
    
      Block
    
      KeepLatest
    
      DropIncoming
    """
    Block: typing.ClassVar[OverflowPolicy]
    DropIncoming: typing.ClassVar[OverflowPolicy]
    KeepLatest: typing.ClassVar[OverflowPolicy]
    __members__: typing.ClassVar[dict[str, OverflowPolicy]]
    @typing.overload
    def __eq__(self, other: OverflowPolicy) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: OverflowPolicy) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class OutputMemory:
    """
    Members:
    
      Owned
    
      Pooled
    """
    Owned: typing.ClassVar[OutputMemory]
    Pooled: typing.ClassVar[OutputMemory]
    __members__: typing.ClassVar[dict[str, OutputMemory]]
    @typing.overload
    def __eq__(self, other: OutputMemory) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: OutputMemory) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class DropReason:
    """
    Members:
    
      QueueFull
    
      Evicted
    """
    Evicted: typing.ClassVar[DropReason]
    QueueFull: typing.ClassVar[DropReason]
    __members__: typing.ClassVar[dict[str, DropReason]]
    @typing.overload
    def __eq__(self, other: DropReason) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: DropReason) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class DroppedInput:
    def __repr__(self) -> str:
        ...
    @property
    def frame_id(self) -> int:
        ...
    @property
    def input_seq(self) -> int:
        ...
    @property
    def reason(self) -> DropReason:
        ...
    @property
    def stream_id(self) -> str:
        ...
class RunOptions:
    """
    How a Run behaves under load (see run.hpp).
    
    queue_depth: samples that may wait in the input queue; as many again (plus one batch per worker)
        may be computing or waiting to be pulled (Run.capacity).
    overflow_policy: Block waits for room; KeepLatest drops the oldest waiting sample; DropIncoming
        rejects the new one. Every drop is counted and passed to on_input_drop(DroppedInput), which
        runs on the pushing thread; if it raises, push() completes and raises CallbackError.
    workers: concurrent inference requests on one set of weights; ordered: keep push order.
    max_batch, max_delay_us: dynamic batching for models with a dynamic batch dimension.
    output_memory: Owned results own their buffers. Pooled results borrow pooled buffers, reused only
        after every Tensor, Sample and numpy array referring to one is gone; no allocation per sample.
    enable_metrics: latency and per-stage timing in stats(); counters are always kept.
    trace_samples: keep the stage spans of about this many recent samples for Run.trace(); 0: off.
    max_shape: {input name: upper bounds per dimension} for the dimensions the model leaves dynamic;
        -1 or None leaves one unbounded. A push beyond a bound raises ShapeError.
    """
    enable_metrics: bool
    ordered: bool
    output_memory: OutputMemory
    overflow_policy: OverflowPolicy
    @staticmethod
    def Balanced() -> RunOptions:
        ...
    @staticmethod
    def Realtime() -> RunOptions:
        ...
    @staticmethod
    def Reliable() -> RunOptions:
        ...
    def __init__(self, queue_depth: typing.SupportsInt | typing.SupportsIndex = 8, overflow_policy: OverflowPolicy = ..., on_input_drop: Callable[[DroppedInput], object] | None = None, workers: typing.SupportsInt | typing.SupportsIndex = 1, ordered: bool = True, max_batch: typing.SupportsInt | typing.SupportsIndex = 1, max_delay_us: typing.SupportsInt | typing.SupportsIndex = 0, output_memory: OutputMemory = ..., enable_metrics: bool = True, max_shape: Mapping[str, Sequence[int | None]] = {}, trace_samples: typing.SupportsInt | typing.SupportsIndex = 256) -> None:
        ...
    @property
    def max_batch(self) -> int:
        ...
    @max_batch.setter
    def max_batch(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def max_delay_us(self) -> int:
        ...
    @max_delay_us.setter
    def max_delay_us(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def max_shape(self) -> dict[str, list[int]]:
        ...
    @max_shape.setter
    def max_shape(self, arg1: Mapping[str, Sequence[int | None]]) -> None:
        ...
    @property
    def on_input_drop(self) -> bool:
        ...
    @on_input_drop.setter
    def on_input_drop(self, arg1: Callable[[DroppedInput], object] | None) -> None:
        ...
    @property
    def trace_samples(self) -> int:
        ...
    @trace_samples.setter
    def trace_samples(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def queue_depth(self) -> int:
        ...
    @queue_depth.setter
    def queue_depth(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def workers(self) -> int:
        ...
    @workers.setter
    def workers(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
class LatencySummary:
    @property
    def avg_ms(self) -> float:
        ...
    @property
    def count(self) -> int:
        ...
    @property
    def max_ms(self) -> float:
        ...
    @property
    def min_ms(self) -> float:
        ...
    @property
    def p50_ms(self) -> float:
        ...
    @property
    def p90_ms(self) -> float:
        ...
    @property
    def p99_ms(self) -> float:
        ...
class StageStats:
    def __repr__(self) -> str:
        ...
    @property
    def avg_compute_ms(self) -> float:
        ...
    @property
    def avg_wait_ms(self) -> float:
        ...
    @property
    def busy_ms(self) -> float:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def occupancy(self) -> float:
        ...
    @property
    def samples(self) -> int:
        ...
    @property
    def threads(self) -> int:
        ...
class InputStats:
    @property
    def avg_push_us(self) -> float:
        ...
    @property
    def avg_queue_fill(self) -> float:
        ...
    @property
    def inputs_dropped(self) -> int:
        ...
    @property
    def inputs_enqueued(self) -> int:
        ...
    @property
    def max_queue_fill(self) -> float:
        ...
    @property
    def push_failures(self) -> int:
        ...
    @property
    def pushes(self) -> int:
        ...
class RunStats:
    def __str__(self) -> str:
        ...
    def to_json(self) -> str:
        ...
    def to_text(self) -> str:
        ...
    @property
    def avg_batch_size(self) -> float:
        ...
    @property
    def batches(self) -> int:
        ...
    @property
    def elapsed_s(self) -> float:
        ...
    @property
    def cancelled(self) -> int:
        ...
    @property
    def errors(self) -> int:
        ...
    @property
    def input(self) -> InputStats:
        ...
    @property
    def latency(self) -> LatencySummary:
        ...
    @property
    def outputs_pulled(self) -> int:
        ...
    @property
    def outputs_ready(self) -> int:
        ...
    @property
    def stages(self) -> list[StageStats]:
        ...
    @property
    def throughput_fps(self) -> float:
        ...
class BenchmarkReport:
    def __str__(self) -> str:
        ...
    def to_json(self) -> str:
        ...
    def to_text(self) -> str:
        ...
    @property
    def best_workers(self) -> int:
        ...
    @property
    def fps(self) -> float:
        ...
    @property
    def fps_by_workers(self) -> list[tuple[int, float]]:
        ...
    @property
    def latency_ms(self) -> float:
        ...
    @property
    def latency_p90_ms(self) -> float:
        ...
    @property
    def samples(self) -> int:
        ...
class Model:
    class Options:
        preprocess: PreprocessOptions
        session: SessionOptions
        def __init__(self, preprocess: PreprocessOptions = ..., session: SessionOptions = ...) -> None:
            ...
    class RouteOptions:
        include_input: bool
        include_output: bool
        def __init__(self, include_input: bool = True, include_output: bool = True) -> None:
            ...
    class Fragment:
        pass
    def __init__(self, path: str | os.PathLike[str], options: Model.Options = ...) -> None:
        """
        Loads an ONNX file (str or os.PathLike).
        """
    def benchmark(self, samples: typing.SupportsInt | typing.SupportsIndex = 64) -> BenchmarkReport:
        ...
    def check(self, inputs: Inputs) -> None:
        """
        Raises what run() would raise for these inputs' shapes and dtypes, without running.
        """
    def graph(self, route: Model.RouteOptions = ...) -> Model.Fragment:
        ...
    def input_specs(self) -> list[TensorSpec]:
        ...
    def output_specs(self) -> list[TensorSpec]:
        ...
    def run(self, inputs: Inputs, timeout_ms: typing.SupportsInt | typing.SupportsIndex = -1) -> Sample:
        ...
    def synthetic_inputs(self, seed: typing.SupportsInt | typing.SupportsIndex = 0) -> list[Tensor]:
        ...
    @property
    def options(self) -> Model.Options:
        """
        A copy of the options the Model was loaded with.
        """
    @property
    def path(self) -> str:
        ...
class PullStatus:
    """
    Members:
    
      Ok
    
      Timeout
    
      Closed
    
      Error
    """
    Cancelled: typing.ClassVar[PullStatus]
    Closed: typing.ClassVar[PullStatus]
    Error: typing.ClassVar[PullStatus]
    Ok: typing.ClassVar[PullStatus]
    Timeout: typing.ClassVar[PullStatus]
    __members__: typing.ClassVar[dict[str, PullStatus]]
    @typing.overload
    def __eq__(self, other: PullStatus) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: PullStatus) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class PullResult:
    def __repr__(self) -> str:
        ...
    @property
    def error(self) -> str:
        ...
    @property
    def sample(self) -> Sample | None:
        ...
    @property
    def status(self) -> PullStatus:
        ...
class ReportThread:
    """
    A report thread that several Runs' callbacks can share (AscendCL's subscribed thread).
    """
    def __init__(self) -> None:
        ...
class Stage:
    """
    A step of your own in a Graph, on threads of its own.

    fn(sample) gets an rf.Sample and returns its new tensors: a list of arrays, a dict of name to array,
    a Sample, or None to leave them as they are. The metadata (frame_id, stream_id, input_seq) is
    carried over. fn gets a copy of the sample: return new tensors rather than assigning to
    sample.tensors. It runs on the stage's `threads` threads, holding the GIL only around the call; with
    several threads, samples still go on in push order when the Run is ordered. If it raises, that
    sample alone fails (pulled as an Error naming the stage) and the Run goes on. fn must not stop or
    wait for its own Run. A Run is kept alive by its stages: if fn refers to the Run, stop it
    explicitly (or use `with`).
    """
    def __init__(self, fn: Callable[[Sample], object], *, name: str = '', threads: typing.SupportsInt | typing.SupportsIndex = 1) -> None:
        ...
    def __call__(self, inputs: Inputs) -> Sample:
        """
        Runs the stage's function on these inputs on the calling thread; returns the Sample.
        """
    def __repr__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def threads(self) -> int:
        ...
def TopK(k: typing.SupportsInt | typing.SupportsIndex = 5, softmax: bool = False, input: str = '', threads: typing.SupportsInt | typing.SupportsIndex = 1) -> Stage:
    """
    A Stage for classifiers: replaces the [C] or [N, C] scores (input: by name; default the first
    tensor) with "topk_indices" (int64 [N, k], best first, ties to the lower index) and "topk_scores"
    (float32 [N, k]; softmax probabilities with softmax=True).
    """
def DetectionOutput(score_threshold: typing.SupportsFloat | typing.SupportsIndex = 0.5, iou_threshold: typing.SupportsFloat | typing.SupportsIndex = 0.45, top_k: typing.SupportsInt | typing.SupportsIndex = 200, detections: str = '', boxes: str = '', scores: str = '', background_label: typing.SupportsInt | typing.SupportsIndex = -1, threads: typing.SupportsInt | typing.SupportsIndex = 1) -> Stage:
    """
    A Stage for detectors: per-class non-maximum suppression of SSD-style [1, 1, N, 7] rows
    (detections) or of raw boxes [N, 4] with scores [N, C]. Replaces them with "detections": float32
    [M, 7] rows [image_id, label, score, x_min, y_min, x_max, y_max], best first, M <= top_k; a
    detection is kept if its score is above score_threshold and it overlaps no better one of its class
    by more than iou_threshold.
    """
class Waker:
    """
    The wake-up fd of one event loop (ringflow._aio uses it).
    """
    def __init__(self, pipe: bool = False) -> None:
        ...
    def fileno(self) -> int:
        ...
    def settle(self) -> None:
        """
        On the loop's thread, when the fd is readable: settles the asyncio futures awaiting the futures completed since the last call, and resets the fd.
        """
class Future:
    """
    The result of one run.submit().

    Compatible with concurrent.futures.Future (result, exception, done, cancelled, running, cancel,
    add_done_callback) and awaitable in asyncio. It is completed by the engine without the GIL; in
    asyncio, completions reach the loop through one wake-up fd per loop.
    """
    def __await__(self) -> typing.Generator[typing.Any, None, Sample]:
        ...
    def __repr__(self) -> str:
        ...
    def _watch(self, waker: Waker, awaiter: typing.Any) -> bool:
        """
        For ringflow._aio: post this future to `waker` when done; False if it is done already.
        """
    def add_done_callback(self, fn: Callable[[Future], object]) -> None:
        """
        Calls fn(future) once it is done: at once if it is, else on the thread that completes it.
        """
    def cancel(self) -> bool:
        """
        Drops the sample if it has not run yet, or discards its result if it has: the future ends cancelled. Other samples are not affected. False if it already finished.
        """
    def cancelled(self) -> bool:
        ...
    def done(self) -> bool:
        ...
    def exception(self, timeout: typing.SupportsFloat | None = None) -> BaseException | None:
        ...
    def result(self, timeout: typing.SupportsFloat | None = None) -> Sample:
        """
        The result Sample, waiting up to timeout seconds (None: forever; TimeoutError after). Raises InferenceError if the sample failed, concurrent.futures.CancelledError if it was cancelled.
        """
    def running(self) -> bool:
        """
        False: a sample may be cancelled until its result is handed over.
        """
    def _settle(self) -> None:
        """
        For ringflow._aio: settles the asyncio future awaiting this done one (Waker.settle, one at a time).
        """
    @property
    def _awaiter(self) -> typing.Any:
        ...
    @property
    def userdata(self) -> typing.Any:
        ...
class Graph:
    def __init__(self) -> None:
        ...
    @typing.overload
    def add(self, fragment: Model.Fragment) -> Graph:
        ...
    @typing.overload
    def add(self, stage: Stage) -> Graph:
        ...
    @typing.overload
    def add(self, fn: Callable[[Sample], object]) -> Graph:
        """
        Adds a step: a model fragment (model.graph()), a Stage, or a callable (as Stage(fn)).
        """
    @typing.overload
    def add(self, model: Model) -> Graph:
        ...
    def build(self, seed_inputs: Inputs | None = None, options: RunOptions = ...) -> Run:
        """
        Starts a Run. seed_inputs: one representative input, checked and run once so a model that cannot run fails here; None (or anything) when stages come before the model, which is then warmed up on synthetic inputs.
        """
class Run:
    def __enter__(self) -> Run:
        ...
    def __exit__(self, *args: object) -> bool:
        """
        Closes the input and stops the Run (joining its threads); results not pulled by then are discarded.
        """
    def __iter__(self) -> Run:
        ...
    def __next__(self) -> Sample:
        """
        The next result; StopIteration at end of stream, InferenceError for a failed sample, CancelledError for one cancel() dropped.
        """
    def check(self, inputs: Inputs) -> None:
        """
        Raises what push() would raise for these inputs' shapes and dtypes, without pushing.
        """
    def cancel(self) -> None:
        """
        Closes the input and drops every accepted sample that has not run yet; each is delivered with status Cancelled (pull() raises CancelledError for it). Samples already running finish.
        """
    def close_input(self) -> None:
        ...
    def input_specs(self) -> list[TensorSpec]:
        ...
    def input_stats(self) -> InputStats:
        ...
    def output_specs(self) -> list[TensorSpec]:
        ...
    def pull(self, timeout_ms: typing.SupportsInt | typing.SupportsIndex = -1) -> Sample | None:
        ...
    def pull_with_status(self, timeout_ms: typing.SupportsInt | typing.SupportsIndex = -1) -> PullResult:
        ...
    def pull_many(self, max_count: typing.SupportsInt | typing.SupportsIndex, timeout_ms: typing.SupportsInt | typing.SupportsIndex = -1) -> list[Sample]:
        """
        Up to max_count results with one release of the GIL: waits up to timeout_ms (-1: forever)
        for the first, then takes those already there. An empty list on timeout or at end of stream. For a
        failed sample it raises InferenceError (CancelledError for one cancel() dropped) after the samples
        pulled before it, which are the error's .results: nothing pulled is lost.
        """
    def push_many(self, inputs: Inputs | typing.Iterable[Inputs], *, stream_id: str = '', frame_ids: typing.Iterable[typing.SupportsInt] | None = None) -> int:
        """
        Pushes many samples with one release of the GIL; returns how many were accepted.
        """
    def _push_if_room(self, inputs: Inputs, *, stream_id: str = '', frame_id: typing.SupportsInt | typing.SupportsIndex = -1, pts_ns: typing.SupportsInt | typing.SupportsIndex = -1) -> bool | None:
        """
        For ringflow._aio: push() without waiting; None when it would wait for room.
        """
    def _when_pullable(self) -> Future:
        """
        For ringflow._aio: a Future done at the Run's next wake-up of its pullers.
        """
    def _when_pushable(self) -> Future:
        """
        For ringflow._aio: a Future done at the Run's next wake-up of its pushers.
        """
    def _pull_nowait(self) -> Sample | None:
        """
        For ringflow._aio: the next result if there is one, else None; StopAsyncIteration at end of stream.
        """
    def push(self, inputs: Inputs, *, stream_id: str = '', frame_id: typing.SupportsInt | typing.SupportsIndex = -1, pts_ns: typing.SupportsInt | typing.SupportsIndex = -1) -> bool:
        ...
    def run(self, inputs: Inputs, timeout_ms: typing.SupportsInt | typing.SupportsIndex = -1) -> Sample:
        ...
    def set_callback(self, callback: Callable[[list[PullResult]], object], every: typing.SupportsInt | typing.SupportsIndex = 1, max_delay_ms: typing.SupportsInt | typing.SupportsIndex = -1, report_thread: ReportThread | None = None) -> None:
        """
        From now on, results go to callback(results) instead of pull(); call before the first push.
        
        callback gets a list of up to `every` PullResult (Ok with .sample, or Error with .error and the
        failed sample's metadata), in push order when the Run is ordered. It runs on a report thread, never
        on an inference thread; the report thread holds the GIL only while it delivers a round of ready
        groups, and never while it waits. With max_delay_ms >= 0, a partial group
        goes once its oldest result has waited that long; wait_all() and end of stream deliver the last one.
        report_thread: an rf.ReportThread shared with other Runs; by default the Run has its own.
        If the callback raises, the next push, try_push, wait_all or set_callback raises CallbackError (its
        __cause__ the first exception, .errors all of them), once; KeyboardInterrupt and SystemExit are
        raised as themselves. Pooled result buffers go back to the pool when the callback returns, unless
        it kept an array of them.
        """
    def stats(self) -> RunStats:
        ...
    def stop(self) -> None:
        """
        Stops intake, cancels queued work, wakes waiting push/pull calls and joins the engine's threads.
        """
    def submit(self, inputs: Inputs, userdata: typing.Any = None, *, stream_id: str = '', frame_id: typing.SupportsInt | typing.SupportsIndex = -1, pts_ns: typing.SupportsInt | typing.SupportsIndex = -1) -> Future:
        """
        Pushes one sample and returns an rf.Future of its result at once (waiting only while the
        queue is full, as push() does). Many threads and coroutines may submit into one Run; with
        max_batch > 1 their samples are batched together. A Run used this way delivers only to its futures:
        push() and pull() refuse on it. `await fut` (or `await run.infer(x)`) in asyncio.
        """
    def try_submit(self, inputs: Inputs, userdata: typing.Any = None, *, stream_id: str = '', frame_id: typing.SupportsInt | typing.SupportsIndex = -1, pts_ns: typing.SupportsInt | typing.SupportsIndex = -1) -> Future | None:
        """
        As submit(), but never waits: None when the input queue is full.
        """
    def infer(self, inputs: Inputs, userdata: typing.Any = None, *, stream_id: str = '', frame_id: int = -1, pts_ns: int = -1) -> typing.Coroutine[typing.Any, typing.Any, Sample]:
        """
        await run.infer(x): submit() one sample and await its result.
        """
    def push_async(self, inputs: Inputs, *, stream_id: str = '', frame_id: int = -1, pts_ns: int = -1) -> typing.Coroutine[typing.Any, typing.Any, bool]:
        """
        await run.push_async(x): push() that waits for room without blocking the event loop.
        """
    def pull_async(self, timeout_ms: int = -1) -> typing.Coroutine[typing.Any, typing.Any, Sample | None]:
        """
        await run.pull_async(): pull() without blocking the event loop; None at end of stream or on timeout.
        """
    def __aiter__(self) -> typing.AsyncIterator[Sample]:
        """
        async for sample in run: the results until end of stream, without blocking the event loop.
        """
    def stop_and_wait(self, timeout_ms: typing.SupportsInt | typing.SupportsIndex = -1) -> bool:
        """
        Closes the input and waits until every accepted sample has passed every stage (OpenVINO's StopAndWait); False on timeout. Results beyond capacity wait for a puller.
        """
    def trace(self, path: str) -> None:
        """
        Writes the recent samples' stage spans as Chrome trace JSON (open it in Perfetto).
        """
    def try_push(self, inputs: Inputs, *, stream_id: str = '', frame_id: typing.SupportsInt | typing.SupportsIndex = -1, pts_ns: typing.SupportsInt | typing.SupportsIndex = -1) -> bool:
        ...
    def wait_all(self, timeout_ms: typing.SupportsInt | typing.SupportsIndex = -1) -> bool:
        """
        Waits until every accepted sample has been delivered (callback returned, or pulled); False on timeout.
        """
    @property
    def capacity(self) -> int:
        ...
    @property
    def options(self) -> RunOptions:
        """
        A copy of the options the Run was built with.
        """
class InferRequest:
    """
    One job of an AsyncInferQueue. Its outputs stay readable until the job starts again.
    """
    def get_output_tensor(self, index: typing.SupportsInt | typing.SupportsIndex = 0) -> Tensor:
        """
        Output `index` as a Tensor (.data: a zero-copy numpy view).
        """
    def get_tensor(self, name: str) -> Tensor:
        """
        The output of that name as a Tensor.
        """
    @property
    def error(self) -> typing.Any:
        """
        None, or why this inference failed (then it has no outputs).
        """
    @property
    def latency(self) -> float:
        """
        start_async() to callback, in milliseconds.
        """
    @property
    def request_id(self) -> int:
        ...
    @property
    def results(self) -> dict:
        """
        Output name -> numpy array (zero-copy).
        """
class AsyncInferQueue:
    """
    OpenVINO's AsyncInferQueue, on a ringflow Run.
    
    AsyncInferQueue(model, jobs=0, ordered=False): `jobs` requests in flight at most. jobs=0 picks eight
    per core: one inference per core at a time (each with one ONNX Runtime thread, the fastest split
    measured on CPUs), the others waiting ready, so no core idles and the results that finish while a
    callback waits for the GIL come back together in one hand-off. ordered=True delivers callbacks in
    submission order (OpenVINO: completion order).
    
    set_callback(cb) is called as cb(request, userdata) on a report thread, which holds the GIL only
    while it delivers a round of finished requests. start_async(inputs, userdata=None) copies the inputs (reuse them at once) and waits, with
    the GIL released, only while every job is busy. A failed inference reaches the callback as
    request.error. If a callback raises, the next start_async() or wait_all() raises CallbackError
    (once; the queue goes on).
    """
    def __getitem__(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> InferRequest:
        ...
    def __init__(self, model: Model, jobs: typing.SupportsInt | typing.SupportsIndex = 0, ordered: bool = False) -> None:
        ...
    def __len__(self) -> int:
        ...
    def get_idle_request_id(self) -> int:
        """
        The id of the job the next start_async() will take (it stays idle), waiting while every job is busy.
        """
    def is_ready(self) -> bool:
        """
        True when a job is idle, so start_async() would not wait.
        """
    def set_callback(self, callback: Callable[[InferRequest, typing.Any], object]) -> None:
        ...
    def start_async(self, inputs: Inputs | Mapping[int, ArrayLike], userdata: typing.Any = None) -> None:
        """
        inputs: a dict by input name or index, a list in model order, or one array.
        """
    def stop(self) -> None:
        """
        Discards the requests in flight (their callbacks are not called) and stops the queue.
        """
    def wait_all(self, timeout_ms: typing.SupportsInt | typing.SupportsIndex = -1) -> bool:
        """
        Waits until every started request's callback has returned.
        """
    @property
    def userdata(self) -> list:
        """
        Per job, the userdata of its last start_async().
        """
def onnxruntime_version() -> str:
    ...
def set_onnxruntime_library(path: str) -> None:
    ...
def tensors_from_sample(sample: Sample, require_nonempty: bool = False) -> list[Tensor]:
    ...

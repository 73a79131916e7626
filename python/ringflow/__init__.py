"""ringflow: an asynchronous inference runtime over ONNX Runtime.

Push samples in from one thread and pull results out from another; the C++ engine runs
preprocessing and inference on its own threads with the GIL released::

    import ringflow as rf
    model = rf.Model(rf.models.ensure("tiny-mlp"))  # str or pathlib.Path
    graph = rf.Graph()
    graph.add(model.graph(rf.Model.RouteOptions(include_input=True, include_output=True)))
    run = graph.build(seed)                      # seed: one representative input
    run.push(x); run.close_input()
    while (out := run.pull(timeout_ms=2000)) is not None:
        logits = out[0]                          # zero-copy numpy view

push() copies each numpy input, so the caller may reuse the array at once; an rf.Tensor or
rf.Sample is shared, not copied, so do not write to it while it is in flight. Arrays a result
hands back are zero-copy views of its buffer and keep it alive.
"""

from __future__ import annotations

import glob as _glob
import importlib.util as _importlib_util
import os as _os


def _onnxruntime_library() -> str | None:
    """The libonnxruntime shipped in the installed onnxruntime wheel, if any."""
    override = _os.environ.get("RINGFLOW_ONNXRUNTIME_LIB")
    if override:
        return override
    # Found without importing onnxruntime's Python module: that costs time, and its static
    # destructors hang a forked child at exit.
    spec = _importlib_util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        return None
    capi = _os.path.join(list(spec.submodule_search_locations)[0], "capi")
    found = sorted(_glob.glob(_os.path.join(capi, "libonnxruntime.so*")), reverse=True)
    return found[0] if found else None


from . import _ringflow  # noqa: E402

_library = _onnxruntime_library()
if _library:
    _ringflow.set_onnxruntime_library(_library)

from ._ringflow import (  # noqa: E402
    AsyncInferQueue,
    BenchmarkReport,
    CallbackError,
    CancelledError,
    ClosedError,
    ColorFormat,
    DetectionOutput,
    Future,
    DropReason,
    DroppedInput,
    DTypeError,
    Error,
    Graph,
    GraphOptimization,
    InferenceError,
    InferRequest,
    InputStats,
    LatencySummary,
    Model,
    ModelError,
    NormalizeOptions,
    OutputMemory,
    OverflowPolicy,
    PreprocessOptions,
    PullResult,
    PullStatus,
    ReportThread,
    Run,
    RunOptions,
    RunStats,
    Sample,
    SessionOptions,
    ShapeError,
    Stage,
    StageStats,
    Tensor,
    TensorSpec,
    TimeoutError,
    TopK,
    onnxruntime_version,
    tensors_from_sample,
)
from . import models  # noqa: E402
from . import _aio  # noqa: E402

# The coroutine forms, written in Python because they are coroutines: await run.infer(x),
# await run.push_async(x), await run.pull_async() and async for sample in run.
Run.infer = _aio.infer  # type: ignore[attr-defined]
Run.push_async = _aio.push_async  # type: ignore[attr-defined]
Run.pull_async = _aio.pull_async  # type: ignore[attr-defined]
Run.__aiter__ = _aio.aiter_run  # type: ignore[attr-defined]

# Written as in C++ (ringflow::Model::RouteOptions) or, as Neat users do, at the top level.
RouteOptions = Model.RouteOptions

__all__ = [
    "AsyncInferQueue",
    "BenchmarkReport",
    "CallbackError",
    "CancelledError",
    "ClosedError",
    "ColorFormat",
    "DetectionOutput",
    "Future",
    "DroppedInput",
    "DropReason",
    "DTypeError",
    "Error",
    "Graph",
    "GraphOptimization",
    "InferenceError",
    "InferRequest",
    "InputStats",
    "LatencySummary",
    "Model",
    "ModelError",
    "models",
    "NormalizeOptions",
    "onnxruntime_version",
    "OutputMemory",
    "OverflowPolicy",
    "PreprocessOptions",
    "PullResult",
    "PullStatus",
    "ReportThread",
    "RouteOptions",
    "Run",
    "RunOptions",
    "RunStats",
    "Sample",
    "SessionOptions",
    "ShapeError",
    "Stage",
    "StageStats",
    "Tensor",
    "tensors_from_sample",
    "TensorSpec",
    "TimeoutError",
    "TopK",
]

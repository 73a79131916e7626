"""Shared fixtures: built-in model paths, ringflow Models with their onnxruntime oracles, and Run
and thread helpers. The plain classes behind them are in helpers.py."""

from __future__ import annotations

import pathlib
from typing import Any, Callable

import pytest

import ringflow as rf
from helpers import BackgroundCall, ModelCase, ProgressCounter, build_run


class ModelCases:
    """Loads each built-in model (and its oracle) on first use, once per test session."""

    def __init__(self) -> None:
        self._cases: dict[str, ModelCase] = {}

    def __getitem__(self, name: str) -> ModelCase:
        if name not in self._cases:
            self._cases[name] = ModelCase.load(name)
        return self._cases[name]


@pytest.fixture(scope="session")
def model_cases() -> ModelCases:
    """model_cases["tiny-mlp"] / ["resnet50"], for tests parametrized over model names."""
    return ModelCases()


@pytest.fixture(scope="session")
def tiny_mlp_path() -> pathlib.Path:
    return rf.models.ensure("tiny-mlp")


@pytest.fixture(scope="session")
def mlp_path(tiny_mlp_path: pathlib.Path) -> str:
    return str(tiny_mlp_path)


@pytest.fixture(scope="session")
def mlp_oracle(tiny_mlp_path: pathlib.Path) -> Any:
    """tiny-mlp in onnxruntime.InferenceSession: what ringflow's results must equal."""
    import onnxruntime as ort
    return ort.InferenceSession(str(tiny_mlp_path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="session")
def resnet50_path() -> pathlib.Path:
    return rf.models.ensure("resnet50")


@pytest.fixture(scope="session")
def tiny_mlp(model_cases: ModelCases) -> ModelCase:
    """tiny-mlp: .path, .model (rf.Model), .oracle (onnxruntime), .input_for(key)."""
    return model_cases["tiny-mlp"]


@pytest.fixture(scope="session")
def resnet50(model_cases: ModelCases) -> ModelCase:
    """resnet50: .path, .model (rf.Model), .oracle (onnxruntime), .input_for(key)."""
    return model_cases["resnet50"]


@pytest.fixture
def make_run():
    """make_run(model, seed, queue_depth=8, workers=1, **run_options) -> rf.Run, where run_options
    are any other rf.RunOptions keyword arguments. The fixture lets go of its Runs at teardown, so
    each is destroyed (threads joined) once the test holds no reference either."""
    runs: list[rf.Run] = []

    def make(model: rf.Model, seed: Any, queue_depth: int = 8, workers: int = 1,
             **run_options: Any) -> rf.Run:
        run = build_run(model, seed, queue_depth=queue_depth, workers=workers, **run_options)
        runs.append(run)
        return run

    yield make
    runs.clear()


@pytest.fixture
def spawn() -> Callable[..., BackgroundCall]:
    """spawn(fn, name=...) starts fn on a daemon thread; its .join(timeout) returns fn's result,
    re-raises fn's exception, or fails the test if fn hangs."""
    return BackgroundCall


@pytest.fixture
def progress_counter():
    counter = ProgressCounter()
    yield counter
    counter.stop()


# ------------------------------------------------------------------------------------------------
# Models with dynamic and data-dependent shapes (built by dynamic_models.py)
# ------------------------------------------------------------------------------------------------

import dataclasses  # noqa: E402

from dynamic_models import MultiOracle, write as write_dynamic_model  # noqa: E402


@dataclasses.dataclass
class DynamicCase:
    """One generated model: its file, a ringflow Model with default options, and the onnxruntime
    oracle that addresses inputs and outputs by name."""

    name: str
    path: pathlib.Path
    model: rf.Model
    oracle: MultiOracle


class DynamicModels:
    """Writes each model of dynamic_models.BUILDERS into one directory on first use."""

    def __init__(self, directory: pathlib.Path) -> None:
        self._directory = directory
        self._cases: dict[str, DynamicCase] = {}

    def __getitem__(self, name: str) -> DynamicCase:
        if name not in self._cases:
            path = write_dynamic_model(name, self._directory)
            self._cases[name] = DynamicCase(name, path, rf.Model(str(path)), MultiOracle(path))
        return self._cases[name]


@pytest.fixture(scope="session")
def dynamic_models_dir(tmp_path_factory) -> pathlib.Path:
    """Where the session's generated dynamic-shape models are written."""
    return tmp_path_factory.mktemp("dynamic_models")


@pytest.fixture(scope="session")
def dynamic_models(dynamic_models_dir) -> DynamicModels:
    """dynamic_models["encoder" | "fcn" | "nonzero" | "two_io" | "gather" | "small_cnn"]:
    .path, .model (rf.Model, default options), .oracle (dynamic_models.MultiOracle)."""
    return DynamicModels(dynamic_models_dir)

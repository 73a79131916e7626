"""The type stubs that ship with the package: they cover the whole extension, and mypy accepts
typical user code against them."""

from __future__ import annotations

import ast
import inspect
import pathlib
import subprocess
import sys

import pytest

import ringflow as rf
from ringflow import _ringflow

STUB = pathlib.Path(rf.__file__).with_name("_ringflow.pyi")


def stub_classes() -> dict[str, set[str]]:
    """Class name -> the names defined in its body (nested classes by dotted name)."""
    classes: dict[str, set[str]] = {}

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                name = prefix + node.name
                classes[name] = {n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
                classes[name] |= {t.id for n in node.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                                  for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
                                  if isinstance(t, ast.Name)}
                visit(node.body, name + ".")

    visit(ast.parse(STUB.read_text()).body, "")
    return classes


def runtime_classes() -> dict[str, set[str]]:
    classes: dict[str, set[str]] = {}

    def visit(owner: object, prefix: str) -> None:
        for name, value in vars(owner).items():
            if inspect.isclass(value) and value.__module__.startswith("ringflow"):
                dotted = prefix + name
                classes[dotted] = {n for n in vars(value) if not n.startswith("_") or n in DUNDERS}
                visit(value, dotted + ".")

    visit(_ringflow, "")
    return classes


DUNDERS = {"__enter__", "__exit__", "__iter__", "__next__", "__getitem__", "__len__"}


def test_the_stub_and_py_typed_ship_with_the_package():
    assert STUB.is_file()
    assert STUB.with_name("py.typed").is_file()


def test_every_class_and_method_of_the_extension_is_in_the_stub():
    stub, runtime = stub_classes(), runtime_classes()
    missing_classes = sorted(set(runtime) - set(stub))
    assert not missing_classes, f"classes missing from {STUB.name}: {missing_classes}"
    for name, members in runtime.items():
        # Enum values are class attributes the stub lists as annotated names.
        missing = sorted(m for m in members - stub[name] if not m.isupper() and m not in ("name", "value")
                         and not (m[:1].isupper() and name in ENUMS))
        assert not missing, f"{name}: {missing} missing from {STUB.name}"
    functions = {n for n, v in vars(_ringflow).items() if inspect.isbuiltin(v) and not n.startswith("_")}
    stub_functions = {n.name for n in ast.parse(STUB.read_text()).body if isinstance(n, ast.FunctionDef)}
    assert functions <= stub_functions, sorted(functions - stub_functions)


ENUMS = {"ColorFormat", "GraphOptimization", "OverflowPolicy", "OutputMemory", "DropReason", "PullStatus"}

USER_CODE = '''
import numpy as np
import ringflow as rf

model = rf.Model(rf.models.ensure("tiny-mlp"))
x = np.zeros((1, 64), np.float32)
graph = rf.Graph()
graph.add(model.graph(rf.RouteOptions(include_input=True, include_output=True)))
options = rf.RunOptions(queue_depth=4, max_shape={"input": (8, None)},
                        on_input_drop=lambda d: print(d.frame_id))
with graph.build(x, options) as run:
    accepted: bool = run.push(x, frame_id=1)
    run.push({"input": x})
    run.close_input()
    for sample in run:
        logits: np.ndarray = sample["logits"]
    result = run.pull_with_status(timeout_ms=10)
    if result.status == rf.PullStatus.Ok and result.sample is not None:
        print(result.sample.frame_id)
try:
    run.push(x)
except rf.CallbackError as error:
    print(error.accepted)
except rf.ClosedError:
    pass
'''


def test_mypy_strict_accepts_typical_user_code(tmp_path):
    pytest.importorskip("mypy")
    program = tmp_path / "user_code.py"
    program.write_text(USER_CODE)
    done = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(program)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_rejects_a_misuse(tmp_path):
    """The stubs carry real types: a wrong argument type is caught before running."""
    pytest.importorskip("mypy")
    program = tmp_path / "misuse.py"
    program.write_text("import ringflow as rf\nrf.RunOptions(queue_depth='eight')\n")
    done = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(program)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 1 and "queue_depth" in done.stdout, done.stdout

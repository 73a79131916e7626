"""Regression tests for threads blocked inside the engine (issue 7, section 3): Ctrl-C, fork() and
stop(). Each was broken before:

- Ctrl-C: a thread blocked in push, pull, pull_with_status or run with no timeout did not see
  KeyboardInterrupt. Now it must within 200 ms of SIGINT, and the Run stays usable. Tested in a
  subprocess, whose main thread gets the signal.
- fork(): a Run started in the parent silently accepted samples in the child that were never
  processed, and the child hung or crashed at exit. Now any use raises an error that mentions
  fork, and the child exits cleanly.
- stop(): wakes threads waiting in push (ClosedError) or pull (Closed), is idempotent, and aborts a
  long inference instead of waiting for it.

Results that matter are compared with onnxruntime's own output for the same input (the oracle).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap
import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import ringflow as rf
from helpers import ORACLE_ATOL, assert_matches, call_with_deadline

SUBPROCESS_TIMEOUT_S = 180  # bounds a hang; a healthy script takes a few seconds
SIGNAL_LATENCY_S = 0.2      # issue 7: KeyboardInterrupt within 200 ms of SIGINT
PROMPT_S = 2.0              # "promptly" for stop(): generous for a loaded 2-core box


# ------------------------------------------------------------------------------------------------
# A model whose inference takes as long as we like: the cost grows as D^3 in its input's width
# ------------------------------------------------------------------------------------------------

SLOW_ROUNDS = 12
SLOW_WIDTH = 2048   # ~1.5 s per inference on one core of the CI box; width 8 takes microseconds
FAST_WIDTH = 8


def write_slow_model(path: pathlib.Path) -> pathlib.Path:
    """x: float32 [1, D] -> y: float32 [1, D]. a = x^T x (D x D), then SLOW_ROUNDS times
    a <- tanh(a @ a0), and y = x @ a. Every MatMul of two D x D matrices costs 2 D^3 flops, and
    ONNX Runtime checks for termination between nodes, so an abort comes within one MatMul."""
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0]),
             helper.make_node("MatMul", ["xt", "x"], ["a0"])]
    previous = "a0"
    for i in range(SLOW_ROUNDS):
        nodes.append(helper.make_node("MatMul", [previous, "a0"], [f"m{i}"]))
        nodes.append(helper.make_node("Tanh", [f"m{i}"], [f"a{i + 1}"]))
        previous = f"a{i + 1}"
    nodes.append(helper.make_node("MatMul", ["x", previous], ["y"]))
    graph = helper.make_graph(
        nodes, "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "D"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "D"])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    return path


def slow_input(width: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((1, width), dtype=np.float32)
    return x / np.float32(np.sqrt(width))


@pytest.fixture(scope="module")
def slow_model_path(tmp_path_factory) -> pathlib.Path:
    return write_slow_model(tmp_path_factory.mktemp("slow") / "slow.onnx")


def slow_oracle(path: pathlib.Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def load_slow(path: pathlib.Path) -> rf.Model:
    # One ORT thread: the inference takes its full time even when the other core is free.
    return rf.Model(str(path), rf.Model.Options(session=rf.SessionOptions(intra_op_threads=1)))


def build(model: rf.Model, seed, **options) -> rf.Run:
    graph = rf.Graph()
    graph.add(model.graph(rf.RouteOptions()))
    return graph.build(seed, rf.RunOptions(**options))


# ------------------------------------------------------------------------------------------------
# Subprocess plumbing
# ------------------------------------------------------------------------------------------------

def run_script(script: str, *args, timeout_s: float = SUBPROCESS_TIMEOUT_S,
               env: dict | None = None) -> dict:
    """Runs `python -c script args...` and returns the JSON it printed on its last
    "RESULT " line. Fails with the script's output if it hangs, dies or prints no result."""
    command = [sys.executable, "-c", textwrap.dedent(script)] + [str(a) for a in args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                              env=env)
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"script did not finish within {timeout_s} s (hang?)\n"
                    f"stdout:\n{expired.stdout}\nstderr:\n{expired.stderr}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, (
        f"script exited with {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}")
    return json.loads(lines[-1][len("RESULT "):])


# ================================================================================================
# 2. Ctrl-C
# ================================================================================================

# The main thread blocks in one call with no timeout; a helper thread sends SIGINT to the process
# 300 ms later. Then the script checks that the Run is still usable and prints what it saw.
SIGINT_SCRIPT = r"""
import json, os, signal, sys, threading, time
import numpy as np
import ringflow as rf

# A shell starting the tests in the background (without job control) makes them ignore SIGINT,
# and Python then keeps ignoring it; this test is about ringflow's waits, so restore Ctrl-C.
signal.signal(signal.SIGINT, signal.default_int_handler)

case, tiny_path, slow_path, inputs_path = sys.argv[1:5]
data = np.load(inputs_path)
xs = [data["x%d" % i] for i in range(int(data["count"]))]
report = {"case": case}


def build(model, seed, **options):
    graph = rf.Graph()
    graph.add(model.graph(rf.RouteOptions()))
    return graph.build(seed, rf.RunOptions(**options))


def interrupted(call, delay=0.3):
    sent = {}

    def send():
        time.sleep(delay)
        sent["at"] = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)

    sender = threading.Thread(target=send)
    start = time.monotonic()
    sender.start()
    try:
        value = call()
    except KeyboardInterrupt:
        caught = time.monotonic()
        sender.join()
        return {"interrupted": True, "latency_s": caught - sent["at"],
                "blocked_s": caught - start}
    # The call came back without the signal: report that, and absorb the signal when it comes.
    try:
        sender.join()
        time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    return {"interrupted": False, "returned": repr(value), "blocked_s": time.monotonic() - start}


def as_list(sample):
    return {"input_seq": sample.input_seq, "frame_id": sample.frame_id,
            "output": sample[0].tolist()}


def close_and_finish(run):
    run.close_input()
    report["pull_after_close"] = repr(run.pull())
    report["status_after_close"] = str(run.pull_with_status(timeout_ms=5000).status)


if case in ("pull", "pull_with_status", "next"):
    run = build(rf.Model(tiny_path), xs[0], queue_depth=4)
    call = {"pull": lambda: run.pull(),
            "pull_with_status": lambda: run.pull_with_status(),
            "next": lambda: next(iter(run))}[case]
    report.update(interrupted(call))
    run.push(xs[1], frame_id=1)  # still usable: the next sample is its first, and right
    report["after"] = [as_list(run.pull(timeout_ms=30000))]
    close_and_finish(run)

elif case == "push_full":
    run = build(rf.Model(tiny_path), xs[0], queue_depth=1)
    report["capacity"] = run.capacity
    for i in range(run.capacity):  # every input slot and result slot taken; nobody pulls
        run.push(xs[i], frame_id=i)
    time.sleep(0.1)
    report.update(interrupted(lambda: run.push(xs[run.capacity], frame_id=run.capacity)))
    report["enqueued_after_interrupt"] = run.input_stats().inputs_enqueued
    after = [as_list(run.pull(timeout_ms=30000)) for _ in range(run.capacity)]
    run.push(xs[run.capacity], frame_id=run.capacity)  # the interrupted one, pushed again
    after.append(as_list(run.pull(timeout_ms=30000)))
    report["after"] = after
    close_and_finish(run)

elif case == "run":
    # Run.run() needs an idle Run, so its push never waits; what blocks is its wait for the
    # result. A slow model (seconds per inference at this width) keeps it waiting.
    slow = rf.Model(slow_path, rf.Model.Options(session=rf.SessionOptions(intra_op_threads=1)))
    run = build(slow, xs[0])
    report.update(interrupted(lambda: run.run(xs[1])))
    # The interrupted sample's result is discarded by the next run(), which then runs this one.
    report["after"] = [{"input_seq": -1, "frame_id": -1, "output": run.run(xs[0])[0].tolist()}]
    run.push(xs[0], frame_id=7)
    report["after"].append(as_list(run.pull(timeout_ms=60000)))
    close_and_finish(run)

print("RESULT " + json.dumps(report), flush=True)
"""


@pytest.mark.parametrize("case", ["pull", "pull_with_status", "next", "push_full", "run"])
def test_ctrl_c_interrupts_a_blocked_call_within_200_ms(tiny_mlp, slow_model_path, tmp_path,
                                                         case):
    if case == "run":
        inputs = [slow_input(FAST_WIDTH, 1), slow_input(SLOW_WIDTH, 2)]
        oracle = lambda x: slow_oracle(slow_model_path, x)  # noqa: E731
    else:
        inputs = [tiny_mlp.input_for(k) for k in range(32)]
        oracle = tiny_mlp.oracle
    inputs_path = tmp_path / "inputs.npz"
    np.savez(inputs_path, count=len(inputs), **{f"x{i}": x for i, x in enumerate(inputs)})

    report = run_script(SIGINT_SCRIPT, case, tiny_mlp.path, slow_model_path, inputs_path)
    print(f"\n{case}: {json.dumps({k: v for k, v in report.items() if k != 'after'})}")

    assert report["interrupted"], f"{case} was not interrupted: it returned {report}"
    assert report["blocked_s"] >= 0.25, "the call did not block until the signal"
    assert report["latency_s"] < SIGNAL_LATENCY_S, (
        f"KeyboardInterrupt came {report['latency_s'] * 1000:.0f} ms after SIGINT")

    # The Run stayed usable: everything accepted comes back, right, and then the stream ends.
    after = report["after"]
    if case == "push_full":
        capacity = report["capacity"]
        assert report["enqueued_after_interrupt"] == capacity, "the interrupted push went in"
        assert [a["frame_id"] for a in after] == list(range(capacity + 1))
        assert [a["input_seq"] for a in after] == list(range(capacity + 1))
        expected = [oracle(inputs[a["frame_id"]]) for a in after]
    elif case == "run":
        assert after[1]["frame_id"] == 7
        expected = [oracle(inputs[0])] * 2
    else:
        assert [(a["input_seq"], a["frame_id"]) for a in after] == [(0, 1)]
        expected = [oracle(inputs[1])]
    for a, e in zip(after, expected):
        assert_matches(np.asarray(a["output"], np.float32), e)
    assert report["pull_after_close"] == "None"
    assert report["status_after_close"] == "PullStatus.Closed"


# ================================================================================================
# 5. fork()
# ================================================================================================

FORK_SCRIPT = r"""
import json, os, select, sys, time
import numpy as np
if "RINGFLOW_ONNXRUNTIME_LIB" not in os.environ:
    import onnxruntime  # as most users' programs do, next to ringflow
import ringflow as rf

tiny_path, inputs_path, child_mode = sys.argv[1:4]
data = np.load(inputs_path)
x0, x1, x2 = data["x0"], data["x1"], data["x2"]
report = {}

model = rf.Model(tiny_path)
graph = rf.Graph()
graph.add(model.graph(rf.RouteOptions()))
run = graph.build(x0, rf.RunOptions(queue_depth=4))
run.push(x0, frame_id=0)
report["before"] = run.pull(timeout_ms=30000)[0].tolist()

read_end, write_end = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(read_end)
    child = {}
    if child_mode == "use":
        calls = {
            "push": lambda: run.push(x1),
            "try_push": lambda: run.try_push(x1),
            "pull": lambda: run.pull(timeout_ms=100),
            "pull_with_status": lambda: run.pull_with_status(timeout_ms=100),
            "next": lambda: next(iter(run)),
            "Run.run": lambda: run.run(x1),
            "check": lambda: run.check(x1),
            "close_input": lambda: run.close_input(),
            "Model.run": lambda: model.run(x1),
        }
        for name, call in calls.items():
            try:
                value = call()
                child[name] = {"raised": None, "returned": repr(value)}
            except BaseException as error:
                child[name] = {"raised": type(error).__name__,
                               "is_rf_error": isinstance(error, rf.Error),
                               "message": str(error)}
    with os.fdopen(write_end, "w") as out:
        out.write(json.dumps(child))
    sys.exit(0)  # a normal exit: Python finalizes and destroys the Run and the Model

os.close(write_end)
# The child's report (bounded: a child that hangs before writing must not hang us).
chunks, deadline = [], time.monotonic() + 30
while time.monotonic() < deadline:
    ready, _, _ = select.select([read_end], [], [], 0.1)
    if ready:
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        chunks.append(chunk)
os.close(read_end)
text = b"".join(chunks).decode()
report["child"] = json.loads(text) if text else None
report["onnxruntime_module_imported"] = "onnxruntime" in sys.modules

deadline = time.monotonic() + 20  # a healthy child is gone in well under a second
status = None
while time.monotonic() < deadline:
    done, raw = os.waitpid(pid, os.WNOHANG)
    if done:
        status = os.waitstatus_to_exitcode(raw)
        break
    time.sleep(0.02)
report["child_exit"] = status if status is not None else "hung"
if status is None:
    os.kill(pid, 9)
    os.waitpid(pid, 0)

# The parent's Run is unaffected.
run.push(x2, frame_id=2)
after = run.pull(timeout_ms=30000)
report["after"] = {"input_seq": after.input_seq, "frame_id": after.frame_id,
                   "output": after[0].tolist()}
run.close_input()
report["pull_after_close"] = repr(run.pull())
print("RESULT " + json.dumps(report), flush=True)
"""


FORK_VARIANTS = {
    # How most users run it: their program imports onnxruntime's Python module too (ringflow
    # itself only finds its libonnxruntime, without importing it).
    "child uses the Run": ("use", False),
    "child leaves the Run alone": ("untouched", False),
    # RINGFLOW_ONNXRUNTIME_LIB names the library, so onnxruntime's Python module is never
    # imported: only ringflow and the libonnxruntime it loads are in the process.
    "child uses the Run, onnxruntime module not imported": ("use", True),
}


@pytest.fixture(scope="module", params=list(FORK_VARIANTS), ids=list(FORK_VARIANTS))
def fork_report(request, tiny_mlp, tmp_path_factory):
    child_mode, library_only = FORK_VARIANTS[request.param]
    inputs = {f"x{k}": tiny_mlp.input_for(200 + k) for k in range(3)}
    inputs_path = tmp_path_factory.mktemp("fork") / "inputs.npz"
    np.savez(inputs_path, **inputs)
    env = dict(os.environ)
    if library_only:
        found = sorted(pathlib.Path(ort.__file__).parent.glob("capi/libonnxruntime.so*"))
        if not found:
            pytest.skip("no libonnxruntime in the onnxruntime wheel")
        env["RINGFLOW_ONNXRUNTIME_LIB"] = str(found[-1])
    else:
        env.pop("RINGFLOW_ONNXRUNTIME_LIB", None)
    report = run_script(FORK_SCRIPT, tiny_mlp.path, inputs_path, child_mode, env=env)
    assert report["onnxruntime_module_imported"] is not library_only
    print(f"\nfork ({request.param}): child exit {report['child_exit']}")
    return child_mode, inputs, report


def test_fork_child_gets_a_clear_error_from_the_parents_run(fork_report):
    mode, _, report = fork_report
    if mode != "use":
        pytest.skip("this child does not touch the Run")
    child = report["child"]
    assert child is not None, "the child reported nothing"
    for name, outcome in child.items():
        assert outcome["raised"] is not None, (
            f"{name} in the child returned {outcome['returned']} instead of raising")
        assert outcome["is_rf_error"], f"{name}: {outcome}"
        assert "fork" in outcome["message"], f"{name}: {outcome['message']}"


def test_fork_child_exits_cleanly(fork_report):
    mode, _, report = fork_report
    assert report["child"] is not None, "the child never reached its exit"
    status = report["child_exit"]
    assert status == 0, (
        f"child ({mode}) " + ("hung at exit" if status == "hung" else
                              f"ended with {'signal ' + str(-status) if status < 0 else status}"))


def test_fork_parent_run_still_works(fork_report, tiny_mlp):
    _, inputs, report = fork_report
    assert_matches(np.asarray(report["before"], np.float32), tiny_mlp.oracle(inputs["x0"]))
    after = report["after"]
    # Nothing the child did reached the parent's Run: the next sample is its second.
    assert (after["input_seq"], after["frame_id"]) == (1, 2)
    assert_matches(np.asarray(after["output"], np.float32), tiny_mlp.oracle(inputs["x2"]))
    assert report["pull_after_close"] == "None"


# ================================================================================================
# 9. stop()
# ================================================================================================

def test_stop_is_idempotent_and_ends_the_run(tiny_mlp, make_run):
    x = tiny_mlp.input_for(0)
    run = make_run(tiny_mlp.model, x)
    for i in range(3):
        run.push(x, frame_id=i)
    call_with_deadline(run.stop, timeout_s=30, name="stop()")
    call_with_deadline(run.stop, timeout_s=30, name="second stop()")
    run.close_input()  # harmless after stop()
    call_with_deadline(run.stop, timeout_s=30, name="stop() after close_input()")
    for call in (run.push, run.try_push):
        with pytest.raises(rf.ClosedError):
            call(x)
    assert call_with_deadline(lambda: run.pull(), timeout_s=10, name="pull()") is None
    assert run.pull_with_status().status == rf.PullStatus.Closed
    assert list(run) == []
    with run:  # __exit__ on a stopped Run is fine too
        pass


@pytest.mark.parametrize("pushed_before_stop", [0, 3])
def test_run_run_after_stop_raises_closed_error(tiny_mlp, make_run, pushed_before_stop):
    """Run.run() pushes, so on a stopped Run it is refused like push(): with ClosedError, also
    when samples pushed before stop() were cancelled by it (they can never be pulled: pull()
    says Closed, so they are not "in flight")."""
    x = tiny_mlp.input_for(0)
    run = make_run(tiny_mlp.model, x)
    for i in range(pushed_before_stop):
        run.push(x, frame_id=i)
    run.stop()
    assert run.pull_with_status(timeout_ms=1000).status == rf.PullStatus.Closed
    with pytest.raises(rf.ClosedError):
        run.run(x)


def fill(run, x):
    for i in range(run.capacity):
        assert run.push(x, frame_id=i) is True
    time.sleep(0.05)


def stop_from_main(run, blocked, settle_s: float = 0.3):
    """Lets the `blocked` background calls park, checks they are still waiting, stops the Run,
    and returns how long stop() took."""
    time.sleep(settle_s)
    for call in blocked:
        assert call.is_alive(), "the call did not block, so stop() wakes nothing"
    start = time.monotonic()
    call_with_deadline(run.stop, timeout_s=30, name="stop()")
    return time.monotonic() - start


def test_stop_wakes_a_push_waiting_for_room(tiny_mlp, make_run, spawn):
    x = tiny_mlp.input_for(0)
    run = make_run(tiny_mlp.model, x, queue_depth=1)
    fill(run, x)

    def push_and_time():
        try:
            run.push(x, frame_id=99)
        except rf.ClosedError as error:
            return error, time.monotonic()
        return None, time.monotonic()

    pushers = [spawn(push_and_time, name=f"blocked pusher {i}") for i in range(2)]
    start = time.monotonic()
    took = stop_from_main(run, pushers)
    for pusher in pushers:
        error, woke = pusher.join(timeout_s=PROMPT_S + 5)
        assert isinstance(error, rf.ClosedError), "a push waiting for room was not refused"
        assert woke - start - 0.3 < PROMPT_S
    print(f"\nstop() took {took * 1000:.1f} ms with 2 pushes waiting")
    assert took < PROMPT_S
    assert call_with_deadline(lambda: run.pull(), timeout_s=10, name="pull()") is None


def test_stop_wakes_pulls_waiting_forever(tiny_mlp, make_run, spawn):
    run = make_run(tiny_mlp.model, tiny_mlp.input_for(0))

    def iterate():
        return list(run)

    pullers = {
        "pull": spawn(lambda: run.pull(), name="pull()"),
        "pull_with_status": spawn(lambda: run.pull_with_status(), name="pull_with_status()"),
        "for": spawn(iterate, name="for sample in run"),
    }
    took = stop_from_main(run, pullers.values())
    assert pullers["pull"].join(timeout_s=PROMPT_S) is None
    assert pullers["pull_with_status"].join(timeout_s=PROMPT_S).status == rf.PullStatus.Closed
    assert pullers["for"].join(timeout_s=PROMPT_S) == []
    print(f"\nstop() took {took * 1000:.1f} ms with 3 pulls waiting")
    assert took < PROMPT_S


def test_stop_wakes_pushers_and_pullers_of_one_run_together(tiny_mlp, make_run, spawn):
    """A full Run, pushes waiting for room, and a puller that takes one result and then waits on
    an open Run: after stop() all return."""
    x = tiny_mlp.input_for(0)
    run = make_run(tiny_mlp.model, x, queue_depth=1)
    fill(run, x)

    def push(i):
        try:
            return run.push(x, frame_id=100 + i)
        except rf.ClosedError:
            return "closed"

    def drain_forever():
        frames = []
        while (sample := run.pull()) is not None:
            frames.append(sample.frame_id)
        return frames

    pushers = [spawn(lambda i=i: push(i), name=f"pusher {i}") for i in range(3)]
    time.sleep(0.3)
    puller = spawn(drain_forever, name="puller")
    took = stop_from_main(run, [puller])
    outcomes = [p.join(timeout_s=PROMPT_S + 5) for p in pushers]
    frames = puller.join(timeout_s=PROMPT_S + 5)
    assert all(o in (True, "closed") for o in outcomes), outcomes
    # The pulls freed slots, so the waiting pushes may have gone in (and been pulled, or been
    # cancelled by stop()); the samples from before came first, in order.
    assert frames[:run.capacity] == list(range(run.capacity)), frames
    assert set(frames[run.capacity:]) <= {100, 101, 102}, frames
    assert took < PROMPT_S


def test_stop_aborts_a_long_inference_and_wakes_run_run(slow_model_path, spawn):
    model = load_slow(slow_model_path)
    big = slow_input(SLOW_WIDTH, 3)
    start = time.monotonic()
    model.run(big)
    full_s = time.monotonic() - start
    small = slow_input(FAST_WIDTH, 4)
    assert_matches(model.run(small)[0], slow_oracle(slow_model_path, small), atol=ORACLE_ATOL)

    run = build(model, small)
    runner = spawn(lambda: run.run(big), name="Run.run on a long inference")
    took = stop_from_main(run, [runner], settle_s=min(0.3, full_s / 4))
    with pytest.raises(rf.ClosedError):
        runner.join(timeout_s=PROMPT_S + 5)
    print(f"\none inference takes {full_s:.2f} s; stop() during one took {took:.3f} s")
    assert took < max(0.5 * full_s, 0.3), (
        f"stop() waited {took:.2f} s, as if the {full_s:.2f} s inference ran to its end")

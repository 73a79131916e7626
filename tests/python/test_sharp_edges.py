"""Regression tests for the engine's sharp edges (issue 7, sections 3 and 4), each one written to
fail on the old behaviour:

- options: `run.options` / `model.options` hand out copies; changing them does not change the
  running Run or the loaded Model (it used to crash, strand results or read past a buffer);
- drop callbacks that raise: push() still says whether its own sample went in
  (`CallbackError.accepted`), chains the callback's exception as `__cause__`, and lets
  KeyboardInterrupt and SystemExit through as themselves;
- re-entrant callbacks: a push from inside the Run's own on_input_drop is refused, never a livelock
  or a recursion until the stack overflows;
- cheap rejection: a wrong shape or dtype is refused before the data is copied, so a view of
  terabytes gets ShapeError or DTypeError at once, not MemoryError;
- Python ergonomics: `with graph.build(...) as run`, `for sample in run`, `rf.RouteOptions`;
- execution providers: names map to ORT's providers, unavailable or unknown ones raise ModelError
  naming what there is.

Signals (Ctrl-C), fork() and stop() waking blocked threads are in test_sharp_edges_wakeups.py.

tiny-mlp takes float32 [N, 64] and returns logits [N, 10]; every result is compared with
onnxruntime's own output for the same input (the oracle).
"""

from __future__ import annotations

import os
import time

import numpy as np
import onnxruntime as ort
import pytest

import ringflow as rf
from dynamic_models import GATHER_PICKS, GATHER_ROWS
from helpers import assert_matches, call_with_deadline, pull_until_closed

KEEP_LATEST = rf.OverflowPolicy.KeepLatest
DROP_INCOMING = rf.OverflowPolicy.DropIncoming
N_SAMPLES = 50


def graph_of(model: rf.Model) -> rf.Graph:
    graph = rf.Graph()
    graph.add(model.graph(rf.Model.RouteOptions(include_input=True, include_output=True)))
    return graph


def push_and_pull_all(run: rf.Run, inputs: list[np.ndarray], spawn) -> list[tuple]:
    """Pushes every input from a producer thread (frame_id = index), closes the input, and pulls
    on this thread until Closed. Returns [(input_seq, frame_id, logits copy)] in pull order, and
    checks that a further pull also reports the end of the stream."""
    def produce():
        for i, x in enumerate(inputs):
            assert run.push(x, frame_id=i) is True
        run.close_input()

    producer = spawn(produce, name="producer")
    pulled = [(s.input_seq, s.frame_id, s[0].copy()) for s in pull_until_closed(run)]
    producer.join()
    assert call_with_deadline(lambda: run.pull(), timeout_s=10, name="pull() at end") is None
    assert run.pull_with_status(timeout_ms=1000).status == rf.PullStatus.Closed
    return pulled


def check_every_result(pulled, inputs, expected, ordered: bool) -> None:
    frames = [frame_id for _, frame_id, _ in pulled]
    if ordered:
        assert frames == list(range(len(inputs))), "results out of push order"
        assert [seq for seq, _, _ in pulled] == list(range(len(inputs)))
    else:
        assert sorted(frames) == list(range(len(inputs))), "a result was lost or duplicated"
    for _, frame_id, logits in pulled:
        assert_matches(logits, expected[frame_id], what=f"frame {frame_id}")


@pytest.fixture(scope="module")
def samples(tiny_mlp):
    inputs = [tiny_mlp.input_for(1000 + i) for i in range(N_SAMPLES)]
    return inputs, tiny_mlp.oracle.batched(inputs)


# ================================================================================================
# 1. Options are read-only while running
# ================================================================================================

def option_fields(options: rf.RunOptions) -> dict:
    return {name: getattr(options, name) for name in (
        "queue_depth", "overflow_policy", "workers", "ordered", "max_batch", "max_delay_us",
        "output_memory", "enable_metrics", "max_shape", "on_input_drop")}


# Each case: the Run's options, and what is done to `run.options` afterwards. On the old engine
# these crashed (SIGFPE at the next pull), stranded results so pull never returned Closed, or made
# ONNX Runtime read past a buffer.
OPTION_MUTATIONS = {
    "ordered=True on an unordered Run": (
        dict(workers=2, ordered=False), {"ordered": True}),
    "ordered=False on an ordered Run": (
        dict(workers=2, ordered=True), {"ordered": False}),
    "max_batch lowered on a batching Run": (
        dict(max_batch=8, max_delay_us=2000), {"max_batch": 1}),
    "max_batch raised on a batching Run": (
        dict(max_batch=4, max_delay_us=2000), {"max_batch": 64}),
    "queue_depth lowered": (
        dict(queue_depth=8), {"queue_depth": 1}),
    "queue_depth raised": (
        dict(queue_depth=2), {"queue_depth": 1000}),
    "workers, policy and output memory": (
        dict(workers=2, ordered=True),
        {"workers": 7, "overflow_policy": DROP_INCOMING, "output_memory": rf.OutputMemory.Pooled,
         "max_delay_us": 10_000, "enable_metrics": False}),
}


@pytest.mark.parametrize("case", list(OPTION_MUTATIONS), ids=list(OPTION_MUTATIONS))
def test_changing_run_options_while_running_changes_nothing(tiny_mlp, make_run, samples, spawn,
                                                            case):
    build_options, changes = OPTION_MUTATIONS[case]
    inputs, expected = samples
    run = make_run(tiny_mlp.model, inputs[0], **{"queue_depth": 4, **build_options})
    before = option_fields(run.options)
    capacity = run.capacity

    copy = run.options
    for name, value in changes.items():
        setattr(run.options, name, value)   # a temporary copy: has no effect anywhere
        setattr(copy, name, value)          # a kept copy: changes only itself
    for name, value in changes.items():
        assert getattr(copy, name) == value, f"the copy did not take {name}={value!r}"
    assert option_fields(run.options) == before, "run.options changed"
    assert run.options is not run.options, "run.options must hand out a fresh copy"
    assert run.capacity == capacity
    with pytest.raises(AttributeError):
        run.options = copy  # the property itself is read-only

    pulled = push_and_pull_all(run, inputs, spawn)
    check_every_result(pulled, inputs, expected, ordered=before["ordered"])
    assert option_fields(run.options) == before
    if before["max_batch"] > 1:
        assert run.stats().avg_batch_size <= before["max_batch"]


def test_run_options_copy_keeps_the_callback_but_cannot_replace_it(tiny_mlp, make_run):
    drops = []
    x = tiny_mlp.input_for(0)
    run = make_run(tiny_mlp.model, x, queue_depth=1, overflow_policy=DROP_INCOMING,
                   on_input_drop=drops.append)
    assert run.options.on_input_drop is True  # reads as "a callback is set"
    replaced = []
    run.options.on_input_drop = replaced.append
    run.options.on_input_drop = None
    assert run.options.on_input_drop is True
    results = [run.try_push(x, frame_id=i) for i in range(3 * run.capacity)]
    assert results.count(False) >= 1
    assert len(drops) == results.count(False), "the original callback no longer ran"
    assert replaced == []
    run.close_input()
    assert len(list(pull_until_closed(run))) == results.count(True)


def model_option_fields(options: rf.Model.Options) -> dict:
    p, s = options.preprocess, options.session
    return {
        "input_format": p.input_format, "model_format": p.model_format,
        "input_max_width": p.input_max_width, "input_max_height": p.input_max_height,
        "input_max_depth": p.input_max_depth, "mean": list(p.normalize.mean),
        "stddev": list(p.normalize.stddev), "resize": p.resize, "enabled": p.enabled(),
        "intra_op_threads": s.intra_op_threads, "inter_op_threads": s.inter_op_threads,
        "optimization": s.optimization, "execution_provider": s.execution_provider,
        "provider_options": dict(s.provider_options),
    }


def test_changing_model_options_changes_nothing(tiny_mlp_path, tiny_mlp, make_run):
    session = rf.SessionOptions(intra_op_threads=1, provider_options={"note": 1})
    model = rf.Model(str(tiny_mlp_path), rf.Model.Options(session=session))
    before = model_option_fields(model.options)
    assert before["intra_op_threads"] == 1 and before["provider_options"] == {"note": "1"}

    # Nested fields of the returned object, and the object's own fields.
    model.options.session.intra_op_threads = 7
    model.options.session.execution_provider = "cuda"
    model.options.session.provider_options = {"device_id": 3}
    model.options.session.optimization = rf.GraphOptimization.Disabled
    model.options.preprocess.input_max_width = 640
    model.options.preprocess.input_format = rf.ColorFormat.BGR
    model.options.preprocess.normalize.mean = [1.0, 2.0, 3.0]
    model.options.preprocess = rf.PreprocessOptions.imagenet(224, 224)
    model.options.session = rf.SessionOptions(execution_provider="nosuchprovider")
    kept = model.options
    kept.preprocess = rf.PreprocessOptions.imagenet(224, 224)
    assert kept.preprocess.enabled()
    assert model_option_fields(model.options) == before, "model.options changed"
    assert model.options is not model.options
    with pytest.raises(AttributeError):
        model.options = kept

    # The model still takes float32 [N, 64] (no preprocessing crept in) and computes the same.
    assert [tuple(spec.shape) for spec in model.input_specs()] == [(None, 64)]
    x = tiny_mlp.input_for(3)
    assert_matches(model.run(x)[0], tiny_mlp.oracle(x))
    run = make_run(model, x)
    run.push(x)
    assert_matches(run.pull(timeout_ms=10_000)[0], tiny_mlp.oracle(x))


# ================================================================================================
# 3. Drop callbacks that raise
# ================================================================================================

def fill_without_pulling(run, x, pushes: int):
    """`pushes` pushes with frame_id = index, nobody pulling. Returns {index: outcome}, where the
    outcome is the bool push() returned or the exception it raised."""
    outcomes = {}
    for i in range(pushes):
        try:
            outcomes[i] = run.push(x(i), frame_id=i)
        except BaseException as error:  # noqa: BLE001 - KeyboardInterrupt and SystemExit too
            outcomes[i] = error
    return outcomes


def drain(run) -> list[tuple]:
    run.close_input()
    return [(s.input_seq, s.frame_id, s[0].copy()) for s in pull_until_closed(run)]


def check_accounting(run, n_pushes, dropped_frames, pulled, inputs_by_frame, oracle):
    """Every push attempt ends up exactly once: pulled (equal to the oracle) or dropped."""
    pulled_frames = [frame_id for _, frame_id, _ in pulled]
    assert len(pulled) + len(dropped_frames) == n_pushes, (
        f"{len(pulled)} pulled + {len(dropped_frames)} dropped != {n_pushes} pushed")
    assert sorted(pulled_frames + list(dropped_frames)) == list(range(n_pushes))
    assert pulled_frames == sorted(pulled_frames), "push order was not kept"
    assert [seq for seq, _, _ in pulled] == sorted(seq for seq, _, _ in pulled)
    stats = run.stats()
    assert stats.input.inputs_dropped == len(dropped_frames)
    assert stats.outputs_pulled == len(pulled)
    assert stats.errors == 0
    for _, frame_id, logits in pulled:
        assert_matches(logits, oracle(inputs_by_frame(frame_id)), what=f"frame {frame_id}")


@pytest.mark.parametrize("via", ["push", "try_push"])
@pytest.mark.parametrize("policy", [DROP_INCOMING, KEEP_LATEST], ids=str)
def test_raising_drop_callback_tells_whether_the_sample_was_accepted(tiny_mlp, make_run, policy,
                                                                     via):
    raised: list[ValueError] = []
    dropped: list[rf.DroppedInput] = []

    def on_drop(d):
        dropped.append(d)
        error = ValueError(f"camera buffer gone at frame {d.frame_id}")
        raised.append(error)
        raise error

    x = tiny_mlp.input_for
    run = make_run(tiny_mlp.model, x(0), queue_depth=1, overflow_policy=policy,
                   on_input_drop=on_drop)
    n_pushes = 4 * run.capacity
    push = getattr(run, via)
    outcomes = {}
    for i in range(n_pushes):
        try:
            outcomes[i] = push(x(i), frame_id=i)
        except rf.CallbackError as error:
            outcomes[i] = error

    errors = {i: e for i, e in outcomes.items() if isinstance(e, rf.CallbackError)}
    assert errors, "nothing was dropped, so the raising callback was never tested"
    # One thread pushes and each push drops at most one sample: one CallbackError per drop.
    assert len(errors) == len(raised) == len(dropped)
    for (i, error), cause, d in zip(sorted(errors.items()), raised, dropped):
        assert isinstance(error, rf.Error)
        assert error.__cause__ is cause, "__cause__ is not the exception the callback raised"
        message = str(error)
        assert "ValueError" in message and f"camera buffer gone at frame {d.frame_id}" in message
        assert "on_input_drop" in message, message
        if policy == DROP_INCOMING:
            assert error.accepted is False
            assert d.frame_id == i and d.reason == rf.DropReason.QueueFull, (
                "DropIncoming must reject the pushed sample itself")
        else:
            assert error.accepted is True
            assert d.frame_id < i and d.reason == rf.DropReason.Evicted, (
                "KeepLatest must evict an older sample")
    plain = [v for v in outcomes.values() if not isinstance(v, rf.CallbackError)]
    if via == "push":
        assert all(v is True for v in plain), "a push that dropped nothing did not return True"
    else:
        assert all(isinstance(v, bool) for v in plain)

    # The Run goes on, and nothing but the reported drops is lost.
    pulled = drain(run)
    check_accounting(run, n_pushes, [d.frame_id for d in dropped], pulled, x, tiny_mlp.oracle)
    accepted = {i for i, v in outcomes.items()
                if v is True or (isinstance(v, rf.CallbackError) and v.accepted)}
    evicted = {d.frame_id for d in dropped if d.reason == rf.DropReason.Evicted}
    assert {frame_id for _, frame_id, _ in pulled} == accepted - evicted


@pytest.mark.parametrize("exception", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("policy", [DROP_INCOMING, KEEP_LATEST], ids=str)
def test_keyboard_interrupt_and_system_exit_from_a_drop_callback_propagate_as_themselves(
        tiny_mlp, make_run, policy, exception):
    calls: list[BaseException] = []

    def on_drop(d):
        error = exception(f"raised at frame {d.frame_id}")
        calls.append((d, error))
        raise error

    x = tiny_mlp.input_for
    run = make_run(tiny_mlp.model, x(0), queue_depth=1, overflow_policy=policy,
                   on_input_drop=on_drop)
    n_pushes = 3 * run.capacity
    outcomes = fill_without_pulling(run, x, n_pushes)

    interrupted = {i: v for i, v in outcomes.items() if isinstance(v, BaseException)}
    assert interrupted, "nothing was dropped, so the callback never ran"
    assert len(interrupted) == len(calls)
    for (i, raised), (d, error) in zip(sorted(interrupted.items()), calls):
        assert type(raised) is exception, (
            f"push {i} raised {type(raised).__name__}: {raised}, expected {exception.__name__}")
        assert raised is error, "not the very exception the callback raised"
        if policy == DROP_INCOMING:
            assert d.frame_id == i
        else:
            assert d.frame_id < i
    assert all(v is True for v in outcomes.values() if not isinstance(v, BaseException))

    # Still usable: a sample pushed now comes back right, after every earlier accepted one.
    pulled = drain_after_one_more(run, x, n_pushes)
    check_accounting(run, n_pushes + 1, [d.frame_id for d, _ in calls], pulled, x,
                     tiny_mlp.oracle)


def drain_after_one_more(run, x, frame_id):
    """Pulls everything, then pushes one more sample, and drains to the end of the stream."""
    pulled = []
    while True:
        result = run.pull_with_status(timeout_ms=1000)
        if result.status == rf.PullStatus.Timeout:
            break
        assert result.status == rf.PullStatus.Ok, result
        s = result.sample
        pulled.append((s.input_seq, s.frame_id, s[0].copy()))
    assert run.push(x(frame_id), frame_id=frame_id) is True
    return pulled + drain(run)


# ================================================================================================
# 4. Re-entrant drop callbacks
# ================================================================================================

REENTRANT_FRAME = 100_000  # frame ids of samples pushed from inside the callback


@pytest.mark.parametrize("inner", ["push", "try_push"])
@pytest.mark.parametrize("policy", [KEEP_LATEST, DROP_INCOMING], ids=str)
def test_push_from_inside_the_runs_own_drop_callback_is_refused(tiny_mlp, make_run, policy,
                                                               inner):
    """Old behaviour: livelock under KeepLatest, recursion until a segfault under DropIncoming."""
    holder: list[rf.Run] = []
    dropped: list[rf.DroppedInput] = []

    def on_drop(d):
        dropped.append(d)
        getattr(holder[0], inner)(tiny_mlp.input_for(7), frame_id=REENTRANT_FRAME + d.frame_id)

    x = tiny_mlp.input_for
    run = make_run(tiny_mlp.model, x(0), queue_depth=1, overflow_policy=policy,
                   on_input_drop=on_drop)
    holder.append(run)
    try:
        n_pushes = 3 * run.capacity
        start = time.monotonic()
        outcomes = call_with_deadline(lambda: fill_without_pulling(run, x, n_pushes),
                                      timeout_s=60, name="pushes with a re-entrant callback")
        elapsed = time.monotonic() - start

        errors = {i: v for i, v in outcomes.items() if isinstance(v, BaseException)}
        assert errors, "nothing was dropped, so the callback never ran"
        assert len(errors) == len(dropped), "one callback call per drop, none recursive"
        for i, error in errors.items():
            assert type(error) is rf.CallbackError, f"push {i} raised {error!r}"
            cause = error.__cause__
            assert type(cause) is rf.Error, f"cause is {cause!r}"
            assert "on_input_drop" in str(cause), str(cause)
            assert error.accepted is (policy == KEEP_LATEST)
        assert all(v is True for v in outcomes.values() if not isinstance(v, BaseException))
        print(f"\n{policy} / inner {inner}: {n_pushes} pushes, {len(errors)} refused "
              f"re-entrant pushes, {elapsed:.3f} s")

        # Nothing was pushed from inside; the Run goes on and accounts for every outer push.
        pulled = drain(run)
        assert all(frame_id < REENTRANT_FRAME for _, frame_id, _ in pulled)
        check_accounting(run, n_pushes, [d.frame_id for d in dropped], pulled, x,
                         tiny_mlp.oracle)
    finally:
        holder.clear()  # the callback refers to the Run: break the cycle


def test_callback_that_catches_the_refusal_lets_the_push_succeed(tiny_mlp, make_run):
    holder: list[rf.Run] = []
    refusals: list[BaseException] = []

    def on_drop(d):
        try:
            holder[0].push(tiny_mlp.input_for(7), frame_id=REENTRANT_FRAME)
        except rf.Error as error:
            refusals.append(error)

    x = tiny_mlp.input_for
    run = make_run(tiny_mlp.model, x(0), queue_depth=1, overflow_policy=KEEP_LATEST,
                   on_input_drop=on_drop)
    holder.append(run)
    try:
        n_pushes = 3 * run.capacity
        outcomes = call_with_deadline(lambda: fill_without_pulling(run, x, n_pushes),
                                      timeout_s=60, name="pushes")
        assert all(v is True for v in outcomes.values()), outcomes
        assert refusals and all(type(e) is rf.Error and "on_input_drop" in str(e)
                                for e in refusals)
        pulled = drain(run)
        assert len(pulled) + len(refusals) == n_pushes
        assert all(frame_id < REENTRANT_FRAME for _, frame_id, _ in pulled)
    finally:
        holder.clear()


def test_pushing_into_another_run_from_a_drop_callback_is_allowed(tiny_mlp, make_run):
    """The refusal is only for the Run's own callback: a fallback Run takes the drops."""
    x = tiny_mlp.input_for
    fallback = make_run(tiny_mlp.model, x(0), queue_depth=64)
    run = make_run(tiny_mlp.model, x(0), queue_depth=1, overflow_policy=DROP_INCOMING,
                   on_input_drop=lambda d: fallback.push(x(d.frame_id), frame_id=d.frame_id))
    n_pushes = 3 * run.capacity
    assert n_pushes <= fallback.capacity
    outcomes = fill_without_pulling(run, x, n_pushes)
    assert all(isinstance(v, bool) for v in outcomes.values()), outcomes
    main = drain(run)
    rescued = drain(fallback)
    assert sorted(f for _, f, _ in main + rescued) == list(range(n_pushes))
    for _, frame_id, logits in main + rescued:
        assert_matches(logits, tiny_mlp.oracle(x(frame_id)))


# ================================================================================================
# 6. Cheap rejection: nothing is copied before the shape and dtype are checked
# ================================================================================================

HUGE_ROWS = 1 << 34  # 2^34 rows: 4 TiB as float32 [., 64]; a broadcast view takes no memory


def huge(dtype, columns: int) -> np.ndarray:
    view = np.broadcast_to(np.array(1, dtype), (HUGE_ROWS, columns))
    assert view.nbytes >= 1 << 40 and not view.flags.c_contiguous
    return view


HUGE_BAD_INPUTS = {
    "float32 [2^34, 63]": (lambda: huge(np.float32, 63), rf.ShapeError, ("63", "64")),
    "float64 [2^34, 64]": (lambda: huge(np.float64, 64), rf.DTypeError, ("float64", "float32")),
    "float32 [2^34, 63] in a dict": (lambda: {"input": huge(np.float32, 63)}, rf.ShapeError,
                                     ("63", "64")),
    "float32 [2^34, 63] in a list": (lambda: [huge(np.float32, 63)], rf.ShapeError,
                                     ("63", "64")),
    "int64 [2^34, 63]": (lambda: huge(np.int64, 63), rf.Error, ("64",)),
}
QUICK_S = 1.0  # a rejection costs microseconds; copying even 1 GB takes longer than this


def timed(call):
    start = time.perf_counter()
    try:
        call()
    except BaseException as error:  # noqa: BLE001 - returned to the test
        return error, time.perf_counter() - start
    return None, time.perf_counter() - start


@pytest.mark.parametrize("via", ["push", "try_push", "check", "Run.run"])
@pytest.mark.parametrize("case", list(HUGE_BAD_INPUTS), ids=list(HUGE_BAD_INPUTS))
def test_wrong_huge_input_is_refused_before_any_copy(tiny_mlp, make_run, case, via):
    make_bad, error_type, fragments = HUGE_BAD_INPUTS[case]
    x = tiny_mlp.input_for(0)
    run = make_run(tiny_mlp.model, x)
    call = {"push": run.push, "try_push": run.try_push, "check": run.check,
            "Run.run": run.run}[via]
    error, elapsed = timed(lambda: call(make_bad()))
    assert error is not None, f"{via} accepted a wrong input"
    assert not isinstance(error, MemoryError), f"{via} tried to copy first: {error!r}"
    assert isinstance(error, error_type), f"{via} raised {error!r}"
    for fragment in fragments:
        assert fragment in str(error), f"{fragment!r} missing from {error}"
    assert elapsed < QUICK_S, f"{via} took {elapsed:.3f} s to refuse"
    # Nothing went in: the next sample is the first, and right.
    assert run.stats().input.inputs_enqueued == 0
    run.push(x, frame_id=5)
    sample = run.pull(timeout_ms=10_000)
    assert (sample.input_seq, sample.frame_id) == (0, 5)
    assert_matches(sample[0], tiny_mlp.oracle(x))


@pytest.mark.parametrize("case", ["float32 [2^34, 63]", "float64 [2^34, 64]"])
def test_wrong_huge_input_is_refused_by_model_run_before_any_copy(tiny_mlp, case):
    """README: ShapeError is raised by ... Model.run before any data is copied."""
    make_bad, error_type, fragments = HUGE_BAD_INPUTS[case]
    error, elapsed = timed(lambda: tiny_mlp.model.run(make_bad()))
    assert not isinstance(error, MemoryError), f"Model.run tried to copy first: {error!r}"
    assert isinstance(error, error_type), f"Model.run raised {error!r}"
    for fragment in fragments:
        assert fragment in str(error), f"{fragment!r} missing from {error}"
    assert elapsed < QUICK_S
    x = tiny_mlp.input_for(1)
    assert_matches(tiny_mlp.model.run(x)[0], tiny_mlp.oracle(x))


def test_push_beyond_max_shape_is_refused_before_any_copy(tiny_mlp, make_run):
    x = tiny_mlp.input_for(0)
    run = make_run(tiny_mlp.model, x, max_shape={"input": (4, -1)})
    error, elapsed = timed(lambda: run.push(huge(np.float32, 64)))  # right dtype and columns
    assert type(error) is rf.ShapeError, f"raised {error!r}"
    assert str(HUGE_ROWS) in str(error) and "4" in str(error), str(error)
    assert elapsed < QUICK_S
    x4 = np.concatenate([tiny_mlp.input_for(k) for k in range(4)])  # at the bound: accepted
    run.push(x4)
    assert_matches(run.pull(timeout_ms=10_000)[0], tiny_mlp.oracle(x4))


def test_check_validates_without_pushing(tiny_mlp, make_run):
    x = tiny_mlp.input_for(0)
    run = make_run(tiny_mlp.model, x)
    for good in (x, np.concatenate([x, x, x]), {"input": x}, [x], rf.Tensor(x)):
        assert run.check(good) is None
    for bad, error_type in ((huge(np.float32, 63), rf.ShapeError),
                            (huge(np.float64, 64), rf.DTypeError),
                            (x[:, :32], rf.ShapeError)):
        with pytest.raises(error_type):
            run.check(bad)
    stats = run.input_stats()
    assert (stats.pushes, stats.inputs_enqueued, stats.push_failures) == (0, 0, 0)
    assert run.pull(timeout_ms=50) is None, "check() pushed something"
    run.push(x, frame_id=9)
    sample = run.pull(timeout_ms=10_000)
    assert (sample.input_seq, sample.frame_id) == (0, 9)
    assert_matches(sample[0], tiny_mlp.oracle(x))


# ================================================================================================
# 7. Python ergonomics: with, for, rf.RouteOptions
# ================================================================================================

def native_threads() -> int:
    """Threads of this process, the engine's native ones included."""
    return len(os.listdir("/proc/self/task"))


def wait_for_threads(count: int, timeout_s: float = 10.0) -> int:
    deadline = time.monotonic() + timeout_s
    while native_threads() > count and time.monotonic() < deadline:
        time.sleep(0.01)
    return native_threads()


def test_with_block_then_for_loop_delivers_everything_and_closes(tiny_mlp, samples):
    inputs, expected = samples
    graph = graph_of(tiny_mlp.model)
    threads_before = native_threads()
    with graph.build(inputs[0], rf.RunOptions(queue_depth=64, workers=2)) as run:
        assert isinstance(run, rf.Run)
        assert native_threads() > threads_before, "the Run started no threads?"
        for i, x in enumerate(inputs):
            run.push(x, frame_id=i)
        run.close_input()
        pulled = [(s.input_seq, s.frame_id, s[0].copy()) for s in run]  # ends at Closed
    check_every_result(pulled, inputs, expected, ordered=True)

    # After the block: closed, stopped and joined.
    with pytest.raises(rf.ClosedError):
        run.push(inputs[0])
    with pytest.raises(rf.ClosedError):
        run.try_push(inputs[0])
    assert call_with_deadline(lambda: run.pull(), timeout_s=10, name="pull()") is None
    assert run.pull_with_status().status == rf.PullStatus.Closed
    assert list(run) == []
    assert wait_for_threads(threads_before) <= threads_before, "the engine's threads live on"


def test_leaving_with_early_does_not_hang_and_joins(tiny_mlp):
    x = tiny_mlp.input_for(0)
    graph = graph_of(tiny_mlp.model)
    threads_before = native_threads()

    def body():
        seen = []
        with graph.build(x, rf.RunOptions(queue_depth=2)) as run:
            for i in range(run.capacity):  # every slot taken; the input stays open
                run.push(tiny_mlp.input_for(i), frame_id=i)
            for sample in run:
                seen.append((sample.frame_id, sample[0].copy()))
                break  # more results wait, and the input is still open
        return run, seen

    start = time.monotonic()
    run, seen = call_with_deadline(body, timeout_s=30, name="with block left early")
    print(f"\nwith block left mid-iteration in {time.monotonic() - start:.3f} s")
    assert [f for f, _ in seen] == [0]
    assert_matches(seen[0][1], tiny_mlp.oracle(tiny_mlp.input_for(0)))
    with pytest.raises(rf.ClosedError):
        run.push(x)
    assert call_with_deadline(lambda: run.pull(), timeout_s=10, name="pull()") is None
    assert wait_for_threads(threads_before) <= threads_before, "the engine's threads live on"


def test_exception_inside_with_propagates_and_the_run_is_stopped(tiny_mlp):
    x = tiny_mlp.input_for(0)

    class Boom(Exception):
        pass

    run = None
    with pytest.raises(Boom):
        with graph_of(tiny_mlp.model).build(x) as run:
            run.push(x)
            raise Boom()
    with pytest.raises(rf.ClosedError):
        run.push(x)
    assert call_with_deadline(lambda: run.pull(), timeout_s=10, name="pull()") is None


@pytest.fixture(scope="module")
def gather(dynamic_models):
    return dynamic_models["gather"]


def gather_indices(seed: int, bad: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    indices = rng.integers(-GATHER_ROWS, GATHER_ROWS, (1, GATHER_PICKS), dtype=np.int64)
    if bad:
        indices[0, 1] = 50  # out of range: onnxruntime fails this sample
    return indices


def test_for_loop_raises_inference_error_for_a_failed_sample_and_goes_on(gather):
    inputs = [gather_indices(0), gather_indices(1, bad=True), gather_indices(2)]
    gather.oracle.failure(inputs[1])  # onnxruntime refuses it too
    with graph_of(gather.model).build(inputs[0]) as run:
        for i, indices in enumerate(inputs):
            run.push(indices, frame_id=40 + i)
        run.close_input()
        seen = []
        with pytest.raises(rf.InferenceError) as raised:
            for sample in run:
                seen.append(sample)
        assert [s.frame_id for s in seen] == [40]
        message = str(raised.value)
        assert "frame_id=41" in message and "Gather" in message, message
        rest = list(run)  # iteration picks up after the failed sample
        assert [s.frame_id for s in rest] == [42]
        for sample, indices in zip(seen + rest, [inputs[0], inputs[2]]):
            np.testing.assert_array_equal(sample["rows"], gather.oracle(indices)["rows"])
        with pytest.raises(StopIteration):
            next(run)


def test_route_options_at_the_top_level():
    assert rf.RouteOptions is rf.Model.RouteOptions
    assert "RouteOptions" in rf.__all__
    route = rf.RouteOptions(include_input=True, include_output=False)
    assert (route.include_input, route.include_output) == (True, False)
    from ringflow import RouteOptions  # noqa: F401 - importable by name, as users write it


def test_top_level_route_options_build_a_working_run(tiny_mlp):
    x = tiny_mlp.input_for(2)
    graph = rf.Graph()
    graph.add(tiny_mlp.model.graph(rf.RouteOptions()))
    with graph.build(x) as run:
        assert_matches(run.run(x)[0], tiny_mlp.oracle(x))


# ================================================================================================
# 8. Execution providers
# ================================================================================================

# ORT's name for each provider ringflow knows by a short name.
ORT_NAMES = {
    "cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider", "openvino": "OpenVINOExecutionProvider",
    "dnnl": "DnnlExecutionProvider", "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider", "cann": "CANNExecutionProvider",
    "vitisai": "VitisAIExecutionProvider", "coreml": "CoreMLExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider", "qnn": "QNNExecutionProvider",
    "snpe": "SNPEExecutionProvider", "webgpu": "WebGpuExecutionProvider",
    "azure": "AzureExecutionProvider",
}
AVAILABLE = ort.get_available_providers()


def load_with_provider(path, name: str, provider_options=None) -> rf.Model:
    session = rf.SessionOptions(execution_provider=name, provider_options=provider_options or {})
    return rf.Model(str(path), rf.Model.Options(session=session))


@pytest.mark.parametrize("name", ["cpu", "CPU", "Cpu", "CPUExecutionProvider",
                                  "cpuexecutionprovider"])
def test_cpu_provider_names_load_and_match_the_oracle(tiny_mlp, make_run, name):
    model = load_with_provider(tiny_mlp.path, name, {"unused": 1})
    assert model.options.session.execution_provider == name
    assert model.options.session.provider_options == {"unused": "1"}
    x = np.concatenate([tiny_mlp.input_for(k) for k in range(3)])
    assert_matches(model.run(x)[0], tiny_mlp.oracle(x))
    run = make_run(model, x)
    run.push(x)
    assert_matches(run.pull(timeout_ms=10_000)[0], tiny_mlp.oracle(x))


@pytest.mark.parametrize("name", [n for n in ORT_NAMES if n != "cpu"])
def test_available_accelerators_load(tiny_mlp, name):
    """Whatever this onnxruntime has besides the CPU (here maybe only Azure) loads and runs."""
    if ORT_NAMES[name] not in AVAILABLE:
        pytest.skip(f"{ORT_NAMES[name]} is not in this onnxruntime")
    model = load_with_provider(tiny_mlp.path, name)
    x = tiny_mlp.input_for(5)
    assert_matches(model.run(x)[0], tiny_mlp.oracle(x), atol=1e-4)


# "cuda" and "nosuch" are rows of test_bad_input_matrix.py; these extend them.
UNAVAILABLE_SPELLINGS = ["CUDA", "CUDAExecutionProvider", "tensorrt", "TensorRT", "openvino",
                         "dnnl", "coreml", "xnnpack", "rocm", "migraphx", "cann", "qnn", "snpe",
                         "webgpu", "vitisai", "OpenVINOExecutionProvider"]


def ort_name_of(spelling: str) -> str:
    key = spelling.lower()
    for short, full in ORT_NAMES.items():
        if key in (short, full.lower()):
            return full
    raise AssertionError(spelling)


@pytest.mark.parametrize("with_options", [False, True], ids=["no options", "provider_options"])
@pytest.mark.parametrize("name", UNAVAILABLE_SPELLINGS)
def test_unavailable_provider_raises_model_error_naming_the_available_ones(tiny_mlp, name,
                                                                          with_options):
    full = ort_name_of(name)
    if full in AVAILABLE:
        pytest.skip(f"this onnxruntime has {full}")
    options = {"device_id": 0} if with_options else None
    with pytest.raises(rf.ModelError) as raised:
        load_with_provider(tiny_mlp.path, name, options)
    message = str(raised.value)
    assert name in message, message
    assert full in message, message
    for available in AVAILABLE:
        assert available in message, f"{available} missing from {message!r}"


@pytest.mark.parametrize("name", ["nosuchprovider", "gpu", "cuda:0", "CUDA ExecutionProvider",
                                  "cpu "])
def test_unknown_provider_raises_model_error_listing_the_known_names(tiny_mlp, name):
    with pytest.raises(rf.ModelError) as raised:
        load_with_provider(tiny_mlp.path, name)
    message = str(raised.value)
    assert repr(name)[1:-1] in message, message
    for known in ("cpu", "cuda", "tensorrt", "openvino", "dnnl", "coreml", "xnnpack"):
        assert known in message, f"{known!r} missing from {message!r}"
    assert "CPUExecutionProvider" in message, message


def test_provider_options_round_trip_as_strings():
    options = rf.SessionOptions(execution_provider="cuda",
                                provider_options={"device_id": 1, "arena_extend_strategy":
                                                  "kSameAsRequested", "gpu_mem_limit": 2 << 30,
                                                  "do_copy_in_default_stream": True})
    expected = {"device_id": "1", "arena_extend_strategy": "kSameAsRequested",
                "gpu_mem_limit": str(2 << 30), "do_copy_in_default_stream": "True"}
    assert options.provider_options == expected
    assert options.execution_provider == "cuda"
    options.provider_options = {"device_id": 2}
    assert options.provider_options == {"device_id": "2"}
    # The getter hands out a copy, like the other options.
    options.provider_options["device_id"] = "9"
    assert options.provider_options == {"device_id": "2"}
    assert rf.SessionOptions().provider_options == {}
    assert rf.SessionOptions().execution_provider == "cpu"
    with pytest.raises(TypeError):
        rf.SessionOptions(provider_options=["device_id", 0])

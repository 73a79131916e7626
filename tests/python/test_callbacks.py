"""Results by callback (issue 8, section 1): Run.set_callback(fn, every, max_delay_ms,
report_thread) and Run.wait_all(timeout_ms), AscendCL's "every N executions, on a subscribed
report thread".

What is checked, each against the onnxruntime oracle where there are outputs:
- grouping: groups of exactly `every`, in push order (ordered Run, one or two workers), a partial
  group only at the end (close_input() or wait_all()) or once its oldest result waited
  max_delay_ms;
- wait_all(): True once every callback returned, False on a timeout while a callback is blocked;
- threads: callbacks run on a report thread that set_callback() (or rf.ReportThread()) started,
  never on the main thread or an engine thread; one rf.ReportThread serves several Runs;
- a blocked callback only lets the result slots fill: compute goes on, then the overflow policy;
- failed samples arrive as PullStatus.Error with .error and the sample's metadata;
- callback exceptions: the next push / wait_all / set_callback raises rf.CallbackError (its
  __cause__ the exception, .errors all of them), once; nothing is lost; KeyboardInterrupt and
  SystemExit come out as themselves;
- misuse: pull / pull_with_status / run / iteration after set_callback, set_callback after a
  push or twice, every < 1;
- OutputMemory.Pooled: buffers a callback lets go of are reused, a kept array is never touched;
- the GIL: a pure-Python thread keeps running while callbacks are being delivered.

tiny-mlp: float32 [N, 64] -> logits [N, 10]. gather: int64 indices [N, 3] -> rows [N, 3, 4]; an
index outside [-10, 9] fails its sample (see test_batch_failure.py).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time

import numpy as np
import pytest

import ringflow as rf
from dynamic_models import assert_outputs_match
from helpers import assert_matches

OK = rf.PullStatus.Ok
ERROR = rf.PullStatus.Error
POOLED = rf.OutputMemory.Pooled
# Generous: only there to turn a hang into a failure.
WAIT_MS = 30_000
WAIT_S = WAIT_MS / 1000


@dataclasses.dataclass
class Delivered:
    status: rf.PullStatus
    input_seq: int
    frame_id: int
    stream_id: str
    pts_ns: int
    output: np.ndarray | None  # a copy of output 0 (Ok only)
    error: str


class Recorder:
    """A result callback that records every group (copies of the outputs) and the thread it
    ran on. `hook(group_index, results)` runs first, inside the callback."""

    def __init__(self, hook=None) -> None:
        self.groups: list[list[Delivered]] = []
        self.idents: list[int] = []
        self.native_ids: list[int] = []
        self.hook = hook

    def __call__(self, results) -> None:
        self.idents.append(threading.get_ident())
        self.native_ids.append(threading.get_native_id())
        entries = []
        for r in results:
            s = r.sample
            output = s[0].copy() if r.status == OK else None
            entries.append(Delivered(r.status, s.input_seq, s.frame_id, s.stream_id, s.pts_ns,
                                     output, r.error))
        group_index = len(self.groups)
        self.groups.append(entries)  # before the hook: a raising group still counts
        if self.hook is not None:
            self.hook(group_index, results)

    @property
    def results(self) -> list[Delivered]:
        return [d for g in self.groups for d in g]

    @property
    def sizes(self) -> list[int]:
        return [len(g) for g in self.groups]


def thread_ids() -> set[int]:
    """The native ids of this process's threads."""
    return {int(t) for t in os.listdir("/proc/self/task")}


def expected_sizes(n: int, every: int) -> list[int]:
    return [every] * (n // every) + ([n % every] if n % every else [])


def check_outputs(tiny_mlp, delivered: list[Delivered], inputs) -> None:
    expected = tiny_mlp.oracle.batched([inputs[d.frame_id] for d in delivered])
    for d, ref in zip(delivered, expected):
        assert d.status == OK, d
        assert_matches(d.output, ref, what=f"frame {d.frame_id}")


@pytest.fixture(scope="module")
def mlp_inputs(tiny_mlp):
    return [tiny_mlp.input_for(i) for i in range(200)]


# ================================================================================================
# Groups, order, partial groups
# ================================================================================================

N_GROUPED = 31


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("every", [1, 4, 7])
def test_groups_of_every_arrive_whole_and_in_push_order(tiny_mlp, mlp_inputs, make_run, every,
                                                        workers):
    run = make_run(tiny_mlp.model, mlp_inputs[0], queue_depth=4, workers=workers)
    rec = Recorder()
    run.set_callback(rec, every=every)
    for i in range(N_GROUPED):
        assert run.push(mlp_inputs[i], frame_id=i, stream_id="cam", pts_ns=1000 * i) is True
    run.close_input()
    assert run.wait_all(timeout_ms=WAIT_MS) is True

    # Whole groups until the end; the last partial group goes at close_input() + wait_all().
    assert rec.sizes == expected_sizes(N_GROUPED, every)
    assert [g[0].input_seq for g in rec.groups] == list(range(0, N_GROUPED, every))
    got = rec.results
    assert [d.input_seq for d in got] == list(range(N_GROUPED)), "not in push order"
    assert [(d.frame_id, d.stream_id, d.pts_ns) for d in got] == [
        (i, "cam", 1000 * i) for i in range(N_GROUPED)]
    check_outputs(tiny_mlp, got, mlp_inputs)
    stats = run.stats()
    assert (stats.outputs_ready, stats.outputs_pulled, stats.errors) == (N_GROUPED, N_GROUPED, 0)


def test_unordered_run_groups_every_result_once(tiny_mlp, mlp_inputs, make_run):
    run = make_run(tiny_mlp.model, mlp_inputs[0], queue_depth=4, workers=2, ordered=False)
    rec = Recorder()
    run.set_callback(rec, every=5)
    for i in range(N_GROUPED):
        run.push(mlp_inputs[i], frame_id=i)
    run.close_input()
    assert run.wait_all(timeout_ms=WAIT_MS) is True
    assert rec.sizes == expected_sizes(N_GROUPED, 5)
    assert sorted(d.frame_id for d in rec.results) == list(range(N_GROUPED))
    check_outputs(tiny_mlp, rec.results, mlp_inputs)


def test_a_partial_group_waits_until_close_input_and_wait_all(tiny_mlp, mlp_inputs, make_run):
    run = make_run(tiny_mlp.model, mlp_inputs[0])
    rec = Recorder()
    run.set_callback(rec, every=10)  # max_delay_ms=-1: no timer
    for i in range(3):
        run.push(mlp_inputs[i], frame_id=i)
    time.sleep(0.3)  # ample for three tiny-mlp inferences
    assert rec.groups == [], "a partial group went out while more could still join it"
    assert run.stats().outputs_ready == 3
    run.close_input()
    assert run.wait_all(timeout_ms=WAIT_MS) is True
    assert rec.sizes == [3]
    assert [d.input_seq for d in rec.results] == [0, 1, 2]
    check_outputs(tiny_mlp, rec.results, mlp_inputs)


def test_wait_all_alone_delivers_the_partial_group_and_the_run_goes_on(tiny_mlp, mlp_inputs,
                                                                      make_run):
    run = make_run(tiny_mlp.model, mlp_inputs[0])
    rec = Recorder()
    run.set_callback(rec, every=4)
    for i in range(6):
        run.push(mlp_inputs[i], frame_id=i)
    assert run.wait_all(timeout_ms=WAIT_MS) is True  # input still open
    assert rec.sizes == [4, 2]
    for i in range(6, 14):
        run.push(mlp_inputs[i], frame_id=i)
    run.close_input()
    assert run.wait_all(timeout_ms=WAIT_MS) is True
    assert rec.sizes == [4, 2, 4, 4]
    assert [g[0].input_seq for g in rec.groups] == [0, 4, 6, 10]
    assert [d.frame_id for d in rec.results] == list(range(14))
    check_outputs(tiny_mlp, rec.results, mlp_inputs)


def test_wait_all_on_a_run_with_nothing_in_flight_returns_true_at_once(tiny_mlp, mlp_inputs,
                                                                      make_run):
    run = make_run(tiny_mlp.model, mlp_inputs[0])
    run.set_callback(Recorder(), every=3)
    assert run.wait_all(timeout_ms=0) is True
    assert run.wait_all() is True


MAX_DELAY_MS = 150


def test_max_delay_delivers_a_partial_group_after_about_that_delay(tiny_mlp, mlp_inputs,
                                                                   make_run):
    arrived: list[float] = []
    arrival = threading.Event()

    def hook(group_index, results):
        arrived.append(time.perf_counter())
        arrival.set()

    run = make_run(tiny_mlp.model, mlp_inputs[0])
    rec = Recorder(hook)
    run.set_callback(rec, every=50, max_delay_ms=MAX_DELAY_MS)
    for round_ in range(2):  # the timer re-arms for the next partial group
        arrival.clear()
        first_seq = sum(rec.sizes)
        start = time.perf_counter()
        for i in range(3):
            run.push(mlp_inputs[first_seq + i], frame_id=first_seq + i)
        # No close_input(), no wait_all(): only the delay can send it.
        assert arrival.wait(WAIT_S), f"round {round_}: no partial group after {WAIT_S} s"
        waited = arrived[-1] - start
        # The group's oldest result is taken after the first push, and the group is due
        # max_delay_ms later; the upper bound only turns a hang into a failure.
        assert waited >= MAX_DELAY_MS / 1000 * 0.95, f"round {round_}: came after {waited:.3f} s"
        assert waited < 10, f"round {round_}: came after {waited:.3f} s"
        # Three quick pushes normally make one group; a very slow box may split them.
        deadline = time.perf_counter() + WAIT_S
        while sum(rec.sizes) < first_seq + 3 and time.perf_counter() < deadline:
            time.sleep(0.01)
        assert sum(rec.sizes) == first_seq + 3
    assert [d.input_seq for d in rec.results] == list(range(6))
    check_outputs(tiny_mlp, rec.results, mlp_inputs)
    run.close_input()
    assert run.wait_all(timeout_ms=WAIT_MS) is True


def test_wait_all_times_out_while_a_callback_is_blocked(tiny_mlp, mlp_inputs, make_run):
    gate = threading.Event()
    entered = threading.Event()

    def hook(group_index, results):
        entered.set()
        gate.wait(WAIT_S)

    run = make_run(tiny_mlp.model, mlp_inputs[0])
    rec = Recorder(hook)
    run.set_callback(rec)
    run.push(mlp_inputs[0], frame_id=0)
    assert entered.wait(WAIT_S)
    start = time.perf_counter()
    assert run.wait_all(timeout_ms=200) is False
    assert time.perf_counter() - start >= 0.19
    assert run.wait_all(timeout_ms=0) is False
    gate.set()
    assert run.wait_all(timeout_ms=WAIT_MS) is True
    assert rec.sizes == [1]


# ================================================================================================
# Report threads
# ================================================================================================

def test_callbacks_run_on_the_runs_own_report_thread(tiny_mlp, mlp_inputs, make_run):
    """Each Run's callbacks come on one thread, which set_callback() started: not the main thread,
    not any engine (dispatch or inference) thread, which all exist once the Run is built."""
    main_ident = threading.get_ident()
    recorders, new_threads, runs = [], [], []
    for _ in range(2):
        run = make_run(tiny_mlp.model, mlp_inputs[0], queue_depth=4, workers=2)
        before = thread_ids()
        rec = Recorder()
        run.set_callback(rec, every=2)
        new_threads.append(thread_ids() - before)
        recorders.append(rec)
        runs.append(run)
    for i in range(20):
        for run in runs:
            run.push(mlp_inputs[i], frame_id=i)
    for run, rec, started in zip(runs, recorders, new_threads):
        assert run.wait_all(timeout_ms=WAIT_MS) is True
        assert len(rec.groups) == 10
        assert len(set(rec.idents)) == 1, "one Run's callbacks came on several threads"
        assert rec.idents[0] != main_ident
        (native,) = set(rec.native_ids)
        assert native in started, "the callback thread is not the one set_callback() started"
        check_outputs(tiny_mlp, rec.results, mlp_inputs)
    assert recorders[0].idents[0] != recorders[1].idents[0], "two Runs shared a default thread"


def test_one_report_thread_serves_three_runs(tiny_mlp, mlp_inputs, make_run):
    before = thread_ids()
    report_thread = rf.ReportThread()
    started = thread_ids() - before
    assert len(started) == 1, started

    runs, recorders = [], []
    for _ in range(3):
        run = make_run(tiny_mlp.model, mlp_inputs[0], queue_depth=4)
        subscribed_before = thread_ids()
        rec = Recorder()
        run.set_callback(rec, every=3, report_thread=report_thread)
        assert thread_ids() - subscribed_before == set(), "set_callback started a thread anyway"
        runs.append(run)
        recorders.append(rec)
    # The Runs keep the thread going after the handle is gone.
    del report_thread

    n = 20
    for i in range(n):
        for run in runs:
            run.push(mlp_inputs[i], frame_id=i)
    for run in runs:
        run.close_input()
        assert run.wait_all(timeout_ms=WAIT_MS) is True
    idents = {ident for rec in recorders for ident in rec.idents}
    natives = {native for rec in recorders for native in rec.native_ids}
    assert len(idents) == 1, f"three Runs sharing a ReportThread used {len(idents)} threads"
    assert idents != {threading.get_ident()}
    assert natives == started
    for rec in recorders:
        assert rec.sizes == expected_sizes(n, 3)
        assert [d.frame_id for d in rec.results] == list(range(n))
        check_outputs(tiny_mlp, rec.results, mlp_inputs)


def test_a_blocked_callback_lets_compute_go_on_until_the_result_slots_fill(
        tiny_mlp, mlp_inputs, make_run, spawn):
    gate = threading.Event()
    entered = threading.Event()

    def hook(group_index, results):
        if group_index == 0:
            entered.set()
            gate.wait(WAIT_S)

    run = make_run(tiny_mlp.model, mlp_inputs[0], queue_depth=4, workers=1)
    rec = Recorder(hook)
    run.set_callback(rec)
    n = 40
    pushed = []

    def produce():
        for i in range(n):
            run.push(mlp_inputs[i], frame_id=i)
            pushed.append(i)

    producer = spawn(produce, name="producer")
    assert entered.wait(WAIT_S)
    # While the callback sits on sample 0, inference goes on until the result slots are full...
    readies, deadline = [], time.perf_counter() + WAIT_S
    while time.perf_counter() < deadline:
        readies.append(run.stats().outputs_ready)
        if len(readies) >= 30 and readies[-30] == readies[-1] and readies[-1] > 1:
            break  # unchanged for 0.3 s
        time.sleep(0.01)
    plateau = readies[-1]
    assert plateau > 1, "a blocked callback stalled compute"
    # The sample in the callback, plus one per result slot (capacity = queue_depth waiting +
    # queue_depth + workers x max_batch result slots + the `every` results of the group).
    assert plateau == run.capacity - 4, f"{plateau} results computed, capacity {run.capacity}"
    # ...then Block applies at push: the producer waits, nothing is dropped.
    assert producer.is_alive() and len(pushed) < n
    assert len(pushed) <= run.capacity  # the sample inside the blocked callback counts too
    assert rec.sizes == [1]
    gate.set()
    producer.join()
    run.close_input()
    assert run.wait_all(timeout_ms=WAIT_MS) is True
    assert [d.frame_id for d in rec.results] == list(range(n))
    check_outputs(tiny_mlp, rec.results, mlp_inputs)


def test_a_blocked_callback_makes_drop_incoming_reject(tiny_mlp, mlp_inputs, make_run):
    gate = threading.Event()
    entered = threading.Event()

    def hook(group_index, results):
        if group_index == 0:
            entered.set()
            gate.wait(WAIT_S)

    run = make_run(tiny_mlp.model, mlp_inputs[0], queue_depth=2,
                   overflow_policy=rf.OverflowPolicy.DropIncoming)
    rec = Recorder(hook)
    run.set_callback(rec)
    assert run.push(mlp_inputs[0], frame_id=0) is True
    assert entered.wait(WAIT_S)
    accepted = [0]
    for i in range(1, 30):
        if run.push(mlp_inputs[i], frame_id=i):
            accepted.append(i)
        time.sleep(0.002)
    assert len(accepted) < 30, "nothing was rejected while the callback blocked"
    gate.set()
    run.close_input()
    assert run.wait_all(timeout_ms=WAIT_MS) is True
    assert [d.frame_id for d in rec.results] == accepted
    check_outputs(tiny_mlp, rec.results, mlp_inputs)


# ================================================================================================
# Failed samples
# ================================================================================================

BAD = {2: 50, 5: -11, 6: 99}  # position -> out-of-range index


@pytest.mark.parametrize("workers", [1, 2])
def test_failed_samples_arrive_as_error_results_with_their_metadata(dynamic_models, make_run,
                                                                    workers):
    gather = dynamic_models["gather"]
    rng = np.random.default_rng(8)
    inputs = [rng.integers(-10, 10, (1, 3), dtype=np.int64) for _ in range(9)]
    for position, bad in BAD.items():
        inputs[position][0, 1] = bad
    run = make_run(gather.model, inputs[0], workers=workers)
    rec = Recorder()
    run.set_callback(rec, every=3)
    for i, x in enumerate(inputs):
        run.push(x, frame_id=500 + i, stream_id=f"cam-{i % 2}", pts_ns=7 * i)
    run.close_input()
    assert run.wait_all(timeout_ms=WAIT_MS) is True

    assert rec.sizes == [3, 3, 3]
    got = rec.results
    assert [(d.input_seq, d.frame_id, d.stream_id, d.pts_ns) for d in got] == [
        (i, 500 + i, f"cam-{i % 2}", 7 * i) for i in range(len(inputs))]
    for i, (d, x) in enumerate(zip(got, inputs)):
        if i in BAD:
            assert d.status == ERROR, f"sample {i}: {d.status}"
            reason = gather.oracle.failure(x).split("Status Message:", 1)[1].strip()
            assert reason in d.error, f"sample {i}: {d.error!r} lacks {reason!r}"
        else:
            assert d.status == OK and d.error == "", f"sample {i}: {d.status} {d.error!r}"
            assert_matches(d.output, gather.oracle(x)["rows"], what=f"sample {i}")
    assert run.stats().errors == len(BAD)


def test_an_error_result_carries_metadata_but_no_tensors(dynamic_models, make_run):
    gather = dynamic_models["gather"]
    seen = []
    run = make_run(gather.model, np.zeros((1, 3), np.int64))
    run.set_callback(lambda results: seen.extend(
        (r.status, r.error, len(r.sample), list(r.sample.names), r.sample.frame_id)
        for r in results))
    run.push(np.array([[1, 2, 3]], np.int64), frame_id=1)
    run.push(np.array([[1, 77, 3]], np.int64), frame_id=2)
    assert run.wait_all(timeout_ms=WAIT_MS) is True
    assert [(s[0], s[2], s[4]) for s in seen] == [(OK, 1, 1), (ERROR, 0, 2)]
    assert seen[0][3] == ["rows"] and seen[0][1] == ""
    assert seen[1][1] and seen[1][3] == [], seen[1]


# ================================================================================================
# Exceptions raised by callbacks
# ================================================================================================

def gated_raiser(raise_for: dict[int, BaseException], gate: threading.Event,
                 signal: dict[int, threading.Event] | None = None):
    """A hook that waits for `gate` in group 0, raises raise_for[g] in group g and sets
    signal[g] (if any) when group g begins. The gate lets the test push everything first."""
    def hook(group_index, results):
        if signal and group_index in signal:
            signal[group_index].set()
        if group_index == 0:
            gate.wait(WAIT_S)
        if group_index in raise_for:
            raise raise_for[group_index]
    return hook


def first_group_raises(tiny_mlp, mlp_inputs, make_run, error: BaseException):
    """A Run whose Recorder callback raises `error` in group 0, with samples 0 and 1 pushed and the
    gate open. Returns (run, rec, second): `second` is set when group 1 begins, that is once group
    0 has raised and been recorded."""
    gate, second = threading.Event(), threading.Event()
    run = make_run(tiny_mlp.model, mlp_inputs[0])
    rec = Recorder(gated_raiser({0: error}, gate, {1: second}))
    run.set_callback(rec)
    assert run.push(mlp_inputs[0], frame_id=0) is True
    assert run.push(mlp_inputs[1], frame_id=1) is True
    gate.set()
    return run, rec, second


def test_a_raising_callback_makes_the_next_push_raise_once(tiny_mlp, mlp_inputs, make_run):
    error = ValueError("cannot encode frame 0")
    run, rec, second = first_group_raises(tiny_mlp, mlp_inputs, make_run, error)
    assert second.wait(WAIT_S)  # group 0 has raised and been recorded before group 1 begins

    with pytest.raises(rf.CallbackError) as raised:
        run.push(mlp_inputs[2], frame_id=2)
    err = raised.value
    assert isinstance(err, rf.Error)
    assert err.__cause__ is error
    assert err.errors == [error]
    assert err.accepted is False, "the push that raised must not have taken its sample"
    assert "ValueError" in str(err) and "cannot encode frame 0" in str(err)

    # Cleared: the Run goes on, and the raising group counts as delivered.
    assert run.push(mlp_inputs[2], frame_id=2) is True
    run.close_input()
    assert run.wait_all(timeout_ms=WAIT_MS) is True
    assert [d.frame_id for d in rec.results] == [0, 1, 2]
    check_outputs(tiny_mlp, rec.results, mlp_inputs)
    assert run.stats().outputs_pulled == 3


def test_try_push_raises_a_pending_callback_error_too(tiny_mlp, mlp_inputs, make_run):
    error = RuntimeError("disk full")
    run, rec, second = first_group_raises(tiny_mlp, mlp_inputs, make_run, error)
    assert second.wait(WAIT_S)
    with pytest.raises(rf.CallbackError) as raised:
        run.try_push(mlp_inputs[2], frame_id=2)
    assert raised.value.__cause__ is error
    assert run.wait_all(timeout_ms=WAIT_MS) is True
    assert [d.frame_id for d in rec.results] == [0, 1]


def test_several_raising_groups_are_reported_together_by_wait_all(tiny_mlp, mlp_inputs, make_run):
    gate = threading.Event()
    errors = {0: ValueError("group 0"), 2: KeyError("group 2"), 3: ZeroDivisionError("group 3")}
    run = make_run(tiny_mlp.model, mlp_inputs[0], queue_depth=16)
    rec = Recorder(gated_raiser(errors, gate))
    run.set_callback(rec, every=2)
    n = 11
    for i in range(n):  # all in before group 0 can raise
        assert run.push(mlp_inputs[i], frame_id=i) is True
    gate.set()
    with pytest.raises(rf.CallbackError) as raised:
        run.wait_all(timeout_ms=WAIT_MS)
    err = raised.value
    assert err.errors == [errors[0], errors[2], errors[3]], err.errors
    assert err.__cause__ is errors[0]
    message = str(err)
    assert "3 times" in message and all(name in message for name in
                                         ("ValueError", "KeyError", "ZeroDivisionError"))

    # Cleared; every result was delivered exactly once, the raising groups' included.
    assert run.wait_all(timeout_ms=WAIT_MS) is True
    assert rec.sizes == expected_sizes(n, 2)
    assert [d.frame_id for d in rec.results] == list(range(n))
    check_outputs(tiny_mlp, rec.results, mlp_inputs)
    assert run.stats().outputs_pulled == n
    run.push(mlp_inputs[n], frame_id=n)
    run.close_input()
    assert run.wait_all(timeout_ms=WAIT_MS) is True
    assert [d.frame_id for d in rec.results] == list(range(n + 1))


def test_an_interrupt_among_callback_errors_keeps_the_others(tiny_mlp, mlp_inputs, make_run):
    """KeyboardInterrupt comes out as itself, but the other callbacks' errors are not lost: they
    ride along as a CallbackError in its __context__."""
    gate = threading.Event()
    error, interrupt = ValueError("group 0"), KeyboardInterrupt()
    run = make_run(tiny_mlp.model, mlp_inputs[0], queue_depth=8)
    rec = Recorder(gated_raiser({0: error, 1: interrupt}, gate))
    run.set_callback(rec)
    for i in range(3):
        assert run.push(mlp_inputs[i], frame_id=i) is True
    gate.set()
    with pytest.raises(KeyboardInterrupt) as raised:
        run.wait_all(timeout_ms=WAIT_MS)
    assert raised.value is interrupt
    context = raised.value.__context__
    assert isinstance(context, rf.CallbackError) and context.errors == [error]
    assert run.wait_all(timeout_ms=WAIT_MS) is True  # reported once, then cleared
    assert [d.frame_id for d in rec.results] == [0, 1, 2]


def test_set_callback_raises_a_pending_callback_error(tiny_mlp, mlp_inputs, make_run):
    error = ValueError("first group failed")
    run, rec, second = first_group_raises(tiny_mlp, mlp_inputs, make_run, error)
    assert second.wait(WAIT_S)
    with pytest.raises(rf.CallbackError) as raised:
        run.set_callback(Recorder())
    assert raised.value.__cause__ is error
    # Once: now the call fails for its own reason.
    with pytest.raises(rf.Error, match="already") as again:
        run.set_callback(Recorder())
    assert not isinstance(again.value, rf.CallbackError)
    assert run.wait_all(timeout_ms=WAIT_MS) is True
    assert [d.frame_id for d in rec.results] == [0, 1]


@pytest.mark.parametrize("via", ["push", "wait_all"])
@pytest.mark.parametrize("exception", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_and_system_exit_come_out_as_themselves(tiny_mlp, mlp_inputs,
                                                                   make_run, exception, via):
    error = exception("stop now")
    run, rec, second = first_group_raises(tiny_mlp, mlp_inputs, make_run, error)
    if via == "push":
        assert second.wait(WAIT_S)
        with pytest.raises(exception) as raised:
            run.push(mlp_inputs[2], frame_id=2)
    else:
        with pytest.raises(exception) as raised:
            run.wait_all(timeout_ms=WAIT_MS)
    assert raised.value is error
    # Reported once; the Run goes on.
    assert run.push(mlp_inputs[2], frame_id=2) is True
    run.close_input()
    assert run.wait_all(timeout_ms=WAIT_MS) is True
    assert [d.frame_id for d in rec.results] == [0, 1, 2]
    check_outputs(tiny_mlp, rec.results, mlp_inputs)


# ================================================================================================
# Misuse
# ================================================================================================

def test_pulling_from_a_run_with_a_callback_raises(tiny_mlp, mlp_inputs, make_run):
    run = make_run(tiny_mlp.model, mlp_inputs[0])
    rec = Recorder()
    run.set_callback(rec)
    run.push(mlp_inputs[0], frame_id=0)
    for name, call in [("pull", lambda: run.pull(timeout_ms=100)),
                       ("pull_with_status", lambda: run.pull_with_status(timeout_ms=100)),
                       ("pull(0)", lambda: run.pull(timeout_ms=0)),
                       ("next", lambda: next(iter(run)))]:
        with pytest.raises(rf.Error, match="callback") as raised:
            call()
        assert not isinstance(raised.value, rf.CallbackError), name
    assert run.wait_all(timeout_ms=WAIT_MS) is True
    with pytest.raises(rf.Error, match="callback"):
        run.run(mlp_inputs[1], timeout_ms=1000)
    assert run.wait_all(timeout_ms=WAIT_MS) is True
    # The result went to the callback, not lost to a pull.
    assert [d.frame_id for d in rec.results] == [0]


def test_set_callback_misuse_raises(tiny_mlp, mlp_inputs, make_run):
    run = make_run(tiny_mlp.model, mlp_inputs[0])
    for every in (0, -2):
        with pytest.raises(rf.Error, match="every"):
            run.set_callback(Recorder(), every=every)
    with pytest.raises(TypeError):
        run.set_callback("not callable")
    run.set_callback(Recorder(), every=2)
    with pytest.raises(rf.Error, match="already"):
        run.set_callback(Recorder())

    late = make_run(tiny_mlp.model, mlp_inputs[0])
    late.push(mlp_inputs[0])
    with pytest.raises(rf.Error, match="before the first push"):
        late.set_callback(Recorder())
    # It still pulls, as it was never given a callback.
    assert late.pull(timeout_ms=WAIT_MS) is not None


# ================================================================================================
# Pooled output buffers
# ================================================================================================

def address(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


def pooled_stream(tiny_mlp, make_run, every: int, n: int = 240):
    """Streams n samples through a Pooled Run whose callback keeps the array of result 0 and
    lets every other go after reading its address. Returns (run, kept array, its values when
    delivered, the other results' addresses); fails on any output that differs from the oracle."""
    rng = np.random.default_rng(77)
    inputs = list(rng.standard_normal((n,) + tiny_mlp.sample_shape, dtype=np.float32))
    expected = tiny_mlp.oracle.batched(inputs)
    kept: list[np.ndarray] = []
    kept_values: list[np.ndarray] = []
    addresses: list[int] = []
    mismatches: list[int] = []

    def callback(results):
        for r in results:
            out = r.sample[0]
            i = r.sample.frame_id
            if not np.allclose(out, expected[i], atol=1e-5):
                mismatches.append(i)
            if i == 0:
                kept.append(out)  # only the array: the PullResult and Sample go
                kept_values.append(out.copy())
            else:
                addresses.append(address(out))

    run = make_run(tiny_mlp.model, inputs[0], queue_depth=2, output_memory=POOLED)
    run.set_callback(callback, every=every)
    for i, x in enumerate(inputs):
        run.push(x, frame_id=i)
    run.close_input()
    assert run.wait_all(timeout_ms=WAIT_MS) is True
    assert mismatches == []
    assert len(addresses) == n - 1
    (held,) = kept
    assert_matches(held, expected[0], what="kept pooled result")
    return run, held, kept_values[0], addresses


def test_pooled_buffers_cycle_unless_the_callback_keeps_the_array(tiny_mlp, make_run):
    run, held, held_values, addresses = pooled_stream(tiny_mlp, make_run, every=1)
    np.testing.assert_array_equal(held, held_values, err_msg="a kept pooled buffer was reused")
    assert address(held) not in addresses, "a kept buffer was handed out again"
    # At most capacity results, plus the one in the callback, hold a buffer at a time.
    distinct = len(set(addresses))
    assert distinct <= run.capacity + 1, (
        f"{distinct} buffers for {len(addresses)} results: the callback's buffers did not go back "
        "to the pool")


def test_pooled_buffers_cycle_with_groups_larger_than_the_capacity(tiny_mlp, make_run):
    every = 16
    run, held, held_values, addresses = pooled_stream(tiny_mlp, make_run, every=every)
    np.testing.assert_array_equal(held, held_values, err_msg="a kept pooled buffer was reused")
    distinct = len(set(addresses))
    assert distinct <= run.capacity + every, (
        f"{distinct} buffers for {len(addresses)} results (capacity {run.capacity}, every {every})")


# ================================================================================================
# The GIL
# ================================================================================================

MEASURE_SECONDS = 0.6
MIN_CALLS_WITH_PROGRESS = 0.5


def test_a_python_thread_keeps_running_while_callbacks_are_delivered(tiny_mlp, mlp_inputs,
                                                                     make_run, progress_counter):
    """The report thread takes the GIL only around each call, and wait_all() waits without it:
    a pure-Python thread keeps running while a saturated Run delivers callbacks (see
    test_concurrency.py for the measurement and its control)."""
    burst = 64
    delivered = []

    def callback(results):
        total = 0
        for k in range(3000):  # a little pure-Python work per group, holding the GIL
            total += k
        delivered.extend(r.sample.frame_id for r in results)

    run = make_run(tiny_mlp.model, mlp_inputs[0], queue_depth=burst, workers=2)
    run.set_callback(callback)

    def step():
        for i in range(burst):
            run.push(mlp_inputs[i], frame_id=i)
        return run.wait_all(timeout_ms=WAIT_MS)

    ran, steps = [], 0
    deadline = time.perf_counter() + MEASURE_SECONDS
    while len(ran) < 3 or time.perf_counter() < deadline:
        progressed, done = progress_counter.ran_inside(step)
        assert done is True
        ran.append(progressed)
        steps += 1
    fraction = sum(ran) / len(ran)
    assert fraction >= MIN_CALLS_WITH_PROGRESS, (
        f"a Python thread ran during only {fraction:.0%} of {len(ran)} bursts")
    assert len(delivered) == steps * burst
    assert delivered == list(range(burst)) * steps


def test_set_callback_after_stop_is_refused(tiny_mlp, mlp_inputs, make_run):
    run = make_run(tiny_mlp.model, mlp_inputs[0])
    run.stop()
    with pytest.raises(rf.ClosedError, match="stop"):
        run.set_callback(lambda results: None, report_thread=rf.ReportThread())


def test_wait_all_from_inside_the_runs_own_callback_is_refused(tiny_mlp, mlp_inputs, make_run):
    """It would wait for its own group to be delivered: refused, reported as the callback's error."""
    run = make_run(tiny_mlp.model, mlp_inputs[0])
    run.set_callback(lambda results: run.wait_all(timeout_ms=1000))
    run.push(mlp_inputs[0])
    with pytest.raises(rf.CallbackError) as raised:
        run.wait_all(timeout_ms=WAIT_MS)
    assert isinstance(raised.value.__cause__, rf.Error) and "own result callback" in str(raised.value.__cause__)

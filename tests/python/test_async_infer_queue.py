"""rf.AsyncInferQueue, OpenVINO's AsyncInferQueue on a ringflow Run (issue 8, section 2).

- Compatibility: the `inferqueue` loop of OpenVINO's async notebook
  (../shared/seeds/openvino-async-notebook.txt), same structure, with only the import, the model
  object and the input name changed, and a synthetic frame source in place of the video player;
  every callback's output equals the onnxruntime oracle for its own frame.
- Better than OpenVINO: ordered=True calls back in submission order; the caller may overwrite its
  input array as soon as start_async() returns; a failed inference reaches its own request as
  request.error; a callback's exception is raised once by the next start_async()/wait_all(), and
  the queue goes on.
- The rest of the surface: inputs as a dict by name or index, a list or one array; get_tensor,
  get_output_tensor, results, latency, request_id; is_ready, get_idle_request_id, len, [],
  userdata; jobs=0 gives the number per core its docstring states; never more than `jobs`
  requests in flight.

tiny-mlp: float32 input [N, 64] -> logits [N, 10]. small_cnn (dynamic_models.py): float32
input [N, 3, 32, 32] -> logits [N, 10], the image model of the notebook test. gather: int64
indices [N, 3] -> rows [N, 3, 4]; an index outside [-10, 9] fails its inference.
"""

from __future__ import annotations

import os
import re
import threading
import time

import numpy as np
import pytest

import ringflow as rf
from helpers import assert_matches, call_with_deadline

WAIT_MS = 30_000
WAIT_S = WAIT_MS / 1000


@pytest.fixture(scope="module")
def mlp_inputs(tiny_mlp):
    return [tiny_mlp.input_for(i) for i in range(300)]


@pytest.fixture(scope="module")
def mlp_expected(tiny_mlp, mlp_inputs):
    return tiny_mlp.oracle.batched(mlp_inputs)


# ================================================================================================
# The notebook's inferqueue loop
# ================================================================================================
#
# The notebook reads frames from a video with utils.VideoPlayer, resizes each to the model's input,
# and in the callback draws boxes and shows the frame. Here the frames are synthetic, the model is
# small_cnn (an image classifier on 32x32 RGB), and postprocess() records what the callback got, so
# it can be checked against the oracle afterwards. The two functions below keep the notebook's
# structure line for line; only the import (rf for ov), the model object (compiled_model) and the
# input name (INPUT_NAME for input_layer_ir.any_name) differ.

N_FRAMES = 48
FRAME_SIZE = 64  # preprocess() halves it to the model's 32


class SyntheticPlayer:
    """utils.VideoPlayer's interface (start, next, stop) over generated HWC uint8 RGB frames."""

    def __init__(self, source, flip=False, fps=None, skip_first_frames=0) -> None:
        self.source = source  # a seed
        self.flip = flip
        self.fps = fps  # not throttled: the test wants no sleeps
        self.skip_first_frames = skip_first_frames
        self.frames: list[np.ndarray] = []  # every frame handed out, kept for the check
        self.started = self.stopped = False
        self._rng = np.random.default_rng(source)
        self._index = 0

    def start(self) -> None:
        self.started = True
        for _ in range(self.skip_first_frames):
            self._make()

    def _make(self) -> np.ndarray:
        self._index += 1
        return self._rng.integers(0, 256, (FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)

    def next(self):
        assert self.started and not self.stopped
        if len(self.frames) == N_FRAMES:
            return None
        frame = self._make()
        if self.flip:
            frame = np.ascontiguousarray(frame[:, ::-1])
        self.frames.append(frame)
        return frame

    def stop(self) -> None:
        self.stopped = True


class utils:  # noqa: N801 - stands in for the notebook's `notebook_utils as utils`
    VideoPlayer = SyntheticPlayer


def preprocess(frame: np.ndarray) -> np.ndarray:
    """HWC uint8 frame -> NCHW float32 at the model's size (the notebook's resize + transpose)."""
    resized = frame[::2, ::2]
    return np.ascontiguousarray(resized.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0


postprocessed: list[tuple[np.ndarray, np.ndarray, float]] = []


def postprocess(result: np.ndarray, frame: np.ndarray, fps: float) -> np.ndarray:
    """The notebook draws the detections on the frame; here the callback's view is recorded."""
    postprocessed.append((frame, result.copy(), fps))
    return frame


# -- the notebook's globals and its two functions ---------------------------------------------

compiled_model = None
INPUT_NAME = None
frame_number = 0
total_time = 0
inferqueue_fps = 0.0


def callback(infer_request, info) -> None:
    """Postprocessing of one finished request; info is (frame, start_time)."""
    global frame_number
    global total_time
    global inferqueue_fps
    stop_time = time.time()
    frame, start_time = info
    total_time = stop_time - start_time
    frame_number = frame_number + 1
    inferqueue_fps = frame_number / total_time

    res = infer_request.get_output_tensor(0).data[0]
    frame = postprocess(res, frame, inferqueue_fps)


def inferqueue(source, flip, fps, skip_first_frames) -> None:
    """Video processing with the async infer queue."""
    # Create infer requests queue
    infer_queue = rf.AsyncInferQueue(compiled_model, 2)
    infer_queue.set_callback(callback)
    player = None
    try:
        # Create a video player
        player = utils.VideoPlayer(source, flip=flip, fps=fps, skip_first_frames=skip_first_frames)
        # Start capturing
        start_time = time.time()
        player.start()
        while True:
            # Capture frame
            frame = player.next()
            if frame is None:
                print("Source ended")
                break
            resized_frame = preprocess(frame)
            # Start the inference request with async infer queue
            infer_queue.start_async({INPUT_NAME: resized_frame}, (frame, start_time))
    except KeyboardInterrupt:
        print("Interrupted")
    # Any different error
    except RuntimeError as e:
        print(e)
    finally:
        infer_queue.wait_all()
        player.stop()
    return player  # (not in the notebook: the test checks the frames it handed out)


@pytest.mark.parametrize("flip", [False, True])
def test_the_notebooks_inferqueue_loop(dynamic_models, capsys, flip):
    global compiled_model, INPUT_NAME, frame_number, total_time, inferqueue_fps
    cnn = dynamic_models["small_cnn"]
    compiled_model = cnn.model
    INPUT_NAME = cnn.model.input_specs()[0].name
    frame_number, total_time, inferqueue_fps = 0, 0, 0.0
    postprocessed.clear()

    player = inferqueue(source=11, flip=flip, fps=30, skip_first_frames=5)

    assert capsys.readouterr().out == "Source ended\n", "the loop hit an error or an interrupt"
    assert player.stopped
    assert frame_number == N_FRAMES == len(postprocessed)
    assert inferqueue_fps > 0
    # Each frame called back exactly once, with its own frame as userdata...
    by_identity = {id(f): f for f in player.frames}
    assert sorted(id(frame) for frame, _, _ in postprocessed) == sorted(by_identity)
    # ...and that frame's own logits.
    expected = cnn.oracle(np.concatenate([preprocess(f) for f, _, _ in postprocessed]))["logits"]
    for k, (frame, result, fps) in enumerate(postprocessed):
        assert result.shape == (10,)
        assert_matches(result, expected[k], what=f"callback {k}")
        assert fps > 0


# ================================================================================================
# Order, and the caller's inputs
# ================================================================================================

N_REQUESTS = 60


def collect(q, expected):
    """A callback recording (userdata, request_id, output copy, latency, error) per request,
    and failing in the test thread (via `problems`) if a request's output is wrong."""
    seen = []
    problems = []

    def cb(request, userdata):
        out = request.get_output_tensor(0).data.copy()
        if not np.allclose(out, expected[userdata], atol=1e-5):
            problems.append(userdata)
        seen.append((userdata, request.request_id, out, request.latency, request.error))

    q.set_callback(cb)
    return seen, problems


def test_ordered_queue_calls_back_in_submission_order(tiny_mlp, mlp_inputs, mlp_expected):
    q = rf.AsyncInferQueue(tiny_mlp.model, jobs=4, ordered=True)
    seen, problems = collect(q, mlp_expected)
    for i in range(N_REQUESTS):
        q.start_async(mlp_inputs[i], userdata=i)
    assert q.wait_all(timeout_ms=WAIT_MS) is True
    assert [u for u, *_ in seen] == list(range(N_REQUESTS))
    assert problems == []
    assert all(error is None for *_, error in seen)


def test_default_order_completes_every_request_exactly_once(tiny_mlp, mlp_inputs, mlp_expected):
    q = rf.AsyncInferQueue(tiny_mlp.model, jobs=4)
    seen, problems = collect(q, mlp_expected)
    for i in range(N_REQUESTS):
        q.start_async(mlp_inputs[i], userdata=i)
    assert q.wait_all(timeout_ms=WAIT_MS) is True
    assert sorted(u for u, *_ in seen) == list(range(N_REQUESTS))
    assert problems == []
    assert {rid for _, rid, *_ in seen} <= set(range(4))


@pytest.mark.parametrize("form", ["array", "by name", "by index", "list"])
def test_overwriting_the_input_right_after_start_async_changes_nothing(tiny_mlp, mlp_inputs,
                                                                      mlp_expected, form):
    q = rf.AsyncInferQueue(tiny_mlp.model, jobs=3)
    seen, problems = collect(q, mlp_expected)
    buffer = np.empty(tiny_mlp.sample_shape, np.float32)
    wrap = {"array": lambda x: x, "by name": lambda x: {"input": x},
            "by index": lambda x: {0: x}, "list": lambda x: [x]}[form]
    for i in range(N_REQUESTS):
        buffer[...] = mlp_inputs[i]
        q.start_async(wrap(buffer), userdata=i)
        buffer[...] = np.nan  # the caller reuses its array at once
    assert q.wait_all(timeout_ms=WAIT_MS) is True
    assert sorted(u for u, *_ in seen) == list(range(N_REQUESTS))
    assert problems == [], f"results changed by overwriting the inputs: {problems}"


def test_freed_inputs_are_not_read_later(tiny_mlp, mlp_inputs, mlp_expected):
    """OpenVINO's share_inputs once read numpy memory after it was freed."""
    q = rf.AsyncInferQueue(tiny_mlp.model, jobs=3)
    seen, problems = collect(q, mlp_expected)
    for i in range(N_REQUESTS):
        x = mlp_inputs[i].copy()
        q.start_async({"input": x}, userdata=i)
        del x
        # Churn the allocator so a freed buffer gets new contents.
        junk = np.full(tiny_mlp.sample_shape, 1e30, np.float32)
        del junk
    assert q.wait_all(timeout_ms=WAIT_MS) is True
    assert len(seen) == N_REQUESTS and problems == []


def test_inputs_by_index_name_list_or_one_array(tiny_mlp, mlp_inputs, mlp_expected):
    q = rf.AsyncInferQueue(tiny_mlp.model, jobs=2, ordered=True)
    seen, problems = collect(q, mlp_expected)
    forms = [{0: mlp_inputs[0]}, {"input": mlp_inputs[1]}, [mlp_inputs[2]], mlp_inputs[3]]
    for i, inputs in enumerate(forms):
        q.start_async(inputs, i)
    assert q.wait_all(timeout_ms=WAIT_MS) is True
    assert [u for u, *_ in seen] == [0, 1, 2, 3] and problems == []

    # Bad inputs are refused before taking a job.
    for bad, error in [({1: mlp_inputs[0]}, rf.ShapeError),
                       ({"nope": mlp_inputs[0]}, rf.Error),
                       (np.zeros((1, 5), np.float32), rf.ShapeError),
                       (mlp_inputs[0].astype(np.float64), rf.DTypeError)]:
        with pytest.raises(error):
            q.start_async(bad, "bad")
        assert q.is_ready()
    assert q.wait_all(timeout_ms=WAIT_MS) is True
    assert len(seen) == 4


# ================================================================================================
# The request
# ================================================================================================

def test_request_outputs_by_index_name_and_dict_with_latency(tiny_mlp, mlp_inputs, mlp_expected):
    q = rf.AsyncInferQueue(tiny_mlp.model, jobs=2)
    records = []

    def cb(request, userdata):
        records.append({
            "userdata": userdata,
            "request_id": request.request_id,
            "by_index": request.get_output_tensor(0).data.copy(),
            "default_index": request.get_output_tensor().data.copy(),
            "by_name": request.get_tensor("logits").data.copy(),
            "results": {k: v.copy() for k, v in request.results.items()},
            "latency": request.latency,
            "error": request.error,
            "queue_userdata": q.userdata[request.request_id],
            "is_queue_request": q[request.request_id].request_id == request.request_id,
        })

    q.set_callback(cb)
    for i in range(10):
        q.start_async(mlp_inputs[i], userdata=("frame", i))
    assert q.wait_all(timeout_ms=WAIT_MS) is True
    assert sorted(r["userdata"][1] for r in records) == list(range(10))
    for r in records:
        i = r["userdata"][1]
        for key in ("by_index", "default_index", "by_name"):
            assert_matches(r[key], mlp_expected[i], what=f"{key} of request {i}")
        assert list(r["results"]) == ["logits"]
        assert_matches(r["results"]["logits"], mlp_expected[i])
        assert r["latency"] > 0
        assert r["error"] is None
        assert r["request_id"] in (0, 1)
        assert r["queue_userdata"] == r["userdata"], "q.userdata does not hold the job's userdata"
        assert r["is_queue_request"]


def test_output_arrays_kept_from_callbacks_stay_valid(tiny_mlp, mlp_inputs, mlp_expected):
    """Zero-copy views taken in a callback keep their buffer after the job has run again."""
    q = rf.AsyncInferQueue(tiny_mlp.model, jobs=2)
    kept = {}
    q.set_callback(lambda request, i: kept.__setitem__(i, request.get_output_tensor(0).data))
    for i in range(40):
        q.start_async(mlp_inputs[i], i)
    assert q.wait_all(timeout_ms=WAIT_MS) is True
    assert sorted(kept) == list(range(40))
    for i, array in kept.items():
        assert_matches(array, mlp_expected[i], what=f"kept output of request {i}")


def test_a_failed_inference_reaches_only_its_own_request(dynamic_models):
    gather = dynamic_models["gather"]
    rng = np.random.default_rng(21)
    inputs = [rng.integers(-10, 10, (1, 3), dtype=np.int64) for _ in range(14)]
    bad = {3: 50, 8: -11, 9: 10}
    for position, index in bad.items():
        inputs[position][0, 2] = index
    q = rf.AsyncInferQueue(gather.model, jobs=3)
    records = {}

    def cb(request, i):
        try:
            request.get_output_tensor(0)
            output_error = None
        except rf.Error as e:
            output_error = str(e)
        records[i] = (request.error, {k: v.copy() for k, v in request.results.items()},
                      output_error)

    q.set_callback(cb)
    for i, x in enumerate(inputs):
        q.start_async({"indices": x}, i)  # nothing raised here, nor on another thread
    assert q.wait_all(timeout_ms=WAIT_MS) is True

    assert sorted(records) == list(range(len(inputs)))
    for i, x in enumerate(inputs):
        error, results, output_error = records[i]
        if i in bad:
            reason = gather.oracle.failure(x).split("Status Message:", 1)[1].strip()
            assert isinstance(error, str) and reason in error, f"request {i}: {error!r}"
            assert results == {}
            assert output_error is not None and "failed" in output_error
        else:
            assert error is None, f"request {i} failed: {error}"
            assert_matches(results["rows"], gather.oracle(x)["rows"], what=f"request {i}")
    # The queue goes on.
    q.start_async(inputs[0], "again")
    assert q.wait_all(timeout_ms=WAIT_MS) is True
    assert records["again"][0] is None


# ================================================================================================
# Callback exceptions
# ================================================================================================

def test_a_callback_exception_is_raised_once_and_the_queue_goes_on(tiny_mlp, mlp_inputs,
                                                                  mlp_expected):
    q = rf.AsyncInferQueue(tiny_mlp.model, jobs=3)
    called = []
    error = ValueError("cannot draw on frame 5")

    def cb(request, i):
        called.append(i)
        assert_matches(request.get_output_tensor(0).data, mlp_expected[i])
        if i == 5:
            raise error

    q.set_callback(cb)
    started, raised = [], []
    for i in range(40):
        try:
            q.start_async(mlp_inputs[i], i)
            started.append(i)
        except rf.CallbackError as e:
            raised.append(e)
    try:
        assert q.wait_all(timeout_ms=WAIT_MS) is True
    except rf.CallbackError as e:
        raised.append(e)

    assert len(raised) == 1, f"raised {len(raised)} times"
    assert raised[0].__cause__ is error
    assert raised[0].errors == [error]
    assert "cannot draw on frame 5" in str(raised[0])
    # A start_async that raised started nothing; every started request was called back once.
    assert sorted(called) == started
    assert q.wait_all(timeout_ms=WAIT_MS) is True  # cleared
    for i in range(40, 50):
        q.start_async(mlp_inputs[i], i)
    assert q.wait_all(timeout_ms=WAIT_MS) is True
    assert sorted(called) == started + list(range(40, 50))


def test_several_callback_exceptions_come_out_together_from_wait_all(tiny_mlp, mlp_inputs):
    q = rf.AsyncInferQueue(tiny_mlp.model, jobs=4, ordered=True)
    errors = {1: KeyError("one"), 3: ValueError("three")}
    gate = threading.Event()

    def cb(request, i):
        if i == 0:
            gate.wait(WAIT_S)  # all four start before any raises
        if i in errors:
            raise errors[i]

    q.set_callback(cb)
    for i in range(4):
        q.start_async(mlp_inputs[i], i)
    gate.set()
    with pytest.raises(rf.CallbackError) as raised:
        q.wait_all(timeout_ms=WAIT_MS)
    assert raised.value.errors == [errors[1], errors[3]]
    assert raised.value.__cause__ is errors[1]
    assert q.wait_all(timeout_ms=WAIT_MS) is True


@pytest.mark.parametrize("exception", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_and_system_exit_from_a_callback_come_out_as_themselves(
        tiny_mlp, mlp_inputs, exception):
    q = rf.AsyncInferQueue(tiny_mlp.model, jobs=2)
    error = exception("stop")

    def cb(request, i):
        if i == 0:
            raise error

    q.set_callback(cb)
    q.start_async(mlp_inputs[0], 0)
    with pytest.raises(exception) as raised:
        q.wait_all(timeout_ms=WAIT_MS)
    assert raised.value is error
    q.start_async(mlp_inputs[1], 1)
    assert q.wait_all(timeout_ms=WAIT_MS) is True


# ================================================================================================
# Jobs: is_ready, get_idle_request_id, len, [], userdata, jobs=0, at most `jobs` in flight
# ================================================================================================

PER_CORE_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "six": 6, "eight": 8,
                  "sixteen": 16}


def test_jobs_zero_gives_the_documented_number_of_jobs_per_core(tiny_mlp):
    """jobs=0 picks a number per core, and the docstring says which (issue 8: "say in the
    docstring how"); the test reads it there, so the two cannot drift apart."""
    doc = " ".join(rf.AsyncInferQueue.__doc__.split())
    match = re.search(r"jobs=0 picks (\w+) per core", doc)
    assert match, f"the docstring does not say how jobs=0 is chosen: {doc[:300]}"
    per_core = PER_CORE_WORDS[match.group(1)]
    assert len(rf.AsyncInferQueue(tiny_mlp.model)) == per_core * os.cpu_count()
    assert len(rf.AsyncInferQueue(tiny_mlp.model, jobs=0)) == per_core * os.cpu_count()
    assert len(rf.AsyncInferQueue(tiny_mlp.model, jobs=3)) == 3


def test_len_getitem_and_userdata(tiny_mlp, mlp_inputs):
    q = rf.AsyncInferQueue(tiny_mlp.model, jobs=3)
    assert len(q) == 3
    assert [q[i].request_id for i in range(3)] == [0, 1, 2]
    with pytest.raises(IndexError):
        q[3]
    assert q.userdata == [None, None, None]
    assert all(q[i].error is None and q[i].results == {} for i in range(3))


def test_is_ready_and_get_idle_request_id_follow_the_busy_jobs(tiny_mlp, mlp_inputs, spawn):
    q = rf.AsyncInferQueue(tiny_mlp.model, jobs=2)
    gate, entered = threading.Event(), threading.Event()

    def cb(request, i):
        entered.set()
        gate.wait(WAIT_S)

    q.set_callback(cb)
    # OpenVINO's flow control: is_ready() means a job is idle; get_idle_request_id() names the job
    # the next start_async() takes, and leaves it idle.
    assert q.is_ready() is True
    first = q.get_idle_request_id()
    assert q.get_idle_request_id() == first  # looking does not take it
    q.start_async(mlp_inputs[0], 0)
    assert entered.wait(WAIT_S)
    assert q.userdata[first] == 0  # the job named was the one started
    assert q.is_ready() is True  # the other job is still idle
    second = q.get_idle_request_id()
    assert second != first
    q.start_async(mlp_inputs[1], 1)
    assert q.userdata[second] == 1
    assert q.is_ready() is False  # every job busy
    assert q.wait_all(timeout_ms=100) is False

    # Every job busy: get_idle_request_id() (and start_async) wait, without the GIL.
    waiter = spawn(q.get_idle_request_id, name="get_idle_request_id")
    time.sleep(0.2)
    assert waiter.is_alive(), "get_idle_request_id returned while every job was busy"
    gate.set()
    assert waiter.join() in (0, 1)
    assert q.wait_all(timeout_ms=WAIT_MS) is True
    assert q.is_ready() is True


def test_start_async_waits_for_a_job_without_the_gil(tiny_mlp, mlp_inputs):
    """One job, a callback that needs the GIL: were start_async() holding it while it waits for
    the job, the callback could never run and free it."""
    q = rf.AsyncInferQueue(tiny_mlp.model, jobs=1)
    done = []
    q.set_callback(lambda request, i: (time.sleep(0.01), done.append(i)))

    def submit_all():
        for i in range(10):
            q.start_async(mlp_inputs[i], i)
        return q.wait_all(timeout_ms=WAIT_MS)

    assert call_with_deadline(submit_all, timeout_s=WAIT_S) is True
    assert done == list(range(10))


@pytest.mark.parametrize("jobs", [1, 3])
def test_at_most_jobs_requests_are_in_flight(tiny_mlp, mlp_inputs, mlp_expected, jobs):
    q = rf.AsyncInferQueue(tiny_mlp.model, jobs=jobs)
    lock = threading.Lock()
    started = finished = 0
    in_flight_seen = []
    busy_ids = set()
    id_clashes = []
    problems = []

    def cb(request, i):
        nonlocal finished
        with lock:
            in_flight_seen.append(started - finished)
            if request.request_id in busy_ids:
                id_clashes.append(request.request_id)
        if not np.allclose(request.get_output_tensor(0).data, mlp_expected[i], atol=1e-5):
            problems.append(i)
        time.sleep(0.002)  # slow enough that the producer fills every job
        with lock:
            finished += 1  # before the job is handed back, after this callback returns

    q.set_callback(cb)
    n = 60
    for i in range(n):
        q.start_async(mlp_inputs[i], i)
        with lock:
            started += 1  # the request took a job before start_async returned
            in_flight_seen.append(started - finished)
    assert q.wait_all(timeout_ms=WAIT_MS) is True
    assert finished == n and problems == [] and id_clashes == []
    # started counts only requests holding a job; finished is counted before a job is freed.
    assert max(in_flight_seen) <= jobs, f"{max(in_flight_seen)} requests in flight, jobs={jobs}"
    assert max(in_flight_seen) == jobs, "the queue never filled: the bound was not exercised"


# ================================================================================================
# Known defects (issue 8 follow-ups), kept as strict xfails so a fix shows up
# ================================================================================================

def test_userdata_keeps_what_the_last_start_async_was_given(tiny_mlp, mlp_inputs):
    q = rf.AsyncInferQueue(tiny_mlp.model, jobs=1)
    q.set_callback(lambda request, userdata: None)
    q.start_async(mlp_inputs[0], userdata="frame 0")
    assert q.wait_all(timeout_ms=WAIT_MS) is True
    assert q.userdata == ["frame 0"]


def test_a_stopped_queue_refuses_to_start_instead_of_waiting_forever(tiny_mlp, mlp_inputs, spawn):
    q = rf.AsyncInferQueue(tiny_mlp.model, jobs=1)
    gate = threading.Event()
    q.set_callback(lambda request, i: gate.wait(WAIT_S))
    q.start_async(mlp_inputs[0], 0)        # the only job: busy until the gate opens
    waiter = spawn(lambda: q.start_async(mlp_inputs[1], 1), name="start_async waiting for a job")
    time.sleep(0.1)
    assert waiter.is_alive()
    stopper = spawn(q.stop, name="stop")
    with pytest.raises(rf.ClosedError):
        waiter.join()
    gate.set()
    stopper.join()
    with pytest.raises(rf.ClosedError):
        q.start_async(mlp_inputs[2], 2)

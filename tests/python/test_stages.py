"""Staged Runs from Python (issue 9): Python stages before and after the model, against the same
computation done by hand around onnxruntime.InferenceSession.run; their order, errors, cancel(),
stop_and_wait(), stats and trace, and the overlap a pipeline buys."""

import json
import statistics
import threading
import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import ringflow as rf
from helpers import mlp_rows
from ringflow import models

N_SAMPLES = 200


def pre(x: np.ndarray) -> np.ndarray:
    return (x * np.float32(0.5) + np.arange(64, dtype=np.float32) / 64).astype(np.float32)


def post(logits: np.ndarray) -> dict[str, np.ndarray]:
    return {"logits": logits, "probs": (np.exp(logits) / np.exp(logits).sum()).astype(np.float32)}


def jitter(sample: rf.Sample) -> None:
    """A different short sleep per sample, so threads of one stage finish out of order."""
    time.sleep((sample.frame_id * 7919 % 300) / 1e6)


def drain(run: rf.Run, timeout_ms: int = 30000) -> list[rf.PullResult]:
    results = []
    while True:
        r = run.pull_with_status(timeout_ms)
        if r.status == rf.PullStatus.Closed:
            return results
        assert r.status != rf.PullStatus.Timeout, "the Run stalled"
        results.append(r)


@pytest.mark.parametrize("threads", [1, 2])
def test_python_pre_and_post_stages_equal_the_computation_by_hand(mlp_path, mlp_oracle, threads):
    seen_by_last_stage: list[int] = []
    stage_threads: set[int] = set()

    def pre_stage(sample: rf.Sample) -> list[np.ndarray]:
        jitter(sample)
        stage_threads.add(threading.get_ident())
        return [pre(sample[0])]

    def post_stage(sample: rf.Sample) -> dict[str, np.ndarray]:
        jitter(sample)
        return post(sample["logits"])

    graph = rf.Graph()
    graph.add(rf.Stage(pre_stage, name="pre", threads=threads))
    graph.add(rf.Model(mlp_path).graph())
    graph.add(rf.Stage(post_stage, name="post", threads=threads))
    graph.add(lambda s: seen_by_last_stage.append(s.frame_id))  # a bare callable is a Stage too
    run = graph.build(np.zeros((1, 64), np.float32), rf.RunOptions(queue_depth=8))

    inputs = mlp_rows(N_SAMPLES)

    def produce() -> None:
        for i, x in enumerate(inputs):
            run.push(x, frame_id=i, stream_id="cam")
        run.close_input()

    producer = threading.Thread(target=produce)
    producer.start()
    pulled = list(run)
    producer.join()

    assert [s.frame_id for s in pulled] == list(range(N_SAMPLES))
    assert [s.input_seq for s in pulled] == list(range(N_SAMPLES))
    assert all(s.stream_id == "cam" for s in pulled)
    assert seen_by_last_stage == list(range(N_SAMPLES))
    assert threading.get_ident() not in stage_threads
    assert len(stage_threads) <= threads
    for x, s in zip(inputs, pulled):
        expected = post(mlp_oracle.run(None, {"input": pre(x)})[0])
        assert s.names == ["logits", "probs"]
        np.testing.assert_allclose(s["logits"], expected["logits"], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(s["probs"], expected["probs"], rtol=1e-5, atol=1e-6)

    names = [st.name for st in run.stats().stages]
    assert names == ["pre", "inference", "postprocess", "post", "<lambda>", "reorder"]
    pre_stats = run.stats().stages[0]
    assert pre_stats.samples == N_SAMPLES and pre_stats.threads == threads
    assert pre_stats.busy_ms > 0 and 0 < pre_stats.occupancy <= 1


def test_stage_may_return_a_sample_or_none_and_metadata_is_kept(mlp_path):
    def as_sample(sample: rf.Sample) -> rf.Sample:
        out = rf.Sample()
        out.names = ["input"]
        out.tensors = [rf.Tensor(sample[0] * np.float32(2))]
        out.frame_id = 12345  # metadata is the sample's identity: not the stage's to change
        return out

    graph = rf.Graph().add(rf.Stage(as_sample, name="double")).add(rf.Model(mlp_path).graph())
    graph.add(rf.Stage(lambda s: None, name="noop"))
    run = graph.build(np.zeros((1, 64), np.float32))
    x = mlp_rows(1)[0]
    run.push(x, frame_id=7)
    run.close_input()
    (s,) = list(run)
    assert s.frame_id == 7
    np.testing.assert_allclose(s[0], rf.Model(mlp_path).run([x * 2])[0], rtol=1e-6)


def test_a_raising_stage_fails_that_sample_only(mlp_path):
    def picky(sample: rf.Sample):
        if sample.frame_id % 4 == 1:
            raise ValueError(f"frame {sample.frame_id} is cursed")
        return None

    graph = rf.Graph().add(rf.Model(mlp_path).graph()).add(rf.Stage(picky, name="picky", threads=2))
    run = graph.build(np.zeros((1, 64), np.float32), rf.RunOptions(queue_depth=32))
    for i, x in enumerate(mlp_rows(20)):
        run.push(x, frame_id=i)
    run.close_input()
    results = drain(run)
    assert [r.sample.frame_id for r in results] == list(range(20))
    for r in results:
        if r.sample.frame_id % 4 == 1:
            assert r.status == rf.PullStatus.Error
            assert r.error == f"stage 'picky' failed: ValueError: frame {r.sample.frame_id} is cursed"
        else:
            assert r.status == rf.PullStatus.Ok
    assert run.stats().errors == 5

    # pull() raises for the failed sample and goes on with the next.
    run = graph.build(np.zeros((1, 64), np.float32))
    for i, x in enumerate(mlp_rows(3)):
        run.push(x, frame_id=i)
    run.close_input()
    assert run.pull(30000).frame_id == 0
    with pytest.raises(rf.InferenceError, match="stage 'picky' failed: ValueError"):
        run.pull(30000)
    assert run.pull(30000).frame_id == 2


def test_a_stage_returning_what_the_model_cannot_take_fails_that_sample(mlp_path):
    graph = rf.Graph().add(lambda s: [np.zeros((1, 3), np.float32)] if s.frame_id == 1 else None)
    run = graph.add(rf.Model(mlp_path).graph()).build(np.zeros((1, 64), np.float32))
    for i, x in enumerate(mlp_rows(3)):
        run.push(x, frame_id=i)
    run.close_input()
    statuses = [(r.status, r.error) for r in drain(run)]
    assert statuses[0][0] == statuses[2][0] == rf.PullStatus.Ok
    assert statuses[1][0] == rf.PullStatus.Error
    assert "the model does not take" in statuses[1][1] and "[1, 3]" in statuses[1][1]


def test_cancel_and_stop_and_wait_account_for_every_sample(mlp_path):
    def slow(sample: rf.Sample):
        time.sleep(0.01)
        if sample.frame_id == 0:
            raise RuntimeError("first one fails")

    graph = rf.Graph().add(rf.Stage(slow, name="slow")).add(rf.Model(mlp_path).graph())
    run = graph.build(np.zeros((1, 64), np.float32), rf.RunOptions(queue_depth=32))
    accepted = sum(run.push(x, frame_id=i) for i, x in enumerate(mlp_rows(30)))
    time.sleep(0.035)
    run.cancel()
    with pytest.raises(rf.ClosedError):
        run.push(mlp_rows(1)[0])
    results = drain(run)
    by_status = {status: sum(r.status == status for r in results)
                 for status in (rf.PullStatus.Ok, rf.PullStatus.Cancelled, rf.PullStatus.Error)}
    assert sum(by_status.values()) == accepted == 30
    assert by_status[rf.PullStatus.Error] == 1
    assert by_status[rf.PullStatus.Cancelled] >= 15
    assert run.stats().cancelled == by_status[rf.PullStatus.Cancelled]

    # pull() raises CancelledError for a cancelled sample.
    run = graph.build(np.zeros((1, 64), np.float32), rf.RunOptions(queue_depth=8))
    for i, x in enumerate(mlp_rows(5)):
        run.push(x, frame_id=i + 1)
    run.cancel()
    with pytest.raises(rf.CancelledError):
        while run.pull(30000) is not None:
            pass

    # stop_and_wait: everything passes every stage; nothing is lost.
    run = graph.build(np.zeros((1, 64), np.float32), rf.RunOptions(queue_depth=16))
    for i, x in enumerate(mlp_rows(12)):
        run.push(x, frame_id=i + 1)
    assert run.stop_and_wait(timeout_ms=30000)
    got = [run.pull(0) for _ in range(12)]
    assert [s.frame_id for s in got] == list(range(1, 13))
    assert run.pull(0) is None


def test_trace_is_chrome_json_with_a_lane_per_stage_thread(mlp_path, tmp_path):
    graph = rf.Graph().add(rf.Stage(lambda s: None, name="decode", threads=2)).add(rf.Model(mlp_path).graph())
    run = graph.add(rf.TopK(3)).build(np.zeros((1, 64), np.float32), rf.RunOptions(queue_depth=32, trace_samples=10))
    for x in mlp_rows(30):
        run.push(x)
    run.close_input()
    assert len(list(run)) == 30
    path = tmp_path / "trace.json"
    run.trace(str(path))
    trace = json.loads(path.read_text())
    lanes = {e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "thread_name"}
    assert lanes == {"decode #0", "decode #1", "inference #0", "TopK #0"}
    spans = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert len(spans) == 30 and {e["args"]["input_seq"] for e in spans} == set(range(20, 30))
    assert all(e["dur"] >= 0 for e in spans)


def matmul_chain(layers: int, width: int = 1024) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    for i in range(layers):
        w = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        inits.append(onnx.numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("MatMul", [x, f"w{i}"], [f"h{i}"]))
        x = f"h{i}"
    nodes.append(helper.make_node("Identity", [x], ["y"]))
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, width])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_stages_overlap_a_5ms_pre_stage_with_a_5ms_model(tmp_path):
    """The measured overlap, as a ratio within one run: sleep 5 ms then infer ~5 ms, one after the
    other, against the same two as a pipeline. Ideal is 2x; at least 1.6x is required."""
    x = np.ones((8, 1024), np.float32)

    def median_ms(session: ort.InferenceSession) -> float:
        session.run(None, {"x": x})
        times = []
        for _ in range(15):
            t = time.perf_counter()
            session.run(None, {"x": x})
            times.append((time.perf_counter() - t) * 1e3)
        return statistics.median(times)

    # Calibrate the chain to take about 5 ms on this machine (a few rounds: a lone probe misjudges).
    path = tmp_path / "chain.onnx"
    layers = 4
    for _ in range(4):
        onnx.save(matmul_chain(layers), path)
        took = median_ms(ort.InferenceSession(str(path)))
        if 4.0 <= took <= 6.0:
            break
        layers = max(1, round(layers * 5.0 / took))
    session = ort.InferenceSession(str(path))
    model = rf.Model(str(path))

    def sleep_5ms(_sample):
        time.sleep(0.005)

    n = 60
    run = rf.Graph().add(rf.Stage(sleep_5ms, name="sleep")).add(model.graph()).build(x)

    def sequential() -> float:
        t = time.perf_counter()
        for _ in range(n):
            time.sleep(0.005)
            session.run(None, {"x": x})
        return n / (time.perf_counter() - t)

    def pipelined() -> float:
        t = time.perf_counter()
        consumer = threading.Thread(target=lambda: [run.pull(30000) for _ in range(n)])
        consumer.start()
        for _ in range(n):
            run.push(x)
        consumer.join()
        return n / (time.perf_counter() - t)

    ratios = []
    for _ in range(3):  # interleaved, median of three
        seq = sequential()
        ratios.append(pipelined() / seq)
    ratio = statistics.median(ratios)
    print(f"model {median_ms(session):.1f} ms; pipeline / sequential = {ratio:.2f} ({ratios})")
    assert ratio >= 1.6, f"stages did not overlap: {ratio:.2f}x ({ratios}), model {median_ms(session):.1f} ms"


def test_stage_rejects_bad_arguments():
    with pytest.raises(TypeError):
        rf.Stage(42)
    with pytest.raises(rf.Error, match="threads must be at least 1"):
        rf.Stage(lambda s: None, threads=0)
    assert rf.Stage(lambda s: None).name == "<lambda>"
    assert repr(rf.Stage(print, name="show", threads=2)) == "Stage(name='show', threads=2)"


def test_a_named_frame_from_a_stage_feeds_the_built_in_preprocessing():
    """decode -> preprocess -> model: the decode stage may name its frame as it likes."""
    pre = rf.PreprocessOptions(input_format=rf.ColorFormat.BGR, model_format=rf.ColorFormat.RGB,
                               input_max_width=320, input_max_height=240, input_max_depth=3)
    model = rf.Model(str(models.ensure("squares-detector")), rf.Model.Options(preprocess=pre))
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(6)]

    def decode(sample: rf.Sample) -> dict[str, np.ndarray]:
        return {"frame": frames[int(sample[0][0])]}

    graph = rf.Graph().add(rf.Stage(decode, name="decode", threads=2)).add(model.graph())
    run = graph.build(None, rf.RunOptions(queue_depth=8))  # no seed: the first stage takes numbers
    for i in range(len(frames)):
        run.push(np.array([i], np.int64), frame_id=i)
    run.close_input()
    pulled = list(run)
    assert [s.frame_id for s in pulled] == list(range(len(frames)))
    for frame, s in zip(frames, pulled):
        np.testing.assert_array_equal(s["detections"], model.run(frame)["detections"])
    assert [st.name for st in run.stats().stages][:2] == ["decode", "preprocess"]


def test_graph_add_refuses_the_usual_slips(mlp_path):
    model = rf.Model(mlp_path)
    graph = rf.Graph()
    with pytest.raises(TypeError, match=r"call it: rf.TopK\(...\)"):
        graph.add(rf.TopK)
    with pytest.raises(TypeError, match=r"graph.add\(model.graph\(\)\)"):
        graph.add(model.graph)
    with pytest.raises(TypeError, match=r"graph.add\(model.graph\(\)\)"):
        graph.add(model)
    with pytest.raises(rf.Error, match="needs a seed"):
        graph.add(model.graph()).build()


def test_a_stage_that_stops_or_waits_for_its_own_run_fails_that_sample(mlp_path):
    holder: dict[str, rf.Run] = {}

    def selfish(sample: rf.Sample):
        if sample.frame_id == 1:
            holder["run"].stop_and_wait()
        if sample.frame_id == 2:
            holder["run"].stop()

    run = rf.Graph().add(rf.Model(mlp_path).graph()).add(rf.Stage(selfish, name="selfish")).build(
        np.zeros((1, 64), np.float32))
    holder["run"] = run
    for i, x in enumerate(mlp_rows(4)):
        run.push(x, frame_id=i)
    run.close_input()
    results = drain(run)
    holder.clear()  # the stage's closure refers to the Run: break the cycle
    assert [r.status for r in results] == [rf.PullStatus.Ok, rf.PullStatus.Error, rf.PullStatus.Error,
                                           rf.PullStatus.Ok]
    assert "stop_and_wait() called from inside one of this Run's own callbacks or stages" in results[1].error
    assert "stop() called from inside one of this Run's own callbacks or stages" in results[2].error


def test_a_python_stage_keeps_its_thread_local_state_between_samples(mlp_path):
    local = threading.local()

    def count(sample: rf.Sample) -> list[np.ndarray]:
        local.calls = getattr(local, "calls", 0) + 1
        return [np.array([local.calls], np.int64)]

    run = rf.Graph().add(rf.Model(mlp_path).graph()).add(rf.Stage(count, name="count")).build(
        np.zeros((1, 64), np.float32), rf.RunOptions(queue_depth=16))
    for x in mlp_rows(10):
        run.push(x)
    run.close_input()
    assert [int(s[0][0]) for s in run] == list(range(1, 11))


def test_a_staged_run_delivers_to_a_callback_in_order(mlp_path, mlp_oracle):
    got: list[tuple[int, np.ndarray]] = []

    def on_results(results: list[rf.PullResult]) -> None:
        got.extend((r.sample.frame_id, r.sample["logits"].copy()) for r in results)

    graph = rf.Graph().add(rf.Stage(lambda s: [pre(s[0])], name="pre", threads=2)).add(rf.Model(mlp_path).graph())
    run = graph.build(None, rf.RunOptions(queue_depth=8))
    run.set_callback(on_results, every=4)
    inputs = mlp_rows(30, seed=9)
    for i, x in enumerate(inputs):
        run.push(x, frame_id=i)
    assert run.wait_all(30000)
    assert [f for f, _ in got] == list(range(30))
    for (_, logits), x in zip(got, inputs):
        np.testing.assert_allclose(logits, mlp_oracle.run(None, {"input": pre(x)})[0], rtol=1e-5, atol=1e-5)

"""Run.stats(): exact counters, consistent latency percentiles and stage timings, and the text and
JSON renderings of the same numbers; Model.benchmark() and the synthetic inputs it runs on."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

import ringflow as rf
from helpers import pull_until_closed

N_SAMPLES = 300
STAGE_NAMES = ["preprocess", "inference", "postprocess", "reorder"]


def drained_run(model_case, make_run, spawn, **options):
    """A Run that had N_SAMPLES pushed (by a thread), closed and pulled to the end."""
    run = make_run(model_case.model, model_case.input_for(0), **options)

    def produce():
        for i in range(N_SAMPLES):
            run.push(model_case.input_for(i), frame_id=i)
        run.close_input()

    producer = spawn(produce, name="producer")
    assert sum(1 for _ in pull_until_closed(run)) == N_SAMPLES
    producer.join()
    return run


def check_exact_counters(stats):
    inp = stats.input
    assert (inp.pushes, inp.push_failures, inp.inputs_enqueued, inp.inputs_dropped) == (
        N_SAMPLES, 0, N_SAMPLES, 0)
    assert (stats.outputs_ready, stats.outputs_pulled, stats.errors) == (N_SAMPLES, N_SAMPLES, 0)
    assert inp.avg_push_us > 0
    assert 0 <= inp.avg_queue_fill <= inp.max_queue_fill <= 1
    assert stats.elapsed_s > 0
    assert stats.throughput_fps == pytest.approx(stats.outputs_pulled / stats.elapsed_s, rel=1e-9)


@pytest.mark.parametrize("workers", [1, 2])
def test_stats_of_a_drained_run_are_exact_and_consistent(tiny_mlp, make_run, spawn, workers):
    run = drained_run(tiny_mlp, make_run, spawn, workers=workers, queue_depth=8)
    stats = run.stats()
    check_exact_counters(stats)
    assert (stats.batches, stats.avg_batch_size) == (N_SAMPLES, 1.0)  # max_batch=1

    lat = stats.latency
    assert lat.count == stats.outputs_pulled
    assert 0 < lat.min_ms <= lat.p50_ms <= lat.p90_ms <= lat.p99_ms <= lat.max_ms
    assert lat.min_ms <= lat.avg_ms <= lat.max_ms
    # Each latency runs from an accepted push to its pull, inside the first-push-to-last-pull span.
    assert lat.max_ms <= stats.elapsed_s * 1e3 * 1.0001

    assert [s.name for s in stats.stages] == STAGE_NAMES
    for stage in stats.stages:
        assert stage.samples == N_SAMPLES, f"stage {stage.name} saw {stage.samples} samples"
        assert stage.avg_wait_ms >= 0 and stage.avg_compute_ms >= 0
    assert stats.stages[1].avg_compute_ms > 0, "inference took no time at all"

    # input_stats() is the same counters without the rest.
    inp = run.input_stats()
    assert (inp.pushes, inp.inputs_enqueued, inp.inputs_dropped, inp.push_failures) == (
        stats.input.pushes, stats.input.inputs_enqueued, stats.input.inputs_dropped,
        stats.input.push_failures)


def test_stats_json_and_text_render_the_same_numbers(tiny_mlp, make_run, spawn):
    run = drained_run(tiny_mlp, make_run, spawn, workers=2)
    stats = run.stats()
    doc = json.loads(stats.to_json())

    def close(value, attribute):
        # Floats are printed with 6 significant digits.
        return value == pytest.approx(attribute, rel=1e-5, abs=1e-9)

    for key in ("pushes", "push_failures", "inputs_enqueued", "inputs_dropped"):
        assert doc["input"][key] == getattr(stats.input, key), key
    for key in ("avg_push_us", "avg_queue_fill", "max_queue_fill"):
        assert close(doc["input"][key], getattr(stats.input, key)), key
    for key in ("outputs_ready", "outputs_pulled", "errors", "batches"):
        assert doc[key] == getattr(stats, key), key
    for key in ("avg_batch_size", "elapsed_s", "throughput_fps"):
        assert close(doc[key], getattr(stats, key)), key
    assert doc["latency_ms"]["count"] == stats.latency.count == N_SAMPLES
    for key in ("avg", "min", "max", "p50", "p90", "p99"):
        assert close(doc["latency_ms"][key], getattr(stats.latency, f"{key}_ms")), key
    assert [s["name"] for s in doc["stages"]] == STAGE_NAMES
    for rendered, stage in zip(doc["stages"], stats.stages):
        assert rendered["samples"] == stage.samples
        assert close(rendered["avg_wait_ms"], stage.avg_wait_ms)
        assert close(rendered["avg_compute_ms"], stage.avg_compute_ms)

    text = str(stats)
    assert text == stats.to_text()
    assert "throughput" in text and f"pushes={N_SAMPLES}" in text and f"pulled={N_SAMPLES}" in text
    for name in STAGE_NAMES:
        assert name in text


def test_disabled_metrics_keep_exact_counters_but_no_timings(tiny_mlp, make_run, spawn):
    run = drained_run(tiny_mlp, make_run, spawn, enable_metrics=False)
    stats = run.stats()
    check_exact_counters(stats)
    assert stats.batches == N_SAMPLES
    assert stats.latency.count == 0
    assert stats.latency.max_ms == stats.latency.p99_ms == 0
    assert [s.name for s in stats.stages] == STAGE_NAMES
    assert all(s.samples == 0 and s.avg_compute_ms == 0 for s in stats.stages)
    json.loads(stats.to_json())  # still valid JSON with everything zero


def test_stats_of_a_fresh_run_are_zero_and_render(tiny_mlp, make_run):
    run = make_run(tiny_mlp.model, tiny_mlp.input_for(0))
    stats = run.stats()
    counts = (stats.input.pushes, stats.outputs_pulled, stats.latency.count, stats.batches)
    assert counts == (0, 0, 0, 0)
    assert stats.elapsed_s == 0 and stats.throughput_fps == 0
    doc = json.loads(stats.to_json())
    assert doc["latency_ms"]["count"] == 0 and "throughput" in str(stats)


# --------------------------------------------------------------------------------------------
# Model.benchmark() and synthetic inputs
# --------------------------------------------------------------------------------------------

def test_benchmark_reports_latency_and_throughput(tiny_mlp):
    report = tiny_mlp.model.benchmark(200)
    assert report.samples == 200
    assert 0 < report.latency_ms <= report.latency_p90_ms
    by_workers = dict(report.fps_by_workers)
    assert len(by_workers) == len(report.fps_by_workers) >= 1
    assert sorted(by_workers) == list(range(1, len(by_workers) + 1))
    assert report.best_workers in by_workers
    assert report.fps > 0 and report.fps == max(by_workers.values())
    assert by_workers[report.best_workers] == report.fps

    doc = json.loads(report.to_json())
    assert doc["samples"] == 200 and doc["best_workers"] == report.best_workers
    assert {int(k) for k in doc["fps_by_workers"]} == set(by_workers)
    assert "best" in str(report)


def test_benchmark_rejects_zero_samples(tiny_mlp):
    with pytest.raises(rf.Error, match="at least 1 sample"):
        tiny_mlp.model.benchmark(0)


def test_benchmark_releases_the_gil(tiny_mlp, progress_counter):
    """A pure-Python counter thread keeps running inside benchmark(): see test_concurrency.py for
    the method, and its control test showing a GIL-holding call starves the counter."""
    ran = []
    deadline = time.perf_counter() + 0.5
    while len(ran) < 3 or time.perf_counter() < deadline:
        progressed, report = progress_counter.ran_inside(lambda: tiny_mlp.model.benchmark(300))
        ran.append(progressed)
        assert report.samples == 300
    assert sum(ran) / len(ran) >= 0.5, (
        f"a Python thread ran during only {sum(ran)} of {len(ran)} benchmark() calls")


def test_synthetic_inputs_are_deterministic_and_follow_the_input_specs(tiny_mlp, resnet50):
    for case in (tiny_mlp, resnet50):
        model = case.model
        specs = model.input_specs()
        a, again, other = (model.synthetic_inputs(seed) for seed in (7, 7, 8))
        assert len(a) == len(specs)
        for spec, t, t_again, t_other in zip(specs, a, again, other):
            expected_shape = tuple(1 if d is None else d for d in spec.shape)
            arr = np.asarray(t)
            assert arr.shape == expected_shape and arr.dtype == spec.dtype
            np.testing.assert_array_equal(arr, np.asarray(t_again))
            assert not np.array_equal(arr, np.asarray(t_other)), "seeds 7 and 8 gave the same input"
            assert np.isfinite(arr).all() and arr.std() > 0
        # The inputs are valid for the model: Model.run takes them as they are.
        assert model.run(list(a))[0].shape[0] == 1
    assert not np.array_equal(np.asarray(tiny_mlp.model.synthetic_inputs()[0]),
                              np.asarray(tiny_mlp.model.synthetic_inputs(1)[0]))


def test_synthetic_inputs_with_preprocess_are_frames(resnet50_path):
    model = rf.Model(str(resnet50_path),
                     rf.Model.Options(preprocess=rf.PreprocessOptions.imagenet(160, 120)))
    (frame,) = model.synthetic_inputs(3)
    arr = np.asarray(frame)
    assert arr.shape == (120, 160, 3) and arr.dtype == np.uint8
    np.testing.assert_array_equal(arr, np.asarray(model.synthetic_inputs(3)[0]))
    assert len(np.unique(arr)) > 200  # bytes spread over the range, not a constant frame

"""`ringflow bench`: runs, reports what it promises, and writes JSON that agrees with its text."""

import json
import subprocess
import sys

import pytest


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ringflow", "bench", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_bench_reports_count_throughput_and_latency(tmp_path, mode):
    out = tmp_path / "bench.json"
    result = bench("tiny-mlp", "--mode", mode, "-n", "300", "--warmup", "5", "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "count:       300" in result.stdout
    for line in ("throughput:", "latency ms:  median"):
        assert line in result.stdout
    report = json.loads(out.read_text())["result"]
    assert report["count"] == 300 and report["mode"] == mode
    assert report["fps"] == pytest.approx(report["count"] / report["seconds"])
    lat = report["latency_ms"]
    assert 0 < lat["min"] <= lat["median"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    if mode == "async":
        assert [s["name"] for s in report["stages"]] == ["preprocess", "inference", "postprocess", "reorder"]
        assert "stage inference" in result.stdout


def test_bench_with_dynamic_batching_reports_the_batch_size(tmp_path):
    out = tmp_path / "bench.json"
    result = bench("tiny-mlp", "--batch", "16", "--max-delay-us", "500", "--queue", "64", "-n", "2000",
                   "--json", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())["result"]
    assert report["count"] == 2000
    assert 1 <= report["avg_batch_size"] <= 16


def test_bench_auto_sweeps_workers_and_queue_and_picks_the_fastest(tmp_path):
    out = tmp_path / "auto.json"
    result = bench("tiny-mlp", "--auto", "-n", "300", "--json", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    trials = report["trials"]
    assert {(t["workers"], t["queue"]) for t in trials} >= {(1, 2), (1, 8), (1, 32)}
    assert report["best"]["fps"] == max(t["fps"] for t in trials)
    assert f"best: workers={report['best']['workers']} queue={report['best']['queue']}" in result.stdout


def test_bench_time_limit_stops_the_run(tmp_path):
    out = tmp_path / "timed.json"
    result = bench("tiny-mlp", "-t", "0.5", "--json", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())["result"]
    assert report["count"] > 0
    assert 0.4 < report["seconds"] < 5


def test_bench_on_an_unknown_model_fails_with_a_clear_message():
    result = bench("/nonexistent/model.onnx", "-n", "10")
    assert result.returncode != 0
    assert "no model file '/nonexistent/model.onnx'" in result.stderr
    assert "resnet50" in result.stderr  # names the built-in alternatives

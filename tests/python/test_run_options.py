"""RunOptions: the presets, and options the engine must refuse when a Run is built."""

from __future__ import annotations

import pytest

import ringflow as rf
from helpers import build_run, pull_until_closed

KEEP_LATEST = rf.OverflowPolicy.KeepLatest


def one_model_graph(model: rf.Model) -> rf.Graph:
    graph = rf.Graph()
    graph.add(model.graph(rf.Model.RouteOptions(include_input=True, include_output=True)))
    return graph


# --------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------

def test_presets_trade_latency_for_completeness():
    realtime, balanced, reliable = (rf.RunOptions.Realtime(), rf.RunOptions.Balanced(),
                                    rf.RunOptions.Reliable())
    assert realtime.overflow_policy == KEEP_LATEST
    assert balanced.overflow_policy == rf.OverflowPolicy.Block
    assert reliable.overflow_policy == rf.OverflowPolicy.Block
    assert realtime.queue_depth < balanced.queue_depth < reliable.queue_depth
    assert balanced.queue_depth == rf.RunOptions().queue_depth  # Balanced is the default
    assert not realtime.on_input_drop


def test_realtime_preset_keeps_the_latest_frames_of_a_stalled_stream(tiny_mlp):
    options = rf.RunOptions.Realtime()
    drops = []
    options.on_input_drop = drops.append
    assert options.on_input_drop
    x = tiny_mlp.input_for(0)
    run = one_model_graph(tiny_mlp.model).build(x, options)
    n_pushes = run.capacity + 20
    assert all(run.push(x, frame_id=i) for i in range(n_pushes))
    run.close_input()
    frames = [s.frame_id for s in pull_until_closed(run)]
    assert len(drops) >= 20 and len(frames) == n_pushes - len(drops)
    assert frames[-1] == n_pushes - 1, "the newest frame must be delivered"
    assert all(d.reason == rf.DropReason.Evicted for d in drops)
    del run


def test_reliable_preset_holds_more_than_balanced(tiny_mlp):
    x = tiny_mlp.input_for(0)
    graph = one_model_graph(tiny_mlp.model)
    capacities = {name: graph.build(x, getattr(rf.RunOptions, name)()).capacity
                  for name in ("Realtime", "Balanced", "Reliable")}
    assert capacities["Realtime"] < capacities["Balanced"] < capacities["Reliable"], capacities


def test_on_input_drop_must_be_callable_and_can_be_cleared():
    with pytest.raises(TypeError, match="on_input_drop"):
        rf.RunOptions(on_input_drop=42)
    options = rf.RunOptions(on_input_drop=print)
    assert options.on_input_drop
    options.on_input_drop = None
    assert not options.on_input_drop
    with pytest.raises(TypeError, match="on_input_drop"):
        options.on_input_drop = "not a function"


# --------------------------------------------------------------------------------------------
# Invalid options
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("options, option_name", [
    (dict(max_batch=0), "max_batch"),
    (dict(max_batch=-4), "max_batch"),
    (dict(max_delay_us=-1), "max_delay_us"),
    (dict(workers=0), "workers"),
    (dict(workers=-1), "workers"),
])
def test_invalid_option_is_rejected_at_build_naming_the_option(tiny_mlp, options, option_name):
    rf.RunOptions(**options)  # any int is accepted here; the Run is what refuses it
    with pytest.raises(rf.Error, match=option_name):
        build_run(tiny_mlp.model, tiny_mlp.input_for(0), **options)


def test_boundary_values_are_accepted(tiny_mlp):
    """Control for the test above: the smallest valid values build a working Run."""
    x = tiny_mlp.input_for(0)
    run = build_run(tiny_mlp.model, x, queue_depth=1, workers=1, max_batch=1, max_delay_us=0)
    assert run.run(x, timeout_ms=10_000)[0].shape == (1, 10)

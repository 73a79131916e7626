// RunStats: what happened inside a Run, read with Run::stats() at any time.
//
// Counters are exact. Latencies come from lock-free log-scale histograms (each bucket spans about
// 3% of its value), so percentiles are accurate to a bucket. Collecting them takes no lock: every
// recorder does a few relaxed atomic adds.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ringflow {

struct LatencySummary {
  std::uint64_t count = 0;
  double avg_ms = 0, min_ms = 0, max_ms = 0, p50_ms = 0, p90_ms = 0, p99_ms = 0;
};

// One stage of the pipeline: time samples spent waiting in its input queue, against time its
// threads spent working on them.
struct StageStats {
  // Your stages by their names, around the built-in ones: "preprocess", "inference", "postprocess"
  // (splitting batched results), "reorder" (waiting to be pulled in order).
  std::string name;
  int threads = 1;
  std::uint64_t samples = 0;
  double avg_wait_ms = 0;     // in the stage's input queue
  double avg_compute_ms = 0;  // per sample (a batch's time counts for each of its samples)
  double busy_ms = 0;         // total time the stage's threads were working
  double occupancy = 0;       // busy_ms / (elapsed time x threads), 0..1: near 1 is the bottleneck
};

struct InputStats {
  std::uint64_t pushes = 0;          // push() and try_push() calls
  std::uint64_t push_failures = 0;   // rejected: try_push() on a full queue, DropIncoming, closed
  std::uint64_t inputs_enqueued = 0; // accepted into the queue
  std::uint64_t inputs_dropped = 0;  // by the overflow policy (evicted or rejected)
  double avg_push_us = 0;            // time inside push()/try_push(), waiting included
  double avg_queue_fill = 0;         // input queue occupancy seen by pushes, 0..1
  double max_queue_fill = 0;
};

struct RunStats {
  InputStats input;
  std::uint64_t outputs_ready = 0;   // results delivered by the pipeline, pulled or not
  std::uint64_t outputs_pulled = 0;  // Ok, Error and Cancelled alike
  std::uint64_t errors = 0;          // samples that failed in a stage (pulled as Error)
  std::uint64_t cancelled = 0;       // samples Run::cancel() dropped on their way (pulled as Cancelled)
  std::uint64_t batches = 0;         // inference calls
  double avg_batch_size = 0;
  LatencySummary latency;            // push accepted -> pulled
  std::vector<StageStats> stages;
  double elapsed_s = 0;              // first accepted push -> last pull
  double throughput_fps = 0;         // outputs_pulled / elapsed_s

  std::string to_text() const;
  std::string to_json() const;
};

}  // namespace ringflow

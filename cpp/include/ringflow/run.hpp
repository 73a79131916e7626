// Run: a started pipeline. Push samples in from any thread, pull results out from any thread.
//
//   push ─► [preprocess] ─► ring ─► infer × workers ─► reorder slots ─► pull
//
// Stages are connected by lock-free ring buffers (ring_buffer.hpp); every waiting thread spins
// briefly and then parks (event_count.hpp). Results come out in push order.
//
// `queue_depth` bounds the samples in flight: accepted by push() but not yet pulled. When it is
// reached push() waits and try_push() returns false, so memory stays bounded however fast you push.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ringflow/sample.hpp"

namespace ringflow {

struct RunOptions {
  std::size_t queue_depth = 8;  // samples in flight, from push() to pull()
  int workers = 1;              // concurrent inference requests on the shared session
};

enum class PullStatus {
  Ok,       // `sample` holds the next result
  Timeout,  // nothing arrived within the timeout; the Run is still open
  Closed,   // close_input() was called and every result has been pulled: end of stream
  Error,    // the next sample failed; `error` says why. Pull again for the samples after it.
};

const char* pull_status_name(PullStatus status);

struct PullResult {
  PullStatus status = PullStatus::Timeout;
  std::optional<Sample> sample;  // set for Ok; for Error, the failed input's metadata (no tensors)
  std::string error;
};

class RunImpl;

class Run {
 public:
  Run(Run&&) noexcept;
  Run& operator=(Run&&) noexcept;
  Run(const Run&) = delete;
  Run& operator=(const Run&) = delete;
  // Closes the input, cancels queued and in-flight work, and joins every thread. Results not yet
  // pulled are discarded: to keep them, close_input() and pull until Closed first.
  ~Run();

  // Waits while `queue_depth` samples are in flight. Throws ShapeError or DTypeError for a sample
  // that does not match the negotiated inputs (nothing is enqueued), ClosedError after close_input().
  void push(const std::vector<Tensor>& inputs);
  void push(Sample sample);
  // As push(), but returns false at once instead of waiting when the queue is full.
  bool try_push(const std::vector<Tensor>& inputs);
  bool try_push(Sample sample);

  // No more input. Samples already accepted are still processed and delivered.
  void close_input();

  // The next result in push order, or nullopt on timeout or end of stream (use pull_with_status to
  // tell them apart). Throws InferenceError if that sample failed. timeout_ms < 0 waits forever.
  std::optional<Sample> pull(int timeout_ms = -1);
  PullResult pull_with_status(int timeout_ms = -1);

  // One sample through the pipeline, for a Run used only this way: throws ringflow::Error if other
  // samples are in flight.
  Sample run(const std::vector<Tensor>& inputs, int timeout_ms = -1);

  // The shapes every push must match, negotiated by Graph::build().
  const std::vector<TensorSpec>& input_specs() const;
  const std::vector<TensorSpec>& output_specs() const;
  const RunOptions& options() const;

 private:
  friend class Graph;
  explicit Run(std::unique_ptr<RunImpl> impl);
  std::unique_ptr<RunImpl> impl_;
};

}  // namespace ringflow

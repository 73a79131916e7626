// Run: a started pipeline. Push samples in from any threads, pull results out from any threads.
//
//   push ─► input ring ─► admission ─► [your stages] ─► [preprocess] ─► batch ─► infer × workers
//        ─► [postprocess, your stages] ─► reorder ─► pull / callback
//
// Stages are connected by lock-free rings; every waiting thread spins briefly and then parks.
// Admission numbers the samples it starts, and each stage (and delivery) takes them in that order
// when the Run is ordered, or as they come otherwise. A Graph says which stages there are.
//
// Memory is bounded: the input ring holds `queue_depth` samples, and admission starts a sample
// only when one of `queue_depth + workers × max_batch` result slots is free, so a consumer that
// stops pulling makes the input queue fill and the overflow policy decide (see capacity()).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ringflow/report_thread.hpp"
#include "ringflow/sample.hpp"
#include "ringflow/stats.hpp"

namespace ringflow {

enum class OverflowPolicy {
  Block,         // push() waits for room; nothing is ever dropped
  KeepLatest,    // the oldest sample still waiting in the queue is dropped to make room (live feeds)
  DropIncoming,  // the new sample is rejected
};

enum class OutputMemory {
  Owned,   // each result owns a freshly allocated buffer
  Pooled,  // results borrow buffers from a pool; a buffer is reused only after every Tensor, Mapping
           // and numpy array referring to it is gone. No allocation per sample in steady state.
};

enum class DropReason { QueueFull, Evicted };
const char* drop_reason_name(DropReason reason);

struct DroppedInput {
  std::string stream_id;
  std::int64_t frame_id = -1;
  std::uint64_t input_seq = 0;  // set for Evicted; a rejected sample never got one
  DropReason reason = DropReason::QueueFull;
};

struct RunOptions {
  // Samples that may wait in the input queue. As many again may be computing or waiting to be
  // pulled; when those are all taken the queue fills and overflow_policy applies.
  std::size_t queue_depth = 8;
  OverflowPolicy overflow_policy = OverflowPolicy::Block;
  // Called on the pushing thread, inside push(), for every dropped sample. If it throws, push()
  // completes and then throws CallbackError; nothing else is lost.
  std::function<void(const DroppedInput&)> on_input_drop;

  // Concurrent inference requests on the model's one set of weights (OpenVINO's nireq). With more
  // than one, and the model's intra_op_threads left at 0, each request gets cores / workers ORT
  // threads so the machine is not oversubscribed.
  int workers = 1;
  // With several workers, keep pull order equal to push order (a reorder stage). False: completion
  // order, which never holds a finished result back behind a slower one.
  bool ordered = true;

  // Dynamic batching: stack up to max_batch waiting samples into one inference, waiting at most
  // max_delay_us after the first for more to arrive. Needs a model with a dynamic batch dimension.
  int max_batch = 1;
  int max_delay_us = 0;

  OutputMemory output_memory = OutputMemory::Owned;
  bool enable_metrics = true;  // latency and per-stage timing; counters are always kept
  // Keep the stage spans of about this many recent samples for trace(); 0 turns tracing off.
  std::size_t trace_samples = 256;

  // Upper bounds for the dimensions a model leaves dynamic, by input name: {"input_ids", {1, 128}}
  // lets a sequence be up to 128 long. Same rank as the input; -1 leaves a dimension unbounded.
  // A push beyond a bound is a ShapeError. (Frames for a preprocessing model are bounded by
  // PreprocessOptions instead.)
  std::map<std::string, Shape> max_shape;

  // Small queue, drop the stalest frame: bounded latency for live sources.
  static RunOptions Realtime();
  // The default: moderate queue, Block.
  static RunOptions Balanced();
  // Deep queue, Block: absorbs bursts, never drops.
  static RunOptions Reliable();
};

enum class PullStatus {
  Ok,       // `sample` holds the next result
  Timeout,  // nothing arrived within the timeout; the Run is still open
  Closed,   // close_input() was called and every result has been pulled: end of stream
  Error,    // the next sample failed; `error` says why. Pull again for the samples after it.
  Cancelled,  // the next sample was dropped by cancel() before it ran (its metadata is in `sample`)
};

const char* pull_status_name(PullStatus status);

struct PullResult {
  PullStatus status = PullStatus::Timeout;
  std::optional<Sample> sample;  // set for Ok; for Error, the failed input's metadata (no tensors)
  std::string error;

  // What pull() makes of it: the sample (Ok), nullopt (Timeout, Closed), or it throws
  // InferenceError (Error) or CancelledError (Cancelled). Moves the sample out.
  std::optional<Sample> take_sample();
};

// Receives a Run's results when set_callback() was called: up to `every` at a time, in push order
// when the Run is ordered. Each is Ok with its sample, or Error with the message and the failed
// sample's metadata. Pooled buffers go back to the pool when the callback returns, unless it kept
// a Tensor (or, in Python, an array) of them.
using ResultCallback = std::function<void(std::vector<PullResult>& results)>;

// Receives the result of one sample given to Run::submit(): Ok with its sample, Error, or Cancelled.
using Completion = std::function<void(PullResult& result)>;

class RunImpl;

// While the calling thread waits inside a Run's push(), pull(), pull_with_status() or run(), it
// calls `check` every 50 ms or so. If `check` throws, that call stops waiting and the exception
// propagates; a push interrupted this way has not accepted its sample, and the Run stays usable.
// This is how a waiting thread notices a signal (the Python bindings deliver Ctrl-C with it).
class ScopedWaitCheck {
 public:
  explicit ScopedWaitCheck(std::function<void()> check);
  ~ScopedWaitCheck();
  ScopedWaitCheck(const ScopedWaitCheck&) = delete;
  ScopedWaitCheck& operator=(const ScopedWaitCheck&) = delete;

 private:
  std::function<void()> check_;
  const std::function<void()>* previous_;
};

class Run {
 public:
  Run(Run&&) noexcept;
  Run& operator=(Run&&) noexcept;
  Run(const Run&) = delete;
  Run& operator=(const Run&) = delete;
  // stop(), then frees the pipeline. Results not yet pulled are discarded: to keep them,
  // close_input() and pull until Closed first.
  ~Run();

  // Closes the input, cancels queued and in-flight work, wakes every thread waiting in push() (it
  // throws ClosedError) or pull() (it returns Closed), waits for them to leave, and joins the
  // engine's threads. Idempotent. Must not be called from inside this Run's own callbacks.
  void stop();

  // Enqueues a sample. When the queue is full, the overflow policy decides: Block waits, KeepLatest
  // evicts the oldest waiting sample (one per push), DropIncoming rejects this one. Returns whether
  // this sample was accepted. Throws ShapeError or DTypeError for a sample that does not match the
  // model's inputs (see input_specs()), ClosedError after close_input() or stop(); in those cases
  // nothing is enqueued or dropped. If on_input_drop throws, push() completes and then throws
  // CallbackError, whose accepted() tells whether this sample went in.
  bool push(const std::vector<Tensor>& inputs);
  bool push(Sample sample);
  // As push(), but never waits: returns false (counted as a push failure) when the queue is full,
  // or its next slot is still being handed back by a consumer that was descheduled mid-move.
  bool try_push(const std::vector<Tensor>& inputs);
  bool try_push(Sample sample);
  // push() if it finds room within `timeout_ms` (0: without waiting), returning its result;
  // otherwise nullopt, with `sample` unchanged and nothing counted. Lets a caller holding a lock
  // (the Python bindings, the GIL) release it only when push() really has to wait.
  std::optional<bool> push_if_room(Sample& sample, int timeout_ms = 0);

  // Throws exactly what push() would throw for this sample's shapes and dtypes, without pushing
  // it or reading its data.
  void check(const Sample& sample) const;

  // No more input. Samples already accepted are still processed and delivered.
  void close_input();
  // close_input(), then waits until every accepted sample has passed every stage and waits to be
  // pulled (or was delivered to the callback): OpenVINO's StopAndWait. False if `timeout_ms`
  // (>= 0) passed first. Only queue_depth + workers × max_batch results can wait unpulled: with
  // more in flight, pull from another thread meanwhile, or this waits for that puller.
  bool stop_and_wait(int timeout_ms = -1);
  // close_input(), and every accepted sample is dropped at the next stage it reaches (inference
  // included) instead of running there: it is delivered with status Cancelled (pull() throws
  // CancelledError for it), so nothing is lost silently: once drained, the Ok, Error and Cancelled
  // results pulled add up to stats().input.inputs_enqueued. Work already running finishes.
  void cancel();
  // Writes the stage spans of the most recent samples (RunOptions.trace_samples) as Chrome trace
  // JSON: open it in Perfetto (ui.perfetto.dev) or chrome://tracing to see the stages overlap.
  void trace(const std::string& path) const;

  // The next result in push order, or nullopt on timeout or end of stream (use pull_with_status to
  // tell them apart). Throws InferenceError if that sample failed, CancelledError if cancel()
  // dropped it. timeout_ms < 0 waits forever.
  std::optional<Sample> pull(int timeout_ms = -1);
  PullResult pull_with_status(int timeout_ms = -1);

  // From now on, results go to `callback`, run on a report thread, instead of to pull() (which
  // then throws). Call before the first push. It gets up to `every` results at a time; with
  // `max_delay_ms` >= 0, a partial group goes once its oldest result has waited that long, and
  // wait_all() and end of stream deliver the last partial group. `thread`: a ReportThread shared
  // with other Runs (AscendCL's subscribed thread); by default the Run gets its own.
  //
  // An exception from the callback is never swallowed: the next push(), try_push(), wait_all()
  // or set_callback() throws CallbackError holding it (every one, if several), once; its results
  // count as delivered and nothing else is lost.
  void set_callback(ResultCallback callback, int every = 1, int max_delay_ms = -1,
                    const ReportThread* thread = nullptr);
  // As push(), but the sample's result goes to `done`, called on the Run's report thread (never
  // on an inference thread), instead of to pull(). A Run serves either pull(), set_callback() or
  // submit(): after the first submit(), push() and pull() refuse, and submit() refuses after a
  // push(). Every accepted sample reaches `done` exactly once; one evicted by KeepLatest gets an
  // Error there, on the pushing thread. Returns false, without calling `done`, if DropIncoming
  // rejected it. `cancel`, if given, is read by every stage: once it is true the sample is dropped
  // where it is, and `done` gets it as Cancelled (also when it finished meanwhile). An exception
  // from `done` is raised by the next submit() or wait_all(), as CallbackError.
  bool submit(Sample sample, Completion done, std::shared_ptr<const std::atomic<bool>> cancel = nullptr);
  // submit() if it finds room within `timeout_ms`, as push_if_room(); otherwise nullopt, with
  // `sample` and `done` unchanged.
  std::optional<bool> submit_if_room(Sample& sample, Completion& done,
                                     std::shared_ptr<const std::atomic<bool>> cancel = nullptr, int timeout_ms = 0);

  // For event loops, which must not block: calls `wake` once, from the next thread that may have
  // changed what pull() (notify_when_pullable) or a Block push() (notify_when_pushable) would do:
  // a result arrived, room was made, the input closed, the Run stopped. Register first, then poll
  // (pull_with_status(0), push_if_room()), and wait for `wake` only if that still found nothing; a
  // wake may find nothing new, so poll and register again. `wake` runs on an engine thread: it
  // must be quick, must not throw and must not call into this Run.
  void notify_when_pullable(std::function<void()> wake);
  void notify_when_pushable(std::function<void()> wake);
  // Waits until every accepted sample has been delivered (its callback returned, or it was
  // pulled) and no push is in progress; false if `timeout_ms` (>= 0) passed first. Refused from
  // inside this Run's own callback, where it would wait for itself.
  bool wait_all(int timeout_ms = -1);

  // One sample through the pipeline, for a Run used only this way: throws ringflow::Error if other
  // samples are in flight. If a wait check (ScopedWaitCheck) interrupts it after the sample went
  // in, its result is discarded by the next run().
  Sample run(const std::vector<Tensor>& inputs, int timeout_ms = -1);
  Sample run(Sample sample, int timeout_ms = -1);

  // What every push must match: the model's inputs (or, with preprocessing, HWC uint8 frames),
  // with -1 for each dimension the model leaves dynamic; and the model's outputs, -1 where their
  // size depends on the input or the data.
  const std::vector<TensorSpec>& input_specs() const;
  const std::vector<TensorSpec>& output_specs() const;
  const RunOptions& options() const;
  // The most samples that can be in flight, accepted and not yet pulled: queue_depth waiting, plus
  // queue_depth + workers × max_batch computing or waiting to be pulled, plus, with a callback,
  // the `every` results of the group being gathered or delivered. A consumer that stops pulling
  // (or a callback that does not return) makes Block pushes wait, and the other policies drop,
  // once this many are in flight.
  std::size_t capacity() const;

  // A snapshot of the counters and timings; cheap enough to poll.
  RunStats stats() const;
  InputStats input_stats() const;

 private:
  friend class Graph;
  explicit Run(std::unique_ptr<RunImpl> impl);
  void discard() noexcept;
  std::unique_ptr<RunImpl> impl_;
};

}  // namespace ringflow

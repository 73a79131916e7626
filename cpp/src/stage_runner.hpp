// StageRunner: one stage of a Run: an input queue, its own threads, and a function from a sample
// to a sample. It knows nothing of the stages around it; it hands every item on to its sink.
//
// Items that failed or were cancelled upstream pass through untouched, so every ordinal reaches
// every stage and the ordered queues after it never wait for a hole.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "event_count.hpp"
#include "item.hpp"
#include "metrics.hpp"
#include "reorder_buffer.hpp"
#include "ring_buffer.hpp"
#include "ringflow/stage.hpp"
#include "trace.hpp"

namespace ringflow {

// The input of a stage: taken in ordinal order (a ReorderBuffer) when the Run is ordered, first in
// first out otherwise. Never full: the Run admits a sample only with a credit, and `capacity` is
// the number of credits.
class StageQueue {
 public:
  StageQueue(std::size_t capacity, bool ordered);
  void put(Item&& item) noexcept;
  bool try_take(Item& item) noexcept;
  EventCount& ready() { return ready_; }

 private:
  std::unique_ptr<ReorderBuffer<Item>> ordered_;
  std::unique_ptr<RingBuffer<Item>> fifo_;
  EventCount ready_;
};

// What a stage shares with its Run.
struct StageContext {
  const void* owner;                    // the Run: see stage_thread_owner()
  const std::atomic<bool>* stopping;    // stop(): leave, discarding what is queued
  const std::atomic<bool>* cancelling;  // cancel(): pass samples on as Cancelled instead of running them
  TraceLog* trace;                      // null: tracing off
  bool metrics;
};

// The Run whose stage this thread runs, or null: a Run refuses to stop or wait for itself from there.
const void* stage_thread_owner() noexcept;

class StageRunner {
 public:
  using Sink = std::function<void(Item&&)>;  // must not throw
  // Each thread calls `make_function()` once for a function of its own, so a stage can keep
  // per-thread scratch (the built-in preprocessing does).
  using FunctionMaker = std::function<Stage::Function()>;

  StageRunner(std::string name, int threads, FunctionMaker make_function, std::size_t capacity, bool ordered,
              StageContext context);
  ~StageRunner();

  // Starts the threads; throws Error if one cannot start (those that did are joined by stop()).
  void start(Sink sink);
  void put(Item&& item) noexcept { queue_.put(std::move(item)); }
  // Wakes the threads to see `stopping` and joins them.
  void stop();

  const std::string& name() const { return name_; }
  int threads() const { return threads_; }
  StageStats stats(double elapsed_s) const { return clock_.snapshot(name_.c_str(), threads_, elapsed_s); }

 private:
  void loop(std::uint32_t lane);

  const std::string name_;
  const int threads_;
  FunctionMaker make_function_;
  StageQueue queue_;
  StageContext context_;
  Sink sink_;
  StageClock clock_;
  std::vector<std::uint32_t> lanes_;
  std::vector<std::thread> pool_;
};

}  // namespace ringflow

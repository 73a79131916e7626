// Item: one sample on its way through a Run's stages, with what happened to it so far.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "event_count.hpp"  // Clock
#include "ringflow/run.hpp"

namespace ringflow {

// A sample pushed by submit(): where its result goes, and the flag its submitter sets to cancel it.
struct Submitted {
  Completion done;
  std::shared_ptr<const std::atomic<bool>> cancel;
};

struct Item {
  Sample sample;
  PullStatus status = PullStatus::Ok;  // Ok, Error (see error) or Cancelled
  std::string error;
  // Position in admission order, dense from 0: the order results are handed out in when ordered.
  std::uint64_t ordinal = 0;
  Clock::time_point pushed;  // accepted by push()
  Clock::time_point queued;  // entered its current stage's queue (with metrics on)
  std::shared_ptr<Submitted> submitted;  // set by submit()

  bool ok() const { return status == PullStatus::Ok; }
  // Its submitter cancelled it: each stage drops it instead of running it.
  bool cancel_requested() const { return submitted && cancel_requested_of(*submitted); }
  static bool cancel_requested_of(const Submitted& s) {
    return s.cancel && s.cancel->load(std::memory_order_relaxed);
  }

  // Failed or cancelled, the sample keeps its metadata and drops its tensors: stages after this
  // pass it on untouched, and delivery reports it.
  void fail(std::string why) noexcept {
    try {
      error = std::move(why);
    } catch (...) {
      error = "out of memory";  // short enough to need no allocation
    }
    drop(PullStatus::Error);
  }
  void cancel() noexcept { drop(PullStatus::Cancelled); }

 private:
  void drop(PullStatus why) noexcept {
    status = why;
    sample.tensors.clear();
    sample.names.clear();
  }
};

}  // namespace ringflow

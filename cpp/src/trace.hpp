// TraceLog: the stage spans of a Run's most recent samples, written as Chrome trace JSON (open it
// in Perfetto or chrome://tracing) to show how the stages overlap.
//
// Each stage thread is a lane. Recording takes a mutex: spans are kept only when tracing is on
// (RunOptions.trace_samples), the critical section is a few stores into memory reserved up front,
// and each stage records once per sample, so contention stays low next to the stages' own work.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "item.hpp"

namespace ringflow {

class TraceLog {
 public:
  // Keeps the spans of the newest `samples` samples (by admission order), up to `stages` each.
  TraceLog(std::size_t samples, std::size_t stages);

  // A lane for one stage thread ("inference #1"). Call before the Run starts.
  std::uint32_t add_lane(std::string name);

  // The span of `count` items that were processed together (a batch), under one lock.
  void record(std::uint32_t lane, const Item* items, std::size_t count, Clock::time_point start,
              Clock::time_point end);
  void record(std::uint32_t lane, const Item& item, Clock::time_point start, Clock::time_point end) {
    record(lane, &item, 1, start, end);
  }

  // Throws Error if the file cannot be written.
  void write_chrome_json(const std::string& path) const;

 private:
  struct Span {
    std::uint32_t lane;
    PullStatus status;
    std::uint64_t input_seq;
    std::int64_t frame_id;
    Clock::time_point start, end;
  };
  // The spans of one sample: slot ordinal % samples holds the newest sample that mapped to it.
  struct Slot {
    std::uint64_t ordinal = 0;
    bool used = false;
    std::vector<Span> spans;
  };
  const std::size_t per_sample_;
  std::vector<std::string> lanes_;
  mutable std::mutex mutex_;
  std::vector<Slot> slots_;
};

}  // namespace ringflow

// Lock-free recorders behind RunStats. Every record is a few relaxed atomic adds, so any thread can
// record on the hot path; a stats() snapshot may mix values from an instant apart, never torn ones.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>

#include "ringflow/stats.hpp"

namespace ringflow {

// A log-linear histogram of nanosecond durations: values below 64 ns are exact, above that every
// power of two is split into 32 buckets, so a bucket spans at most 1/32 (3%) of its value.
class LatencyHistogram {
 public:
  void record(std::uint64_t ns) {
    buckets_[bucket_of(ns)].fetch_add(1, std::memory_order_relaxed);
    count_.fetch_add(1, std::memory_order_relaxed);
    sum_ns_.fetch_add(ns, std::memory_order_relaxed);
    std::uint64_t seen = min_ns_.load(std::memory_order_relaxed);
    while (ns < seen && !min_ns_.compare_exchange_weak(seen, ns, std::memory_order_relaxed)) {
    }
    seen = max_ns_.load(std::memory_order_relaxed);
    while (ns > seen && !max_ns_.compare_exchange_weak(seen, ns, std::memory_order_relaxed)) {
    }
  }

  LatencySummary summary() const {
    LatencySummary s;
    s.count = count_.load(std::memory_order_relaxed);
    if (s.count == 0) return s;
    s.avg_ms = static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / s.count / 1e6;
    s.min_ms = min_ns_.load(std::memory_order_relaxed) / 1e6;
    s.max_ms = max_ns_.load(std::memory_order_relaxed) / 1e6;
    s.p50_ms = percentile(0.50, s);
    s.p90_ms = percentile(0.90, s);
    s.p99_ms = percentile(0.99, s);
    return s;
  }

 private:
  static constexpr int kSubBits = 5;
  static constexpr std::size_t kBuckets = 64 + 36 * 32;  // up to 2^41 ns, about 36 minutes

  static std::size_t bucket_of(std::uint64_t ns) {
    if (ns < 64) return static_cast<std::size_t>(ns);
    const int msb = 63 - __builtin_clzll(ns);
    const int shift = msb - kSubBits;
    const std::size_t index = static_cast<std::size_t>(shift + 1) * 32 + ((ns >> shift) - 32);
    return std::min(index, kBuckets - 1);
  }

  static double bucket_mid_ms(std::size_t index) {
    if (index < 64) return index / 1e6;
    const std::size_t shift = index / 32 - 1;
    const double low = static_cast<double>((32 + index % 32) << shift);
    return (low + static_cast<double>(1ull << shift) / 2) / 1e6;
  }

  double percentile(double q, const LatencySummary& s) const {
    const auto rank = static_cast<std::uint64_t>(q * static_cast<double>(s.count - 1)) + 1;
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
      seen += buckets_[i].load(std::memory_order_relaxed);
      if (seen >= rank) return std::clamp(bucket_mid_ms(i), s.min_ms, s.max_ms);
    }
    return s.max_ms;
  }

  std::array<std::atomic<std::uint64_t>, kBuckets> buckets_{};
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> sum_ns_{0};
  std::atomic<std::uint64_t> min_ns_{UINT64_MAX};
  std::atomic<std::uint64_t> max_ns_{0};
};

inline std::uint64_t ns_between(std::chrono::steady_clock::time_point from, std::chrono::steady_clock::time_point to) {
  return to > from ? static_cast<std::uint64_t>(
                         std::chrono::duration_cast<std::chrono::nanoseconds>(to - from).count())
                   : 0;
}

inline std::int64_t ns_since_epoch(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

// Wait and compute time accumulated for one pipeline stage.
struct StageClock {
  std::atomic<std::uint64_t> samples{0};
  std::atomic<std::uint64_t> wait_ns{0};
  std::atomic<std::uint64_t> compute_ns{0};

  void record(std::uint64_t count, std::uint64_t wait, std::uint64_t compute) {
    samples.fetch_add(count, std::memory_order_relaxed);
    wait_ns.fetch_add(wait, std::memory_order_relaxed);
    compute_ns.fetch_add(compute, std::memory_order_relaxed);
  }

  // `compute` is per sample; a batch of n counts its time n times, so busy time divides it by the
  // samples sharing each call (batch_share: 1 for one-sample stages).
  StageStats snapshot(const char* name, int threads, double elapsed_s, double batch_share = 1.0) const {
    StageStats s;
    s.name = name;
    s.threads = threads;
    s.samples = samples.load(std::memory_order_relaxed);
    const double compute_ms = static_cast<double>(compute_ns.load(std::memory_order_relaxed)) / 1e6;
    if (s.samples) {
      s.avg_wait_ms = static_cast<double>(wait_ns.load(std::memory_order_relaxed)) / s.samples / 1e6;
      s.avg_compute_ms = compute_ms / s.samples;
    }
    s.busy_ms = compute_ms * batch_share;
    if (elapsed_s > 0 && threads > 0) s.occupancy = std::min(1.0, s.busy_ms / 1e3 / elapsed_s / threads);
    return s;
  }
};

}  // namespace ringflow

// Spin briefly, then park: how every ringflow thread waits.
//
// On a 2-core machine a thread that spins for long steals the core ONNX Runtime is computing on,
// while a thread that parks at once pays a futex round trip (several microseconds) on every hop.
// `wait_until` spins for a few microseconds, then parks on an EventCount.
//
// EventCount lets lock-free code sleep without losing wake-ups. A waiter announces itself with a
// read-modify-write of `waiters_`, re-checks its condition, and sleeps only while `epoch_` is
// unchanged. A notifier first makes the condition true, then reads `waiters_` with a
// read-modify-write too. RMWs of one atomic are totally ordered, and acq_rel makes the earlier one
// visible to the later: either the notifier sees the waiter, or the waiter sees the condition. The
// notifier takes the mutex only when someone is parked.
//
// A thread that must not block (an event loop) waits with `watch(fire)` instead: it counts as a
// waiter, so the next notify_all() takes `fire` and calls it, once, after letting go of the mutex.
// The watcher re-checks its condition after watch() returns, as wait_until does after announcing
// itself; a watcher that finds it true is simply fired later, for nothing.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <functional>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace ringflow {

using Clock = std::chrono::steady_clock;

// A deadline from a timeout in milliseconds; a negative timeout means wait forever.
inline Clock::time_point deadline_after(int timeout_ms) {
  return timeout_ms < 0 ? Clock::time_point::max()
                        : Clock::now() + std::chrono::milliseconds(timeout_ms);
}

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

class EventCount {
 public:
  void notify_all() noexcept {
    if (waiters_.fetch_add(0, std::memory_order_acq_rel) == 0) return;
    std::vector<std::function<void()>> fire;
    {
      // Taking the lock orders this bump after any waiter that is between its epoch check and its
      // sleep, so that waiter is already inside wait() when notify_all() runs.
      std::lock_guard<std::mutex> lock(mutex_);
      epoch_.fetch_add(1, std::memory_order_seq_cst);
      fire.swap(watchers_);
      waiters_.fetch_sub(static_cast<std::uint32_t>(fire.size()), std::memory_order_relaxed);
    }
    cv_.notify_all();
    for (auto& f : fire) f();  // outside the lock: a watcher may watch() again
  }

  // Calls `fire` once, from the next notify_all(). Must be quick and must not throw.
  void watch(std::function<void()> fire) {
    std::lock_guard<std::mutex> lock(mutex_);
    watchers_.push_back(std::move(fire));
    waiters_.fetch_add(1, std::memory_order_acq_rel);  // before the caller re-checks; see above
  }

  // Blocks until `ready()` is true or the deadline passes; returns the final `ready()`.
  template <typename Ready>
  bool wait_until(Ready&& ready, Clock::time_point deadline) {
    if (spin(ready)) return true;
    for (;;) {
      waiters_.fetch_add(1, std::memory_order_acq_rel);
      const std::uint64_t epoch = epoch_.load(std::memory_order_acquire);
      if (ready()) {
        waiters_.fetch_sub(1, std::memory_order_relaxed);
        return true;
      }
      bool timed_out = false;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        while (epoch_.load(std::memory_order_relaxed) == epoch && !timed_out) {
          if (deadline == Clock::time_point::max()) {
            cv_.wait(lock);
          } else {
            timed_out = cv_.wait_until(lock, deadline) == std::cv_status::timeout;
          }
        }
      }
      waiters_.fetch_sub(1, std::memory_order_relaxed);
      if (ready()) return true;
      if (timed_out || Clock::now() >= deadline) return false;
    }
  }

 private:
  // About 2-5 microseconds of pause instructions, then a few yields: long enough to catch a
  // hand-off from a thread that is about to publish, short enough not to starve ORT.
  template <typename Ready>
  static bool spin(Ready& ready) {
    for (int i = 0; i < 128; ++i) {
      if (ready()) return true;
      cpu_relax();
    }
    for (int i = 0; i < 4; ++i) {
      if (ready()) return true;
      std::this_thread::yield();
    }
    return ready();
  }

  std::atomic<std::uint32_t> waiters_{0};
  std::atomic<std::uint64_t> epoch_{0};
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::function<void()>> watchers_;  // guarded by mutex_
};

}  // namespace ringflow

#include "report_thread.hpp"

#include <algorithm>

namespace ringflow {
namespace {
std::atomic<void (*)()> g_round_end_hook{nullptr};
}  // namespace

void set_report_round_end_hook(void (*hook)()) { g_round_end_hook.store(hook, std::memory_order_release); }

ReportThread::ReportThread() : impl_(std::make_shared<ReportThreadImpl>()) {}
ReportThread::~ReportThread() = default;

ReportThreadImpl::ReportThreadImpl() : thread_([this] { loop(); }) {}

ReportThreadImpl::~ReportThreadImpl() {
  stopping_.store(true, std::memory_order_release);
  wake();
  if (on_this_thread()) {
    thread_.detach();  // the last owner let go inside a callback: the loop ends by itself
  } else {
    thread_.join();
  }
}

void ReportThreadImpl::subscribe(Subscriber* subscriber) {
  {
    std::lock_guard<std::recursive_mutex> lock(mutex_);
    subscribers_.push_back(subscriber);
  }
  wake();
}

void ReportThreadImpl::unsubscribe(Subscriber* subscriber) {
  {
    std::lock_guard<std::recursive_mutex> lock(mutex_);
    subscribers_.erase(std::remove(subscribers_.begin(), subscribers_.end(), subscriber), subscribers_.end());
  }
  wake();  // a round that removed it from inside a callback may have skipped the next one
}

void ReportThreadImpl::wake() noexcept {
  wakes_.fetch_add(1, std::memory_order_acq_rel);
  event_.notify_all();
}

void ReportThreadImpl::loop() {
  for (;;) {
    const std::uint64_t seen = wakes_.load(std::memory_order_acquire);
    if (stopping_.load(std::memory_order_acquire)) return;
    Clock::time_point next = Clock::time_point::max();
    {
      // Callbacks run under the lock, so a Run that unsubscribes from another thread waits for its
      // callback to return. By index: a callback may add or remove subscribers (it then misses
      // at most one turn, and the wake-up that came with the change brings the next look).
      std::lock_guard<std::recursive_mutex> lock(mutex_);
      for (std::size_t i = 0; i < subscribers_.size(); ++i) next = std::min(next, subscribers_[i]->report());
    }
    if (void (*hook)() = g_round_end_hook.load(std::memory_order_acquire)) hook();
    event_.wait_until(
        [&] {
          return wakes_.load(std::memory_order_acquire) != seen || stopping_.load(std::memory_order_acquire);
        },
        next);
  }
}

}  // namespace ringflow

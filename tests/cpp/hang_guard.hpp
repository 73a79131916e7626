// Turns a hang into a test failure. A hung thread cannot be cancelled, so when the guarded scope
// outlives its limit the guard says what was running and ends the process with a failure status,
// rather than leaving CTest to kill a silent binary much later.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

class HangGuard {
 public:
  HangGuard(std::string what, std::chrono::seconds limit)
      : watcher_([this, what = std::move(what), limit] {
          std::unique_lock<std::mutex> lock(mutex_);
          if (!finished_cv_.wait_for(lock, limit, [this] { return finished_; })) {
            std::printf("HANG: %s did not finish within %lld s\n", what.c_str(),
                        static_cast<long long>(limit.count()));
            std::fflush(stdout);
            std::_Exit(EXIT_FAILURE);
          }
        }) {}

  ~HangGuard() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      finished_ = true;
    }
    finished_cv_.notify_one();
    watcher_.join();
  }

  HangGuard(const HangGuard&) = delete;
  HangGuard& operator=(const HangGuard&) = delete;

 private:
  std::mutex mutex_;
  std::condition_variable finished_cv_;
  bool finished_ = false;
  std::thread watcher_;  // last: it starts running before the constructor body
};

// Exceptions raised by user callbacks on the report thread, kept until the user's next call on the
// Run (or queue) raises them as one CallbackError: never swallowed, reported once, then cleared.
#pragma once

#include <atomic>
#include <exception>
#include <mutex>
#include <string>
#include <vector>

#include "ringflow/errors.hpp"

namespace ringflow {

class CallbackErrors {
 public:
  void add(std::exception_ptr error) {
    std::lock_guard<std::mutex> lock(mutex_);
    errors_.push_back(std::move(error));
    any_.store(true, std::memory_order_release);
  }

  // Throws CallbackError holding every exception kept since the last call, if there is any.
  // One relaxed-cost load when there is none: it sits on push()'s path.
  void raise(const char* what_raised) {
    if (!any_.load(std::memory_order_acquire)) return;
    std::vector<std::exception_ptr> errors;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      errors.swap(errors_);
      any_.store(false, std::memory_order_relaxed);
    }
    if (errors.empty()) return;
    std::string message = std::string(what_raised) + " raised " + std::to_string(errors.size()) +
                          (errors.size() == 1 ? " time: " : " times: ");
    for (std::size_t i = 0; i < errors.size(); ++i) {
      try {
        std::rethrow_exception(errors[i]);
      } catch (const std::exception& e) {
        message += (i ? "; " : "") + std::string(e.what());
      } catch (...) {
        message += (i ? "; " : "") + std::string("unknown exception");
      }
    }
    throw CallbackError(message + " (those results count as delivered; nothing else was lost)", false,
                        std::move(errors));
  }

 private:
  std::mutex mutex_;
  std::vector<std::exception_ptr> errors_;
  std::atomic<bool> any_{false};
};

}  // namespace ringflow

// How a user's thread waits inside the engine: as EventCount::wait_until, but with a wait check
// installed (ScopedWaitCheck, run.hpp) in slices, calling the check between them so it can
// interrupt the wait by throwing.
#pragma once

#include <chrono>
#include <functional>

#include "event_count.hpp"

namespace ringflow {

// The check ScopedWaitCheck installed on this thread, if any.
const std::function<void()>* wait_check() noexcept;

template <typename Ready>
bool wait_with_checks(EventCount& event, Ready&& ready, Clock::time_point deadline) {
  constexpr auto kInterval = std::chrono::milliseconds(50);
  const std::function<void()>* check = wait_check();
  if (!check) return event.wait_until(ready, deadline);
  for (;;) {
    const Clock::time_point now = Clock::now();
    const Clock::time_point slice = deadline <= now || deadline - now <= kInterval ? deadline : now + kInterval;
    if (event.wait_until(ready, slice)) return true;
    if (Clock::now() >= deadline) return false;
    (*check)();
  }
}

}  // namespace ringflow

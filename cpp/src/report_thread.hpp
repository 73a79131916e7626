// The thread behind ReportThread: it waits until a subscribed Run has results (or a deadline of a
// partial group passes), then lets that Run hand its ready groups to its callback.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "event_count.hpp"
#include "ringflow/report_thread.hpp"

namespace ringflow {

class ReportThreadImpl {
 public:
  // What the thread calls for one subscribed Run: deliver whatever groups are ready and return
  // when it next needs a look even without a wake-up (a partial group's max_delay), or max().
  class Subscriber {
   public:
    virtual Clock::time_point report() = 0;

   protected:
    ~Subscriber() = default;
  };

  ReportThreadImpl();
  ~ReportThreadImpl();

  void subscribe(Subscriber* subscriber);
  // After this returns, the thread is not inside subscriber->report() (unless this is that thread,
  // inside it) and never calls it again.
  void unsubscribe(Subscriber* subscriber);
  // Something changed for a subscriber (a result is ready, its input closed): have a look.
  void wake() noexcept;
  bool on_this_thread() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  void loop();

  // Guards subscribers_, and is held while one is reported, so unsubscribe() waits that out.
  // Recursive, so a callback may subscribe or unsubscribe Runs of its own thread.
  std::recursive_mutex mutex_;
  std::vector<Subscriber*> subscribers_;
  // Bumped by every wake(): the loop sleeps only while it is unchanged since its last look, so no
  // wake-up is lost between a look and the sleep.
  std::atomic<std::uint64_t> wakes_{0};
  std::atomic<bool> stopping_{false};
  EventCount event_;
  std::thread thread_;
};

}  // namespace ringflow

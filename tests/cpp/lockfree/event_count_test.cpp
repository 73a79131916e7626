// EventCount: a waiter that has parked, or is on its way to parking, must wake when notified, and
// must not wake early. A lost wake-up shows up as a wait that lasts to its deadline, or as a hang,
// which HangGuard turns into a failure.
#include "event_count.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "check.hpp"
#include "hang_guard.hpp"
#include "ring_buffer.hpp"
#include "tsan.hpp"

using ringflow::Clock;
using ringflow::EventCount;
using namespace std::chrono_literals;

namespace {

// Generous: a healthy run takes well under a second, a few seconds under TSAN.
constexpr std::chrono::seconds kHangLimit{60};

// Busy-waits between 0 and ~25 us, varying with `round`, so that across rounds the hand-off lands
// anywhere in the other player's spin, its way into the park, or its sleep.
void dawdle(int round) {
  const auto until = Clock::now() + std::chrono::nanoseconds((round * 7919) % 25000);
  while (Clock::now() < until) ringflow::cpu_relax();
}

// Two threads hand a turn back and forth, each dawdling before it hands over: some notifies find
// the other player parked, the rest race its spin and its way into the park, where a missing fence
// or a wake-up sent just before the sleep would be lost.
void ping_pong(bool timed_wait) {
  const int rounds = iterations(20000, 5000);
  std::atomic<int> turn{0};
  EventCount turn_changed;
  std::atomic<int> failed_waits{0};

  auto player = [&](int me) {
    for (int round = 0; round < rounds; ++round) {
      // A far deadline takes the timed path through the condition variable; max() the untimed one.
      const Clock::time_point deadline =
          timed_wait ? Clock::now() + std::chrono::hours(1) : Clock::time_point::max();
      if (!turn_changed.wait_until([&] { return turn.load(std::memory_order_acquire) == me; },
                                   deadline)) {
        failed_waits.fetch_add(1);
      }
      dawdle(round);
      turn.store(1 - me, std::memory_order_release);
      turn_changed.notify_all();
    }
  };

  HangGuard guard(timed_wait ? "timed ping-pong" : "untimed ping-pong", kHangLimit);
  std::thread other(player, 1);
  player(0);
  other.join();
  CHECK_EQ(failed_waits.load(), 0);
  CHECK_EQ(turn.load(), 0);  // both players took all their turns
}

}  // namespace

TEST(ping_pong_with_untimed_waits_loses_no_wakeup) { ping_pong(false); }

TEST(ping_pong_with_timed_waits_loses_no_wakeup) { ping_pong(true); }

// The waiter's own condition check plays the notifier: on its k-th call it reads "not ready", then
// makes the condition true and notifies before returning that stale answer. Sweeping k over every
// call one wait makes (the spin, then the re-check just before parking) lands a notify in each gap
// of the wait protocol, deterministically. A lost notify leaves the waiter asleep until its deadline.
TEST(a_notify_racing_the_condition_check_is_not_lost) {
  // A correct wait never sleeps once notified, so this bounds only a lost wake-up and the final
  // round, whose check is never called.
  constexpr auto kDeadline = 500ms;
  HangGuard guard("notifies racing the check", kHangLimit);
  int first_lost_at = -1;
  int trigger = 0;
  for (;; ++trigger) {
    std::atomic<bool> ready{false};
    EventCount ready_changed;
    int calls = 0;
    bool notified_in_time = false;
    const Clock::time_point deadline = Clock::now() + kDeadline;
    ready_changed.wait_until(
        [&] {
          const bool seen = ready.load();
          if (calls++ == trigger) {
            notified_in_time = Clock::now() < deadline;
            ready.store(true);
            ready_changed.notify_all();
          }
          return seen;
        },
        deadline);
    const bool woke_before_deadline = Clock::now() < deadline;
    // No trigger-th check before the deadline: the wait parked after fewer checks, and every gap
    // before the park has been tried.
    if (!notified_in_time) break;
    if (!woke_before_deadline && first_lost_at < 0) first_lost_at = trigger;
  }
  CHECK_EQ(first_lost_at, -1);
  CHECK(trigger > 1);  // some calls were made before parking, so some gaps were tried
}

// An event loop's wait: watch(), re-check, and sleep until the watcher fires (here on a plain
// condition variable, as the loop sleeps in its selector). The notifier dawdles so that its notify
// lands before, between and after the watch and the re-check. A lost fire is a wait that never
// ends; every fire must also come exactly once per watch.
TEST(a_watcher_is_fired_once_by_the_next_notify_and_never_lost) {
  const int rounds = iterations(20000, 3000);
  std::atomic<int> published{0};
  EventCount published_changed;
  std::mutex mutex;
  std::condition_variable fired_cv;
  int fires = 0;  // guarded by mutex
  int watches = 0;

  HangGuard guard("watchers against a notifier", kHangLimit);
  std::thread notifier([&] {
    for (int round = 1; round <= rounds; ++round) {
      dawdle(round);
      published.store(round, std::memory_order_release);
      published_changed.notify_all();
    }
  });
  for (int seen = 0; seen < rounds;) {
    if (published.load(std::memory_order_acquire) > seen) {
      seen = published.load(std::memory_order_acquire);
      continue;
    }
    int fires_before = 0;
    {
      std::lock_guard<std::mutex> lock(mutex);
      fires_before = fires;
    }
    ++watches;
    published_changed.watch([&] {
      std::lock_guard<std::mutex> lock(mutex);
      ++fires;
      fired_cv.notify_all();
    });
    if (published.load(std::memory_order_acquire) > seen) continue;  // the re-check found it
    std::unique_lock<std::mutex> lock(mutex);
    fired_cv.wait(lock, [&] { return fires > fires_before; });
  }
  notifier.join();
  published_changed.notify_all();  // fires a watch whose re-check found the value first
  std::lock_guard<std::mutex> lock(mutex);
  CHECK_EQ(fires, watches);
}

TEST(notify_all_wakes_every_parked_waiter) {
  HangGuard guard("waking parked waiters", kHangLimit);
  std::atomic<bool> go{false};
  EventCount go_changed;
  std::atomic<int> woken{0};
  std::vector<std::thread> waiters;
  for (int i = 0; i < 3; ++i) {
    waiters.emplace_back([&] {
      if (go_changed.wait_until([&] { return go.load(); }, Clock::time_point::max())) woken++;
    });
  }
  std::this_thread::sleep_for(20ms);  // long past the spin: the waiters are parked by now
  const int woken_before_notify = woken.load();
  go.store(true);
  go_changed.notify_all();
  for (std::thread& t : waiters) t.join();
  CHECK_EQ(woken_before_notify, 0);
  CHECK_EQ(woken.load(), 3);
}

TEST(wait_until_times_out_at_the_deadline_not_before) {
  HangGuard guard("a 50 ms wait", kHangLimit);
  EventCount never_notified;
  const Clock::time_point deadline = Clock::now() + 50ms;
  const bool ready = never_notified.wait_until([] { return false; }, deadline);
  CHECK(!ready);
  CHECK(Clock::now() >= deadline);
}

// A notify while the condition is still false wakes the waiter, which must go back to sleep
// rather than report a timeout or success early.
TEST(notifies_without_the_condition_do_not_end_a_wait_early) {
  HangGuard guard("a 50 ms wait under notifies", kHangLimit);
  EventCount noisy;
  std::atomic<bool> waiting{true};
  std::thread notifier([&] {
    while (waiting.load()) {
      noisy.notify_all();
      std::this_thread::sleep_for(1ms);
    }
  });
  const Clock::time_point deadline = Clock::now() + 50ms;
  const bool ready = noisy.wait_until([] { return false; }, deadline);
  const Clock::time_point returned = Clock::now();
  waiting.store(false);
  notifier.join();
  CHECK(!ready);
  CHECK(returned >= deadline);
}

// The pattern every Run stage uses: a lock-free ring plus one EventCount per direction. Producers
// park when it is full, consumers when it is empty; every item must arrive exactly once. Both sides
// dawdle now and then, so the other side outlasts its spin and really parks, in both directions.
TEST(blocking_ring_moves_every_item_exactly_once) {
  constexpr std::uint32_t kProducers = 2;
  constexpr std::uint32_t kConsumers = 2;
  const std::uint32_t total = 100000;
  ringflow::RingBuffer<std::uint32_t> ring(8);
  EventCount not_empty;
  EventCount not_full;
  std::vector<std::atomic<std::uint32_t>> deliveries(total);
  std::atomic<std::uint32_t> consumed{0};
  std::atomic<bool> all_consumed{false};

  HangGuard guard("the blocking producer/consumer", kHangLimit);
  std::vector<std::thread> threads;
  for (std::uint32_t p = 0; p < kProducers; ++p) {
    threads.emplace_back([&, p] {
      for (std::uint32_t value = p; value < total; value += kProducers) {
        not_full.wait_until([&] { return ring.try_push(value); }, Clock::time_point::max());
        not_empty.notify_all();
        if (value % 4096 < kProducers) std::this_thread::sleep_for(100us);  // consumers park
      }
    });
  }
  for (std::uint32_t c = 0; c < kConsumers; ++c) {
    threads.emplace_back([&] {
      for (;;) {
        std::uint32_t value = 0;
        bool got = false;
        not_empty.wait_until([&] { return (got = ring.try_pop(value)) || all_consumed.load(); },
                             Clock::time_point::max());
        if (!got) return;
        not_full.notify_all();
        if (value < total) deliveries[value].fetch_add(1, std::memory_order_relaxed);
        if (value % 4096 == 2048) std::this_thread::sleep_for(100us);  // producers park
        if (consumed.fetch_add(1) + 1 == total) {
          all_consumed.store(true);
          not_empty.notify_all();  // release the other consumers
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();

  std::uint32_t not_exactly_once = 0;
  for (const auto& count : deliveries) not_exactly_once += count.load() != 1;
  CHECK_EQ(consumed.load(), total);
  CHECK_EQ(not_exactly_once, 0u);
}

int main(int argc, char** argv) { return check::run_all(argc, argv); }

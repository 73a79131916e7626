// Regression tests for the engine defects of issue 7, on tiny-mlp:
//   - a Run destroyed, or stop()ped, while other threads wait inside push() or pull() (this was a
//     use-after-free; run under AddressSanitizer with RINGFLOW_ASAN);
//   - KeepLatest and DropIncoming while the dispatcher is descheduled between claiming a slot of
//     the input ring and releasing it (held open with testing::set_input_claim_hook);
//   - end of stream with many pullers and pushers;
//   - stop() semantics;
//   - a Run carried into a fork()ed child.
//
// Threads other than the test's own record what they observe; the test CHECKs after join(), as
// check.hpp requires.
#include <signal.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "check.hpp"
#include "engine_models.hpp"
#include "hang_guard.hpp"
#include "lockfree/tsan.hpp"
#include "ringflow/ringflow.hpp"
#include "tensors.hpp"
#include "testing_hooks.hpp"  // cpp/src: ringflow's own test hooks, no ONNX Runtime headers

using namespace ringflow;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// Far above any healthy wait on tiny-mlp; only there to turn a hang into a failure.
constexpr int kPullTimeoutMs = 5000;
constexpr std::chrono::seconds kHangLimit{30};

Run build_run(const RunOptions& options = {}) {
  return Graph().add(tiny_mlp().graph()).build(std::vector<Tensor>{mlp_input(0)}, options);
}

Sample numbered_sample(int index) {
  Sample sample = make_sample({mlp_input(index)});
  sample.stream_id = "defects";
  sample.frame_id = index;
  return sample;
}

double ms_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

// CPU time the calling thread has used, in milliseconds.
double thread_cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

pid_t current_tid() { return static_cast<pid_t>(::syscall(SYS_gettid)); }

// The scheduler state of one of this process's threads: 'R' running, 'S' asleep (a futex wait), ...
char thread_state(pid_t tid) {
  std::ifstream stat("/proc/self/task/" + std::to_string(tid) + "/stat");
  std::string line;
  std::getline(stat, line);
  const std::size_t name_end = line.rfind(')');
  return name_end == std::string::npos || name_end + 2 >= line.size() ? '?' : line[name_end + 2];
}

// Waits until thread `tid`, which has nothing left to do but the blocking call under test, is
// asleep in it (seen asleep twice, 5 ms apart). The caller's HangGuard bounds the wait.
void wait_until_asleep(pid_t tid) {
  for (int asleep = 0; asleep < 2;) {
    asleep = thread_state(tid) == 'S' ? asleep + 1 : 0;
    std::this_thread::sleep_for(5ms);
  }
}

// Pulls until end of stream; returns how many results came, or -1 on anything but Ok then Closed.
int pull_until_closed(Run& run) {
  for (int pulled = 0;; ++pulled) {
    const PullResult r = run.pull_with_status(kPullTimeoutMs);
    if (r.status == PullStatus::Closed) return pulled;
    if (r.status != PullStatus::Ok) return -1;
  }
}

// ---- a Run destroyed or stopped while threads wait inside it ---------------------------------------

enum class Ending { Destroy, Stop, StopFromTwoThreads };

const char* ending_name(Ending ending) {
  switch (ending) {
    case Ending::Destroy: return "destroying the Run";
    case Ending::Stop: return "Run::stop()";
    case Ending::StopFromTwoThreads: return "Run::stop() from two threads at once";
  }
  return "?";
}

// What a thread blocked inside a Run call saw when it came out.
enum class Outcome { Inside, ClosedError, Closed, Returned, OtherError };

// A thread that calls into a Run and waits there. How the test knows it is inside:
//   - with a wait check (ScopedWaitCheck), which the Run calls only from inside a waiting call, every
//     50 ms or so: the check sets `waiting` (release), the test waits for it (acquire). That also
//     orders the thread's entry (its read of the Run handle) before whatever the test does next.
//   - without one, the thread has nothing left to sleep in but the call: the test waits until the
//     kernel says it is asleep. This is the plain path, an untimed wait on the Run's EventCounts.
// Destroying a Run while threads without a wait check are inside is what issue 7 describes. But
// ~Run nulls its handle's pointer (impl_.reset()) before ~RunImpl waits for the callers that read
// that pointer on entry, and nothing orders their read before that write: a data race by the C++
// memory model, which ThreadSanitizer reports. Under TSAN, Destroy therefore gives every thread a
// wait check, whose release/acquire hand-off orders it; elsewhere half of the threads go without.
struct Blocked {
  bool with_wait_check = false;
  std::atomic<pid_t> tid{0};
  std::atomic<bool> waiting{false};
  std::atomic<Outcome> outcome{Outcome::Inside};
  std::thread thread;

  // Runs `call` on a new thread, inside a ScopedWaitCheck if `wait_check`; `call` sets outcome.
  template <typename Call>
  void start(bool wait_check, Call call) {
    with_wait_check = wait_check;
    thread = std::thread([this, call] {
      tid = current_tid();
      std::optional<ScopedWaitCheck> check;
      if (with_wait_check) check.emplace([this] { waiting.store(true, std::memory_order_release); });
      try {
        call();
      } catch (const ClosedError&) {
        outcome = Outcome::ClosedError;
      } catch (...) {
        outcome = Outcome::OtherError;
      }
    });
  }

  // Returns once the thread is inside its call and waiting there.
  void wait_until_inside() {
    if (with_wait_check) {
      while (!waiting.load(std::memory_order_acquire)) std::this_thread::sleep_for(1ms);
      return;
    }
    while (tid == 0) std::this_thread::sleep_for(1ms);
    wait_until_asleep(tid);
  }
};

bool use_wait_check(Ending ending, int thread) {
  if (ending != Ending::Destroy) return thread == 0;  // one thread on the sliced path, the rest plain
  return kThreadSanitizer || thread % 2 == 0;
}

// Ends the Run the way `ending` says, while the threads of `blocked` wait inside it, and joins them.
void end_run(std::optional<Run>& run, Ending ending, std::vector<Blocked>& blocked) {
  switch (ending) {
    case Ending::Destroy:
      run.reset();  // ~Run wakes the threads inside and waits for them to leave
      break;
    case Ending::Stop:
      run->stop();
      break;
    case Ending::StopFromTwoThreads: {
      std::thread other([&] { run->stop(); });
      run->stop();
      other.join();
      break;
    }
  }
  for (Blocked& b : blocked) b.thread.join();
}

// Pushers wait for room in a full Block Run that nobody pulls; ending the Run must make each of
// their pushes throw ClosedError, and the Run's end must wait for them.
void check_blocked_pushers_released(Ending ending) {
  constexpr int kPushers = 4;
  for (int round = 0; round < 3; ++round) {
    RunOptions options = depth_and_workers(1, 1);
    options.overflow_policy = OverflowPolicy::Block;
    std::optional<Run> run(build_run(options));
    Run& shared = *run;  // what the threads call; alive until every one of them is inside
    const int capacity = static_cast<int>(shared.capacity());

    HangGuard guard(std::string("blocked pushers released by ") + ending_name(ending), kHangLimit);
    for (int i = 0; i < capacity; ++i) CHECK(shared.push(numbered_sample(i)));
    std::vector<Blocked> blocked(kPushers);
    for (int p = 0; p < kPushers; ++p) {
      Blocked& b = blocked[p];
      b.start(use_wait_check(ending, p), [&shared, &b, p, capacity] {
        shared.push(numbered_sample(capacity + p));
        b.outcome = Outcome::Returned;
      });
    }
    // Every push has been counted, so each thread is inside push(); and each is waiting there.
    while (shared.input_stats().pushes != static_cast<std::uint64_t>(capacity + kPushers)) {
      std::this_thread::sleep_for(1ms);
    }
    for (Blocked& b : blocked) b.wait_until_inside();
    std::this_thread::sleep_for(50ms);
    bool all_inside = true;
    for (Blocked& b : blocked) all_inside = all_inside && b.outcome == Outcome::Inside;

    const InputStats before = shared.input_stats();
    end_run(run, ending, blocked);

    CHECK(all_inside);
    for (Blocked& b : blocked) CHECK_EQ(b.outcome.load(), Outcome::ClosedError);
    CHECK_EQ(before.pushes, static_cast<std::uint64_t>(capacity + kPushers));
    if (run) {
      // Stopped, not destroyed: the refused pushes are counted as failures, and nothing more is
      // accepted.
      const InputStats after = run->input_stats();
      CHECK_EQ(after.push_failures, static_cast<std::uint64_t>(kPushers));
      CHECK_EQ(after.inputs_enqueued, static_cast<std::uint64_t>(capacity));
      CHECK_THROWS(run->push(numbered_sample(99)), ClosedError);
      run.reset();
    }
  }
}

// Pullers wait on a Run nothing was pushed into; ending the Run must make each pull return Closed
// (pull(): nullopt), and the Run's end must wait for them.
void check_blocked_pullers_released(Ending ending) {
  constexpr int kPullers = 4;
  for (int round = 0; round < 3; ++round) {
    std::optional<Run> run(build_run(depth_and_workers(2, 2)));
    Run& shared = *run;

    HangGuard guard(std::string("blocked pullers released by ") + ending_name(ending), kHangLimit);
    std::vector<Blocked> blocked(kPullers);
    for (int p = 0; p < kPullers; ++p) {
      Blocked& b = blocked[p];
      b.start(use_wait_check(ending, p), [&shared, &b, p] {
        if (p < 2) {
          const PullResult r = shared.pull_with_status(-1);
          b.outcome = r.status == PullStatus::Closed ? Outcome::Closed : Outcome::Returned;
        } else {
          const std::optional<Sample> r = shared.pull(-1);
          b.outcome = r ? Outcome::Returned : Outcome::Closed;
        }
      });
    }
    for (Blocked& b : blocked) b.wait_until_inside();
    std::this_thread::sleep_for(50ms);
    bool all_inside = true;
    for (Blocked& b : blocked) all_inside = all_inside && b.outcome == Outcome::Inside;

    end_run(run, ending, blocked);

    CHECK(all_inside);
    for (Blocked& b : blocked) CHECK_EQ(b.outcome.load(), Outcome::Closed);
    if (run) {
      CHECK_EQ(run->pull_with_status(-1).status, PullStatus::Closed);
      run.reset();
    }
  }
}

// ---- the dispatcher descheduled between claim and release ------------------------------------------

constexpr auto kClaimWindow = 150ms;
std::atomic<bool> g_claim_hook_armed{false};
std::atomic<bool> g_claim_hook_entered{false};
std::atomic<bool> g_claim_hook_left{false};

// Installed with testing::set_input_claim_hook: once armed, the next consumer of the input ring to
// claim a slot (the dispatcher) stays in the claim window for kClaimWindow, as if descheduled.
void slow_claim() {
  if (!g_claim_hook_armed.exchange(false)) return;
  g_claim_hook_entered = true;
  std::this_thread::sleep_for(kClaimWindow);
  g_claim_hook_left = true;
}

Run build_run_with_slow_claim(const RunOptions& options) {
  struct Uninstall {
    ~Uninstall() { ringflow::testing::set_input_claim_hook(nullptr); }
  } uninstall;
  ringflow::testing::set_input_claim_hook(&slow_claim);
  return build_run(options);
}

// A Run of queue depth `depth` whose dispatcher has claimed sample 0 and is held in the claim
// window, with samples 1..depth-1 in every other slot of the input ring; `drops` counts
// on_input_drop calls.
Run run_behind_a_held_claim(OverflowPolicy policy, int depth, std::atomic<int>& drops) {
  RunOptions options = depth_and_workers(static_cast<std::size_t>(depth), 1);
  options.overflow_policy = policy;
  options.on_input_drop = [&drops](const DroppedInput&) { drops.fetch_add(1); };
  Run run = build_run_with_slow_claim(options);
  g_claim_hook_entered = false;
  g_claim_hook_left = false;
  g_claim_hook_armed = true;
  CHECK(run.push(numbered_sample(0)));
  while (!g_claim_hook_entered) std::this_thread::sleep_for(100us);
  for (int i = 1; i < depth; ++i) CHECK(run.push(numbered_sample(i)));
  return run;
}

// The dispatcher claims sample 0 and is held in the claim window; samples 1..depth-1 fill every
// other slot of the input ring. Then one push, whose slot is the claimed one: room is coming, so it
// must not evict (KeepLatest: at most one sample), must not be rejected (DropIncoming), and must
// wait without spinning.
void check_push_into_a_claim_window(OverflowPolicy policy) {
  constexpr int kDepth = 4;
  for (int attempt = 0; attempt < 5; ++attempt) {
    std::atomic<int> drops{0};
    HangGuard guard("a push while the dispatcher holds a claimed slot", kHangLimit);
    Run run = run_behind_a_held_claim(policy, kDepth, drops);
    const bool window_open = !g_claim_hook_left;

    const int drops_before = drops.load();
    const double cpu_before = thread_cpu_ms();
    const Clock::time_point start = Clock::now();
    const bool accepted = run.push(numbered_sample(kDepth));
    const double wall_ms = ms_between(start, Clock::now());
    const double cpu_ms = thread_cpu_ms() - cpu_before;
    const int drops_in_push = drops.load() - drops_before;

    while (!g_claim_hook_left) std::this_thread::sleep_for(1ms);
    if (!window_open) {
      // This machine was too slow to fill the ring within the window (only possible in theory with
      // a 150 ms window): the push said nothing about it. Try again.
      run.close_input();
      pull_until_closed(run);
      continue;
    }

    const std::vector<std::int64_t> frames = drain_frames(run, kPullTimeoutMs);
    const InputStats stats = run.input_stats();

    if (policy == OverflowPolicy::DropIncoming) {
      CHECK(accepted);  // the claimed slot was being freed: there was room
      CHECK_EQ(drops_in_push, 0);
    } else {
      CHECK(accepted);  // KeepLatest always takes the newest
      CHECK(drops_in_push <= 1);
    }
    // Waiting for a descheduled thread must park, not spin: a spinning push burns a core for the
    // whole window (and holds the GIL in Python).
    const double window_ms = std::chrono::duration<double, std::milli>(kClaimWindow).count();
    if (!(cpu_ms < 0.3 * window_ms)) {
      check::fail(__FILE__, __LINE__,
                  "the push used " + std::to_string(cpu_ms) + " ms of CPU in " + std::to_string(wall_ms) +
                      " ms waiting for a " + std::to_string(window_ms) + " ms claim window");
    }
    // One push per sample: every push was either enqueued or dropped, and every drop was reported.
    CHECK_EQ(stats.pushes, static_cast<std::uint64_t>(kDepth + 1));
    CHECK_EQ(stats.inputs_enqueued + stats.inputs_dropped, stats.pushes);
    CHECK_EQ(stats.inputs_dropped, static_cast<std::uint64_t>(drops.load()));
    CHECK_EQ(frames.size(), stats.inputs_enqueued);
    std::vector<std::int64_t> sorted = frames;
    std::sort(sorted.begin(), sorted.end());
    CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());
    CHECK(std::find(frames.begin(), frames.end(), kDepth) != frames.end());  // the newest went through
    CHECK(std::is_sorted(frames.begin(), frames.end()));                   // in push order
    return;
  }
  check::fail(__FILE__, __LINE__, "could not push while the dispatcher held its claim in 5 attempts");
}

// As above, but the calls that may not wait: try_push() answers at once (no room now, counted as a
// push failure, nothing dropped) and push_if_room() at its deadline, instead of sleeping out the
// window (with the GIL held, in Python).
void check_non_waiting_pushes_into_a_claim_window(OverflowPolicy policy) {
  constexpr int kDepth = 4;
  for (int attempt = 0; attempt < 5; ++attempt) {
    std::atomic<int> drops{0};
    HangGuard guard("a non-waiting push while the dispatcher holds a claimed slot", kHangLimit);
    Run run = run_behind_a_held_claim(policy, kDepth, drops);

    const Clock::time_point start = Clock::now();
    const bool accepted = run.try_push(numbered_sample(kDepth));
    const double try_ms = ms_between(start, Clock::now());
    Sample next = numbered_sample(kDepth + 1);
    const Clock::time_point start_if_room = Clock::now();
    const std::optional<bool> if_room = run.push_if_room(next, 10);
    const double if_room_ms = ms_between(start_if_room, Clock::now());
    const bool window_open = !g_claim_hook_left;
    while (!g_claim_hook_left) std::this_thread::sleep_for(1ms);
    run.close_input();
    const int pulled = pull_until_closed(run);
    if (!window_open) continue;  // too slow to stay inside the window: says nothing; try again

    const double window_ms = std::chrono::duration<double, std::milli>(kClaimWindow).count();
    CHECK(!accepted);
    CHECK(try_ms < 0.3 * window_ms);
    CHECK(!if_room.has_value());  // handed back, untouched and uncounted
    CHECK_EQ(next.frame_id, static_cast<std::int64_t>(kDepth + 1));
    CHECK(if_room_ms >= 9.0 && if_room_ms < 0.6 * window_ms);
    CHECK_EQ(drops.load(), 0);
    const InputStats stats = run.input_stats();
    CHECK_EQ(stats.pushes, static_cast<std::uint64_t>(kDepth + 1));
    CHECK_EQ(stats.push_failures, 1u);
    CHECK_EQ(pulled, kDepth);
    return;
  }
  check::fail(__FILE__, __LINE__, "could not push while the dispatcher held its claim in 5 attempts");
}

// A Run that nobody pulls, filled so that the dispatcher has no credit left and the input ring is
// full: `results` samples dispatched, then the ring's `depth`. Pushes one at a time, waiting for
// each dispatch, so that a KeepLatest fill evicts nothing.
void fill_without_drops(Run& run, int depth, int results) {
  for (int i = 0; i < results; ++i) {
    CHECK(run.push(numbered_sample(i)));
    while (run.stats().outputs_ready != static_cast<std::uint64_t>(i + 1)) std::this_thread::sleep_for(100us);
  }
  for (int i = results; i < results + depth; ++i) CHECK(run.push(numbered_sample(i)));
}

}  // namespace

TEST(destroying_a_run_releases_pushers_blocked_inside_it) { check_blocked_pushers_released(Ending::Destroy); }
TEST(stop_releases_pushers_blocked_inside_the_run) { check_blocked_pushers_released(Ending::Stop); }
TEST(stop_from_two_threads_releases_blocked_pushers) {
  check_blocked_pushers_released(Ending::StopFromTwoThreads);
}
TEST(destroying_a_run_releases_pullers_blocked_inside_it) { check_blocked_pullers_released(Ending::Destroy); }
TEST(stop_releases_pullers_blocked_inside_the_run) { check_blocked_pullers_released(Ending::Stop); }
TEST(stop_from_two_threads_releases_blocked_pullers) {
  check_blocked_pullers_released(Ending::StopFromTwoThreads);
}

// Pushers and pullers inside the same Run at once: pushers wait for room, pullers for a result that
// cannot come because the dispatcher is held in its claim window.
TEST(destroying_a_run_releases_pushers_and_pullers_waiting_on_a_held_dispatcher) {
  RunOptions options = depth_and_workers(1, 1);
  std::optional<Run> run(build_run_with_slow_claim(options));
  Run& shared = *run;
  HangGuard guard("pushers and pullers released while the dispatcher is held", kHangLimit);
  g_claim_hook_entered = false;
  g_claim_hook_left = false;
  g_claim_hook_armed = true;
  CHECK(shared.push(numbered_sample(0)));
  while (!g_claim_hook_entered) std::this_thread::sleep_for(100us);
  std::vector<Blocked> blocked(4);
  for (int t = 0; t < 4; ++t) {
    Blocked& b = blocked[t];
    b.start(use_wait_check(Ending::Destroy, t), [&shared, &b, t] {
      if (t < 2) {
        shared.push(numbered_sample(1 + t));
        b.outcome = Outcome::Returned;
      } else {
        b.outcome = shared.pull_with_status(-1).status == PullStatus::Closed ? Outcome::Closed : Outcome::Returned;
      }
    });
  }
  for (Blocked& b : blocked) b.wait_until_inside();
  const bool window_open = !g_claim_hook_left;
  bool all_inside = true;
  for (Blocked& b : blocked) all_inside = all_inside && b.outcome == Outcome::Inside;
  end_run(run, Ending::Destroy, blocked);
  if (!window_open) return;  // too slow a machine: the dispatcher moved on before the threads slept
  CHECK(all_inside);
  // The pushers' samples were not accepted (the queue of depth 1 was held) or were, and the
  // pullers saw end of stream; none of them may report anything else.
  for (int t = 0; t < 4; ++t) {
    const Outcome o = blocked[t].outcome;
    if (t < 2) {
      CHECK(o == Outcome::ClosedError || o == Outcome::Returned);
    } else {
      CHECK_EQ(o, Outcome::Closed);
    }
  }
}

TEST(keep_latest_evicts_at_most_one_sample_and_does_not_spin_while_the_dispatcher_holds_a_claim) {
  check_push_into_a_claim_window(OverflowPolicy::KeepLatest);
}

TEST(drop_incoming_accepts_a_push_into_a_slot_the_dispatcher_is_releasing) {
  check_push_into_a_claim_window(OverflowPolicy::DropIncoming);
}

TEST(try_push_and_push_if_room_do_not_wait_out_a_held_claim) {
  for (OverflowPolicy policy : {OverflowPolicy::Block, OverflowPolicy::KeepLatest, OverflowPolicy::DropIncoming}) {
    check_non_waiting_pushes_into_a_claim_window(policy);
  }
}

TEST(block_waits_without_spinning_while_the_dispatcher_holds_a_claim) {
  check_push_into_a_claim_window(OverflowPolicy::Block);
}

// On a Run that is really full (no credit left, input ring full, nothing claimed), each KeepLatest
// push evicts exactly one sample, the oldest waiting, and each DropIncoming push rejects its own.
TEST(on_a_really_full_run_each_push_drops_exactly_one_sample) {
  for (OverflowPolicy policy : {OverflowPolicy::KeepLatest, OverflowPolicy::DropIncoming}) {
    constexpr int kDepth = 3;
    RunOptions options = depth_and_workers(kDepth, 1);
    options.overflow_policy = policy;
    std::vector<DroppedInput> dropped;  // on_input_drop runs on the pushing thread: this one
    options.on_input_drop = [&dropped](const DroppedInput& d) { dropped.push_back(d); };
    Run run = build_run(options);
    const int results = static_cast<int>(run.capacity()) - kDepth;
    HangGuard guard("pushes into a full Run", kHangLimit);
    fill_without_drops(run, kDepth, results);
    CHECK(dropped.empty());

    constexpr int kExtra = 10;
    for (int i = 0; i < kExtra; ++i) {
      const int index = results + kDepth + i;
      const double cpu_before = thread_cpu_ms();
      const bool accepted = run.push(numbered_sample(index));
      CHECK(thread_cpu_ms() - cpu_before < 20.0);
      CHECK_EQ(dropped.size(), static_cast<std::size_t>(i + 1));
      const DroppedInput& d = dropped.back();
      if (policy == OverflowPolicy::KeepLatest) {
        CHECK(accepted);
        CHECK_EQ(d.reason, DropReason::Evicted);
        CHECK_EQ(d.frame_id, static_cast<std::int64_t>(results + i));  // the oldest waiting
        CHECK_EQ(d.input_seq, static_cast<std::uint64_t>(results + i));
      } else {
        CHECK(!accepted);
        CHECK_EQ(d.reason, DropReason::QueueFull);
        CHECK_EQ(d.frame_id, static_cast<std::int64_t>(index));  // its own
      }
    }
    const InputStats stats = run.input_stats();
    CHECK_EQ(stats.pushes, static_cast<std::uint64_t>(results + kDepth + kExtra));
    CHECK_EQ(stats.inputs_dropped, static_cast<std::uint64_t>(kExtra));
    CHECK_EQ(stats.inputs_enqueued + stats.inputs_dropped, stats.pushes);

    const std::vector<std::int64_t> frames = drain_frames(run, kPullTimeoutMs);
    std::vector<std::int64_t> expected;
    for (int i = 0; i < results; ++i) expected.push_back(i);
    const int first_kept = policy == OverflowPolicy::KeepLatest ? results + kExtra : results;
    for (int i = first_kept; i < first_kept + kDepth; ++i) expected.push_back(i);
    CHECK_EQ(frames, expected);
  }
}

// ---- end of stream -------------------------------------------------------------------------------

namespace {

struct PullerLog {
  std::vector<std::int64_t> frames;
  bool closed = false;
  std::string error;
};

// Four pullers wait in pull(-1) before anything is pushed; two pushers push, then the input is
// closed. Every result must be pulled exactly once, and every puller must then see Closed: a lost
// "closed and drained" wake-up leaves a puller waiting forever (HangGuard).
void check_end_of_stream_under_many_pullers(const RunOptions& options, const char* what) {
  constexpr int kPullers = 4;
  constexpr int kPushers = 2;
  const int rounds = iterations(300, 60);
  const auto budget = std::chrono::seconds(kThreadSanitizer ? 40 : 15);
  HangGuard guard(std::string("end of stream with many pullers, ") + what, std::chrono::seconds(120));
  const Clock::time_point start = Clock::now();
  int round = 0;
  for (; round < rounds && (round < 10 || Clock::now() - start < budget); ++round) {
    const int per_pusher = round % 17;  // 0 included: close_input on a Run that never saw a sample
    Run run = build_run(options);
    std::vector<PullerLog> logs(kPullers);
    std::atomic<int> pullers_started{0};
    std::vector<std::thread> threads;
    for (int p = 0; p < kPullers; ++p) {
      threads.emplace_back([&run, &logs, &pullers_started, p] {
        PullerLog& log = logs[p];
        pullers_started.fetch_add(1);
        try {
          for (;;) {
            PullResult r = run.pull_with_status(-1);
            if (r.status == PullStatus::Ok) {
              log.frames.push_back(r.sample->frame_id);
            } else if (r.status == PullStatus::Closed) {
              log.closed = true;
              // End of stream is final: a later pull says so at once.
              if (run.pull_with_status(-1).status != PullStatus::Closed) log.error = "Closed, then not Closed";
              return;
            } else {
              log.error = std::string("pull returned ") + pull_status_name(r.status) + ": " + r.error;
              return;
            }
          }
        } catch (const std::exception& e) {
          log.error = e.what();
        }
      });
    }
    // Usually the pullers are already waiting; every few rounds the pushes race their start.
    if (round % 4 != 0) {
      while (pullers_started.load() != kPullers) std::this_thread::yield();
      std::this_thread::sleep_for(std::chrono::microseconds(200 * (round % 3)));
    }
    std::vector<std::string> push_errors(kPushers);
    std::vector<std::thread> pushers;
    for (int q = 0; q < kPushers; ++q) {
      pushers.emplace_back([&run, &push_errors, q, per_pusher] {
        try {
          for (int i = 0; i < per_pusher; ++i) run.push(numbered_sample(q * 1000 + i));
        } catch (const std::exception& e) {
          push_errors[q] = e.what();
        }
      });
    }
    for (std::thread& t : pushers) t.join();
    run.close_input();
    for (std::thread& t : threads) t.join();

    std::vector<std::int64_t> all;
    for (const PullerLog& log : logs) {
      CHECK_EQ(log.error, "");
      CHECK(log.closed);
      all.insert(all.end(), log.frames.begin(), log.frames.end());
    }
    for (const std::string& e : push_errors) CHECK_EQ(e, "");
    std::sort(all.begin(), all.end());
    std::vector<std::int64_t> expected;
    for (int q = 0; q < kPushers; ++q) {
      for (int i = 0; i < per_pusher; ++i) expected.push_back(q * 1000 + i);
    }
    std::sort(expected.begin(), expected.end());
    CHECK_EQ(all, expected);  // each exactly once
    const RunStats stats = run.stats();
    CHECK_EQ(stats.outputs_pulled, expected.size());
    CHECK_EQ(run.pull_with_status(0).status, PullStatus::Closed);
  }
  CHECK(round >= 10);
}

RunOptions eos_options(std::size_t depth, int workers, bool ordered, int max_batch) {
  RunOptions options = depth_and_workers(depth, workers);
  options.ordered = ordered;
  options.max_batch = max_batch;
  options.max_delay_us = max_batch > 1 ? 200 : 0;
  return options;
}

}  // namespace

TEST(end_of_stream_reaches_every_puller_once_all_results_are_pulled) {
  check_end_of_stream_under_many_pullers(eos_options(2, 1, true, 1), "1 worker, ordered");
}
TEST(end_of_stream_reaches_every_puller_with_two_unordered_workers) {
  check_end_of_stream_under_many_pullers(eos_options(2, 2, false, 1), "2 workers, unordered");
}
TEST(end_of_stream_reaches_every_puller_with_batching) {
  check_end_of_stream_under_many_pullers(eos_options(3, 2, true, 4), "2 workers, batches of 4");
}

// ---- stop() ------------------------------------------------------------------------------------------

// stop() from another thread wakes a wait_all() that waits for results nobody will deliver.
TEST(stop_wakes_a_thread_waiting_in_wait_all) {
  std::optional<Run> run(build_run(depth_and_workers(4, 1)));
  for (int i = 0; i < 3; ++i) CHECK(run->push(numbered_sample(i)));  // never pulled
  HangGuard guard("wait_all() while another thread stops the Run", kHangLimit);
  std::atomic<bool> returned{false};
  bool all_delivered = true;
  std::thread waiter([&] {
    all_delivered = run->wait_all(-1);
    returned = true;
  });
  std::this_thread::sleep_for(50ms);
  CHECK(!returned.load());
  run->stop();
  waiter.join();
  CHECK(!all_delivered);
}

TEST(after_stop_push_throws_pull_says_closed_and_stop_is_idempotent) {
  for (bool ordered : {true, false}) {
    for (OutputMemory memory : {OutputMemory::Owned, OutputMemory::Pooled}) {
      RunOptions options = depth_and_workers(4, 2);
      options.ordered = ordered;
      options.output_memory = memory;
      std::optional<Sample> kept;
      {
        Run run = build_run(options);
        HangGuard guard("stop() semantics", kHangLimit);
        constexpr int kPushed = 6;
        for (int i = 0; i < kPushed; ++i) CHECK(run.push(numbered_sample(i)));
        while (run.stats().outputs_ready != kPushed) std::this_thread::sleep_for(1ms);
        kept = run.pull(kPullTimeoutMs);
        CHECK(kept.has_value());

        run.stop();  // five results are never pulled: discarded, and freed (LeakSanitizer)
        CHECK_THROWS_WITH(run.push(numbered_sample(100)), ClosedError, "stop()");
        CHECK_THROWS(run.try_push(numbered_sample(101)), ClosedError);
        Sample sample = numbered_sample(102);
        CHECK_THROWS(run.push_if_room(sample, 10), ClosedError);
        CHECK_EQ(run.pull_with_status(-1).status, PullStatus::Closed);
        CHECK_EQ(run.pull_with_status(0).status, PullStatus::Closed);
        CHECK(!run.pull(-1).has_value());
        run.stop();
        run.stop();
        run.close_input();
        CHECK_EQ(run.pull_with_status(-1).status, PullStatus::Closed);
        // run() too, although the discarded results were never pulled (not "needs an idle Run").
        CHECK_THROWS_WITH(run.run({mlp_input(103)}, kPullTimeoutMs), ClosedError, "stop()");

        const RunStats stats = run.stats();
        CHECK_EQ(stats.outputs_pulled, 1u);
        CHECK_EQ(stats.input.pushes, static_cast<std::uint64_t>(kPushed + 3));
        CHECK_EQ(stats.input.inputs_enqueued, static_cast<std::uint64_t>(kPushed));
      }  // destroyed after stop(): nothing left to wait for
      // A result pulled before the Run's end outlives it, pooled buffer included (AddressSanitizer).
      CHECK(same_outputs(*kept, tiny_mlp().run({mlp_input(kept->frame_id)})));
    }
  }
}

TEST(stop_on_an_idle_run_makes_run_throw_closed_error) {
  Run run = build_run();
  CHECK(same_outputs(run.run({mlp_input(1)}, kPullTimeoutMs), tiny_mlp().run({mlp_input(1)})));
  run.stop();
  CHECK_THROWS(run.run({mlp_input(2)}, kPullTimeoutMs), ClosedError);
}

// Destroyed without stop() or close_input(), with results waiting, samples queued and inferences
// in flight, over and over: nothing may leak or be touched after it is freed (AddressSanitizer).
TEST(destroying_busy_runs_discards_their_results_without_leaks) {
  HangGuard guard("destroying busy Runs", kHangLimit);
  for (int round = 0; round < 20; ++round) {
    RunOptions options = depth_and_workers(3, 1 + round % 3);
    options.ordered = round % 2 == 0;
    options.output_memory = round % 4 < 2 ? OutputMemory::Owned : OutputMemory::Pooled;
    options.max_batch = round % 5 == 0 ? 4 : 1;
    options.overflow_policy = OverflowPolicy::KeepLatest;
    Run run = build_run(options);
    for (int i = 0; i < 2 * static_cast<int>(run.capacity()); ++i) run.push(numbered_sample(i));
    if (round % 3 == 0) run.pull(kPullTimeoutMs);
  }
}

// ---- fork() ------------------------------------------------------------------------------------------

namespace {

// Given a Run and its Model made before fork(), in the child: every use must throw
// ringflow::Error naming fork. Returns 0, or the number of the first check that failed.
int check_refused_in_forked_child(Run& run, const Model& model) {
  int check = 0;
  const auto refused = [&check](const std::function<void()>& use) {
    ++check;
    try {
      use();
    } catch (const Error& e) {
      if (std::string(e.what()).find("fork") != std::string::npos) return true;
      std::fprintf(stderr, "child check %d: Error without 'fork': %s\n", check, e.what());
      return false;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child check %d: not a ringflow::Error: %s\n", check, e.what());
      return false;
    }
    std::fprintf(stderr, "child check %d: did not throw\n", check);
    return false;
  };
  if (!refused([&] { run.push({mlp_input(1)}); })) return check;
  if (!refused([&] { run.try_push({mlp_input(2)}); })) return check;
  if (!refused([&] { run.pull(0); })) return check;
  if (!refused([&] { run.pull_with_status(-1); })) return check;
  if (!refused([&] { run.run({mlp_input(3)}, 1000); })) return check;
  if (!refused([&] { run.close_input(); })) return check;
  if (!refused([&] { model.run({mlp_input(4)}); })) return check;
  run.stop();  // nothing to stop in the child: returns at once
  return 0;
}

}  // namespace

TEST(a_run_used_in_a_forked_child_throws_and_the_child_exits_cleanly) {
  // The test's own Model, so that the child can drop its last handle to it.
  std::optional<Model> model(std::in_place, builtin_models().tiny_mlp);
  std::optional<Run> run(
      Graph().add(model->graph()).build(std::vector<Tensor>{mlp_input(0)}, depth_and_workers(2, 2)));
  CHECK(run->push({mlp_input(0)}));
  CHECK(run->pull(kPullTimeoutMs).has_value());  // the engine's threads are up and have worked
  HangGuard guard("a forked child and its exit", kHangLimit);

  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t child = ::fork();
  CHECK(child >= 0);
  if (child == 0) {
    int status = 99;
    try {
      status = check_refused_in_forked_child(*run, *model);
      // ~Run and ~Model in the child: the parent's threads are not here, so they must neither join
      // them nor wait for them.
      run.reset();
      model.reset();
    } catch (...) {
      status = 98;
    }
    if (status != 0) std::_Exit(status);
    // A normal exit: exit handlers and static destructors, ONNX Runtime's among them, which wait
    // forever for the parent's threads unless ringflow ends the child before them.
    std::exit(0);
  }

  int status = 0;
  const Clock::time_point deadline = Clock::now() + 20s;
  pid_t waited = 0;
  while ((waited = ::waitpid(child, &status, WNOHANG)) == 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  if (waited == 0) {
    ::kill(child, SIGKILL);
    ::waitpid(child, &status, 0);
    check::fail(__FILE__, __LINE__, "the forked child did not exit within 20 s (hung at exit?)");
  }
  CHECK_EQ(waited, child);
  CHECK(WIFEXITED(status));
  CHECK_EQ(WEXITSTATUS(status), 0);

  // The parent's Run is untouched by the child.
  CHECK(run->push({mlp_input(5)}));
  const std::optional<Sample> result = run->pull(kPullTimeoutMs);
  CHECK(result.has_value());
  CHECK(same_outputs(*result, tiny_mlp().run({mlp_input(5)})));
}

int main(int argc, char** argv) { return check::run_all(argc, argv); }

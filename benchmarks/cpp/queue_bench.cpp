// queue_bench: ringflow's lock-free ring against a mutex + condition-variable bounded queue.
//
// A trial moves a fixed number of 64-bit items from P producer threads to C consumer threads
// through one bounded queue and reports hops per second (items handed over per second, from the
// start signal until the last consumer has finished). Contenders:
//
//   ring-spin  RingBuffer, try_push/try_pop retried with cpu_relax(). The lock-free ceiling, but a
//              thread that cannot make progress keeps its core: no engine thread waits this way.
//   ring-park  RingBuffer plus an EventCount for "not empty" and one for "not full", spin then park,
//              exactly as the engine's stages wait and wake each other.
//   mutex-cv   std::deque under one mutex with two condition variables: the textbook bounded queue
//              of a hand-rolled thread pool.
//
// ring-park against mutex-cv is the fair comparison: both put a thread to sleep when it must wait.
// Every trial builds a fresh queue and fresh threads, outside the timed region. Repeats interleave
// the contenders, so a slow phase of a shared machine hurts them all rather than one. Rates differ
// a hundredfold between contenders and with machine load, so a short pilot trial sizes each
// contender's trials to take about the same time.
//
// Items carry their producer and sequence number; consumers check the per-producer order, and the
// count and sum of everything consumed are checked after each trial. A mismatch ends the program.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"
#include "event_count.hpp"
#include "ring_buffer.hpp"

namespace {

using ringflow::Clock;

constexpr const char* kUsage = R"(usage: queue_bench [--items N] [--repeats R] [--quick] [--json]

  --items N    most items per trial (default 5000000); each contender moves as many as it can
               in about 0.3 s, judged from a 50000-item pilot trial, and at least the pilot's
  --repeats R  trials per contender and scenario (default 5), interleaved across contenders
  --quick      a smoke run: 5000 items, no pilot, 1 repeat
  --json       the table goes to stderr, one JSON object with every trial to stdout
)";

constexpr std::uint64_t kPilotItems = 50'000;
constexpr double kTrialSeconds = 0.3;

// Items are (seq << kProducerBits) | producer; kStop, never a valid item, tells a consumer to quit.
constexpr int kProducerBits = 8;
constexpr std::uint64_t kStop = UINT64_MAX;

class SpinningRing {
 public:
  explicit SpinningRing(std::size_t capacity) : ring_(capacity) {}

  void push(std::uint64_t item) {
    while (!ring_.try_push(item)) ringflow::cpu_relax();
  }
  std::uint64_t pop() {
    std::uint64_t item = 0;
    while (!ring_.try_pop(item)) ringflow::cpu_relax();
    return item;
  }

 private:
  ringflow::RingBuffer<std::uint64_t> ring_;
};

// The engine's hand-off (see run.cpp): try first, wait on the EventCount only when that fails, and
// after every successful move tell the other side, which costs one atomic RMW when nobody sleeps.
class ParkingRing {
 public:
  explicit ParkingRing(std::size_t capacity) : ring_(capacity) {}

  void push(std::uint64_t item) {
    if (!ring_.try_push(item)) {
      not_full_.wait_until([&] { return ring_.try_push(item); }, Clock::time_point::max());
    }
    not_empty_.notify_all();
  }
  std::uint64_t pop() {
    std::uint64_t item = 0;
    if (!ring_.try_pop(item)) {
      not_empty_.wait_until([&] { return ring_.try_pop(item); }, Clock::time_point::max());
    }
    not_full_.notify_all();
    return item;
  }

 private:
  ringflow::RingBuffer<std::uint64_t> ring_;
  ringflow::EventCount not_empty_;
  ringflow::EventCount not_full_;
};

// The baseline, written the way most thread pools write it: notify after unlocking, so the woken
// thread does not immediately block on the mutex the notifier still holds.
class MutexQueue {
 public:
  explicit MutexQueue(std::size_t capacity) : capacity_(capacity) {}

  void push(std::uint64_t item) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      not_full_.wait(lock, [&] { return items_.size() < capacity_; });
      items_.push_back(item);
    }
    not_empty_.notify_one();
  }
  std::uint64_t pop() {
    std::uint64_t item = 0;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      not_empty_.wait(lock, [&] { return !items_.empty(); });
      item = items_.front();
      items_.pop_front();
    }
    not_full_.notify_one();
    return item;
  }

 private:
  const std::size_t capacity_;
  std::mutex mutex_;
  std::condition_variable not_empty_;
  std::condition_variable not_full_;
  std::deque<std::uint64_t> items_;
};

struct Scenario {
  std::string name;
  int producers;
  int consumers;
  std::size_t capacity;
};

// What one consumer saw, kept in the consumer's locals and stored once it is done.
struct Tally {
  std::uint64_t count = 0;
  std::uint64_t sum = 0;
  bool in_order = true;  // every producer's items arrived with increasing sequence numbers
};

[[noreturn]] void fail(const std::string& message) {
  std::cerr << "queue_bench: " << message << "\n";
  std::exit(1);
}

// Seconds to move `items` from the scenario's producers to its consumers through a fresh Queue.
template <typename Queue>
double trial(const Scenario& s, std::uint64_t items) {
  Queue queue(s.capacity);
  std::atomic<bool> go{false};
  std::atomic<int> producers_running{s.producers};
  std::vector<Tally> tallies(s.consumers);
  std::vector<std::thread> threads;

  // Yield rather than spin at the start line: on a small machine the threads outnumber the cores.
  const auto wait_for_start = [&] {
    while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
  };
  for (int c = 0; c < s.consumers; ++c) {
    threads.emplace_back([&, c] {
      wait_for_start();
      Tally tally;
      std::vector<std::uint64_t> next_seq(s.producers, 0);
      for (std::uint64_t item; (item = queue.pop()) != kStop;) {
        const std::uint64_t producer = item & ((1u << kProducerBits) - 1);
        const std::uint64_t seq = item >> kProducerBits;
        if (producer >= next_seq.size() || seq < next_seq[producer]) {
          tally.in_order = false;
        } else {
          next_seq[producer] = seq + 1;
        }
        ++tally.count;
        tally.sum += item;
      }
      tallies[c] = tally;
    });
  }
  std::uint64_t expected_sum = 0;
  for (int p = 0; p < s.producers; ++p) {
    const std::uint64_t share = items / s.producers + (static_cast<std::uint64_t>(p) < items % s.producers);
    for (std::uint64_t seq = 0; seq < share; ++seq) expected_sum += (seq << kProducerBits) | p;
    threads.emplace_back([&, p, share] {
      wait_for_start();
      for (std::uint64_t seq = 0; seq < share; ++seq) queue.push((seq << kProducerBits) | p);
      // The last producer out tells every consumer to stop; items before the stops are all taken.
      if (producers_running.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        for (int c = 0; c < s.consumers; ++c) queue.push(kStop);
      }
    });
  }

  const Clock::time_point start = Clock::now();
  go.store(true, std::memory_order_release);
  for (std::thread& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();

  std::uint64_t count = 0, sum = 0;
  for (const Tally& t : tallies) {
    if (!t.in_order) fail(s.name + ": a consumer saw a producer's items out of order");
    count += t.count;
    sum += t.sum;
  }
  if (count != items || sum != expected_sum) {
    fail(s.name + ": consumed " + std::to_string(count) + " items summing to " + std::to_string(sum) +
         ", expected " + std::to_string(items) + " summing to " + std::to_string(expected_sum));
  }
  return seconds;
}

struct Contender {
  const char* name;
  double (*run_trial)(const Scenario&, std::uint64_t);
  std::uint64_t items = 0;         // per trial
  std::vector<double> hops_per_s;  // one per repeat
};

// Items for each of a contender's trials: about kTrialSeconds' worth at the rate a pilot trial
// reached, between the pilot's size and `max_items`.
std::uint64_t trial_items(const Contender& c, const Scenario& s, std::uint64_t max_items) {
  if (max_items <= kPilotItems) return max_items;
  const double rate = kPilotItems / c.run_trial(s, kPilotItems);
  return std::clamp(static_cast<std::uint64_t>(rate * kTrialSeconds), kPilotItems, max_items);
}

double min_of(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }
double max_of(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }

struct Measured {
  Scenario scenario;
  std::vector<Contender> contenders;  // ring-spin, ring-park, mutex-cv

  double median(int i) const { return bench::median(contenders[i].hops_per_s); }
  bool oversubscribed(unsigned cores) const {
    return static_cast<unsigned>(scenario.producers + scenario.consumers) > cores;
  }
};

Measured measure(const Scenario& scenario, std::uint64_t max_items, int repeats) {
  Measured m{scenario,
             {{"ring-spin", &trial<SpinningRing>, 0, {}},
              {"ring-park", &trial<ParkingRing>, 0, {}},
              {"mutex-cv", &trial<MutexQueue>, 0, {}}}};
  for (Contender& c : m.contenders) c.items = trial_items(c, scenario, max_items);
  for (int r = 0; r < repeats; ++r) {
    for (Contender& c : m.contenders) c.hops_per_s.push_back(c.items / c.run_trial(scenario, c.items));
  }
  return m;
}

// Where the benchmark ran: numbers from a shared machine mean little without its load.
struct Machine {
  unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  double load_average = -1;  // over the last minute, before the first trial; negative if unknown

  Machine() {
    std::ifstream in("/proc/loadavg");
    if (!(in >> load_average)) load_average = -1;
  }
};

std::string table(const std::vector<Measured>& all, int repeats, const Machine& machine) {
  const unsigned cores = machine.cores;
  std::ostringstream out;
  char line[256];
  out << "queue_bench: Mhops/s, median [min-max] of " << repeats << " repeat" << (repeats == 1 ? "" : "s")
      << ", " << cores << " hardware threads";
  if (machine.load_average >= 0) out << ", load average " << machine.load_average << " before the run";
  out << "\n";
  std::snprintf(line, sizeof line, "%-12s %-22s %-22s %-22s %10s %10s\n", "scenario", "ring-spin", "ring-park",
                "mutex-cv", "spin/mutex", "park/mutex");
  out << line;
  bool any_oversubscribed = false;
  for (const Measured& m : all) {
    std::string cells[3];
    for (int i = 0; i < 3; ++i) {
      const std::vector<double>& v = m.contenders[i].hops_per_s;
      std::snprintf(line, sizeof line, "%.2f [%.2f-%.2f]", m.median(i) / 1e6, min_of(v) / 1e6, max_of(v) / 1e6);
      cells[i] = line;
    }
    const bool over = m.oversubscribed(cores);
    any_oversubscribed = any_oversubscribed || over;
    std::snprintf(line, sizeof line, "%-12s %-22s %-22s %-22s %9.2fx %9.2fx\n",
                  (m.scenario.name + (over ? "*" : "")).c_str(), cells[0].c_str(), cells[1].c_str(),
                  cells[2].c_str(), m.median(0) / m.median(2), m.median(1) / m.median(2));
    out << line;
  }
  if (any_oversubscribed) {
    out << "* more threads than hardware threads: oversubscribed, so a spinning thread can burn a whole\n"
           "  time slice waiting for one that is not running; ring-spin suffers most.\n";
  }
  return out.str();
}

std::string json(const std::vector<Measured>& all, int repeats, const Machine& machine) {
  using bench::json_number;
  const unsigned cores = machine.cores;
  std::ostringstream out;
  out << "{\"benchmark\":\"queue_bench\",\"unit\":\"hops_per_s\",\"hardware_threads\":" << cores
      << ",\"load_average\":" << (machine.load_average >= 0 ? json_number(machine.load_average) : "null")
      << ",\"repeats\":" << repeats << ",\"scenarios\":[";
  for (std::size_t s = 0; s < all.size(); ++s) {
    const Measured& m = all[s];
    out << (s ? "," : "") << "{\"name\":\"" << m.scenario.name << "\",\"producers\":" << m.scenario.producers
        << ",\"consumers\":" << m.scenario.consumers << ",\"capacity\":" << m.scenario.capacity
        << ",\"oversubscribed\":" << (m.oversubscribed(cores) ? "true" : "false") << ",\"contenders\":{";
    for (int i = 0; i < 3; ++i) {
      const Contender& c = m.contenders[i];
      out << (i ? "," : "") << "\"" << c.name << "\":{\"items\":" << c.items << ",\"runs\":[";
      for (std::size_t r = 0; r < c.hops_per_s.size(); ++r) out << (r ? "," : "") << json_number(c.hops_per_s[r]);
      out << "],\"median\":" << json_number(m.median(i)) << ",\"min\":" << json_number(min_of(c.hops_per_s))
          << ",\"max\":" << json_number(max_of(c.hops_per_s)) << "}";
    }
    out << "},\"ratio\":{\"ring-spin/mutex-cv\":" << json_number(m.median(0) / m.median(2))
        << ",\"ring-park/mutex-cv\":" << json_number(m.median(1) / m.median(2)) << "}}";
  }
  out << "]}";
  return out.str();
}

}  // namespace

int main(int argc, char** argv) {
  if (bench::asks_for_help(argc, argv)) {
    std::cout << kUsage;
    return 0;
  }
  std::uint64_t items = 0;
  int repeats = 0;
  bool as_json = false;
  try {
    const bench::Flags flags(argc, argv, {"--items", "--repeats"}, {"--quick", "--json"});
    const bool quick = flags.has("--quick");
    items = static_cast<std::uint64_t>(flags.integer("--items", quick ? 5'000 : 5'000'000, 1));
    repeats = static_cast<int>(flags.integer("--repeats", quick ? 1 : 5, 1));
    as_json = flags.has("--json");
  } catch (const std::exception& e) {
    fail(e.what());
  }

  // 1x1 is the single-producer, single-consumer case: ringflow has one ring, MPMC-safe, for both.
  const std::vector<Scenario> scenarios = {
      {"1x1/1024", 1, 1, 1024},
      {"1x1/64", 1, 1, 64},
      {"2x2/1024", 2, 2, 1024},
      {"2x2/64", 2, 2, 64},
  };
  const Machine machine;
  std::vector<Measured> all;
  for (const Scenario& s : scenarios) all.push_back(measure(s, items, repeats));

  (as_json ? std::cerr : std::cout) << table(all, repeats, machine);
  if (as_json) std::cout << json(all, repeats, machine) << std::endl;
  return 0;
}

// ReorderBuffer under contention: producers put dense ordinals in a scrambled order, as a stage's
// threads finish samples out of order, and consumers take them. Ordinals are handed out only with a
// credit, as a Run does, so every put is within one capacity of the take cursor. Every ordinal
// must be taken exactly once, each consumer must see rising ordinals, a lone consumer must see
// exactly 0, 1, 2, ..., and no payload may be torn. Under ThreadSanitizer (RINGFLOW_TSAN) the
// handoff's orderings are checked too.
#include <atomic>
#include <cstdint>
#include <random>
#include <thread>
#include <vector>

#include "check.hpp"
#include "reorder_buffer.hpp"
#include "tsan.hpp"

namespace {

// A payload with heap memory: a torn or duplicated move shows as a wrong checksum or a crash under
// AddressSanitizer.
struct Payload {
  std::uint64_t ordinal = 0;
  std::vector<std::uint64_t> words;
};

Payload make_payload(std::uint64_t ordinal) {
  Payload p;
  p.ordinal = ordinal;
  p.words.assign(1 + ordinal % 5, ordinal * 2654435761u);
  return p;
}

bool intact(const Payload& p) {
  if (p.words.size() != 1 + p.ordinal % 5) return false;
  for (std::uint64_t w : p.words) {
    if (w != p.ordinal * 2654435761u) return false;
  }
  return true;
}

struct ConsumerLog {
  std::uint64_t taken = 0;
  std::uint64_t not_rising = 0;
  std::uint64_t torn = 0;
  std::vector<std::uint64_t> ordinals;  // kept only for a lone consumer
};

void stress(unsigned producers, unsigned consumers, std::size_t capacity, std::uint64_t total) {
  ringflow::ReorderBuffer<Payload> buffer(capacity);
  std::atomic<std::int64_t> credits{static_cast<std::int64_t>(capacity)};
  std::atomic<std::uint64_t> next_ordinal{0};
  std::atomic<std::uint64_t> taken{0};
  std::vector<std::atomic<std::uint32_t>> deliveries(total);
  std::vector<ConsumerLog> logs(consumers);

  std::vector<std::thread> threads;
  for (unsigned p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      std::minstd_rand rng(p + 1);
      for (;;) {
        std::int64_t free = credits.load(std::memory_order_relaxed);
        if (free <= 0 || !credits.compare_exchange_weak(free, free - 1, std::memory_order_acquire)) {
          if (taken.load(std::memory_order_relaxed) >= total) return;
          std::this_thread::yield();
          continue;
        }
        const std::uint64_t ordinal = next_ordinal.fetch_add(1, std::memory_order_relaxed);
        if (ordinal >= total) {
          credits.fetch_add(1, std::memory_order_release);
          return;
        }
        // Finish out of order: some producers linger before putting.
        if (rng() % 4 == 0) std::this_thread::yield();
        buffer.put(ordinal, make_payload(ordinal));
      }
    });
  }
  for (unsigned c = 0; c < consumers; ++c) {
    threads.emplace_back([&, c] {
      ConsumerLog& log = logs[c];
      std::int64_t last = -1;
      Payload p;
      while (taken.load(std::memory_order_relaxed) < total) {
        if (!buffer.try_take(p)) {
          std::this_thread::yield();
          continue;
        }
        if (!intact(p)) ++log.torn;
        if (static_cast<std::int64_t>(p.ordinal) <= last) ++log.not_rising;
        last = static_cast<std::int64_t>(p.ordinal);
        if (p.ordinal < total) deliveries[p.ordinal].fetch_add(1, std::memory_order_relaxed);
        if (consumers == 1) log.ordinals.push_back(p.ordinal);
        ++log.taken;
        taken.fetch_add(1, std::memory_order_relaxed);
        credits.fetch_add(1, std::memory_order_release);
      }
    });
  }
  for (std::thread& t : threads) t.join();

  std::uint64_t sum = 0;
  for (const ConsumerLog& log : logs) {
    CHECK_EQ(log.torn, 0u);
    CHECK_EQ(log.not_rising, 0u);
    sum += log.taken;
  }
  CHECK_EQ(sum, total);
  std::uint64_t wrong = 0;
  for (auto& d : deliveries) wrong += d.load() != 1;
  CHECK_EQ(wrong, 0u);
  if (consumers == 1) {
    for (std::uint64_t i = 0; i < total; ++i) {
      if (logs[0].ordinals[i] != i) CHECK_EQ(logs[0].ordinals[i], i);
    }
  }
  CHECK_EQ(buffer.next(), total);
}

const std::uint64_t kItems = iterations<std::uint64_t>(200000, 20000);

}  // namespace

TEST(one_producer_one_consumer_capacity_1) { stress(1, 1, 1, kItems / 4); }
TEST(four_producers_one_consumer_capacity_3_gives_exact_order) { stress(4, 1, 3, kItems); }
TEST(four_producers_one_consumer_capacity_8_gives_exact_order) { stress(4, 1, 8, kItems); }
TEST(three_producers_three_consumers_capacity_2) { stress(3, 3, 2, kItems); }
TEST(four_producers_two_consumers_capacity_16) { stress(4, 2, 16, kItems); }

TEST(take_on_an_empty_buffer_or_a_hole_returns_false) {
  ringflow::ReorderBuffer<Payload> buffer(4);
  Payload p;
  CHECK(!buffer.try_take(p));
  buffer.put(1, make_payload(1));  // ordinal 0 is still missing
  CHECK(!buffer.try_take(p));
  buffer.put(0, make_payload(0));
  CHECK(buffer.try_take(p));
  CHECK_EQ(p.ordinal, 0u);
  CHECK(buffer.try_take(p));
  CHECK_EQ(p.ordinal, 1u);
  CHECK(!buffer.try_take(p));
  CHECK_EQ(buffer.next(), 2u);
}

int main(int argc, char** argv) { return check::run_all(argc, argv); }

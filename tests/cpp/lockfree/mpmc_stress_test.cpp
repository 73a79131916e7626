// RingBuffer under contention: producers and consumers hammer a small buffer, so it is full or empty
// most of the time, and every item must still arrive exactly once and in per-producer order.
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "check.hpp"
#include "ringflow/ring_buffer.hpp"
#include "tsan.hpp"

namespace {

struct Item {
  std::uint32_t producer;
  std::uint32_t seq;
};

// What one consumer saw. Written only by that consumer, read by the test after join().
struct ConsumerLog {
  std::uint64_t out_of_order = 0;  // an item whose seq is not above the last from its producer
  std::uint64_t corrupt = 0;       // an item naming a producer or seq that was never pushed
};

void stress(std::uint32_t producers, std::uint32_t consumers, std::size_t capacity,
            std::uint32_t total_items) {
  const std::uint32_t per_producer = total_items / producers;
  const std::uint64_t total = std::uint64_t{per_producer} * producers;
  ringflow::RingBuffer<Item> ring(capacity);
  std::vector<std::atomic<std::uint32_t>> deliveries(total);  // by producer * per_producer + seq
  std::atomic<std::uint64_t> consumed{0};
  std::vector<ConsumerLog> logs(consumers);

  std::vector<std::thread> threads;
  for (std::uint32_t p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      for (std::uint32_t seq = 0; seq < per_producer; ++seq) {
        Item item{p, seq};
        while (!ring.try_push(item)) std::this_thread::yield();
      }
    });
  }
  for (std::uint32_t c = 0; c < consumers; ++c) {
    threads.emplace_back([&, c] {
      ConsumerLog& log = logs[c];
      std::vector<std::int64_t> last_seq(producers, -1);
      while (consumed.load(std::memory_order_relaxed) < total) {
        Item item{};
        if (!ring.try_pop(item)) {
          std::this_thread::yield();
          continue;
        }
        consumed.fetch_add(1, std::memory_order_relaxed);
        if (item.producer >= producers || item.seq >= per_producer) {
          ++log.corrupt;
          continue;
        }
        if (static_cast<std::int64_t>(item.seq) <= last_seq[item.producer]) ++log.out_of_order;
        last_seq[item.producer] = item.seq;
        deliveries[std::uint64_t{item.producer} * per_producer + item.seq].fetch_add(
            1, std::memory_order_relaxed);
      }
    });
  }
  for (std::thread& t : threads) t.join();

  std::uint64_t not_exactly_once = 0;
  for (const auto& count : deliveries) not_exactly_once += count.load() != 1;
  std::uint64_t out_of_order = 0;
  std::uint64_t corrupt = 0;
  for (const ConsumerLog& log : logs) {
    out_of_order += log.out_of_order;
    corrupt += log.corrupt;
  }
  CHECK_EQ(consumed.load(), total);
  CHECK_EQ(corrupt, 0u);
  CHECK_EQ(not_exactly_once, 0u);
  CHECK_EQ(out_of_order, 0u);
  Item leftover{};
  CHECK(!ring.try_pop(leftover));
}

const std::uint32_t kItems = iterations(200000u, 50000u);

}  // namespace

TEST(one_producer_one_consumer) { stress(1, 1, 4, kItems); }
TEST(four_producers_one_consumer) { stress(4, 1, 4, kItems); }
TEST(one_producer_four_consumers) { stress(1, 4, 4, kItems); }
TEST(four_producers_four_consumers) { stress(4, 4, 4, kItems); }
// The smallest buffer the turn scheme can run: every slot is reused every other ticket.
TEST(four_producers_four_consumers_two_slots) { stress(4, 4, 2, kItems); }
// Rarely full: producers and consumers race on the counters rather than on a full/empty slot.
TEST(four_producers_four_consumers_roomy) { stress(4, 4, 1024, kItems); }

int main(int argc, char** argv) { return check::run_all(argc, argv); }

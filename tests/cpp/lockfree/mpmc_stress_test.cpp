// RingBuffer under contention: producers and consumers hammer a small buffer, so it is full or empty
// most of the time, and every item must still arrive exactly once and in per-producer order. The
// statuses_* tests drive push() and pop() by the status they report, with consumers dawdling
// between claim and release, and check that a Busy is always explained by the other side.
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "check.hpp"
#include "ring_buffer.hpp"
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

// Checks one consumed item against what was pushed (a producer and seq that exist, seqs rising
// per producer) and counts its delivery; `last_seq` is the consumer's own, one per producer.
template <typename Log>
void record(const Item& item, std::uint32_t per_producer, std::vector<std::int64_t>& last_seq,
            std::vector<std::atomic<std::uint32_t>>& deliveries, Log& log) {
  if (item.producer >= last_seq.size() || item.seq >= per_producer) {
    ++log.corrupt;
    return;
  }
  if (static_cast<std::int64_t>(item.seq) <= last_seq[item.producer]) ++log.out_of_order;
  last_seq[item.producer] = item.seq;
  deliveries[std::uint64_t{item.producer} * per_producer + item.seq].fetch_add(1, std::memory_order_relaxed);
}

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
        record(item, per_producer, last_seq, deliveries, log);
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

// ---- push() and pop() statuses under contention ----

using Status = ringflow::RingBuffer<Item>::Status;

// Calls to push() and pop() in progress, counted around each call (seq_cst), so a thread can tell
// afterwards whether any call of the other side overlapped its own.
struct CallCounter {
  std::atomic<std::uint64_t> started{0};
  std::atomic<std::uint64_t> finished{0};
};

// Whether any call counted by `other` may have overlapped a call made between the two snapshots.
// `before_finished` is read before `before_started`, both before the call, `after_started` after
// it. Equal before-counts mean every call that had started had also finished (and released what it
// held, visibly: its `finished` increment follows its release store); an unchanged started count
// means none began during the call.
struct OverlapProbe {
  std::uint64_t before_finished, before_started;
  explicit OverlapProbe(const CallCounter& other)
      : before_finished(other.finished.load()), before_started(other.started.load()) {}
  bool overlapped(const CallCounter& other) const {
    return before_finished != before_started || other.started.load() != before_started;
  }
};

// Every few claims, a consumer dawdles between its claim and its release, so that producers often
// find a slot still in a consumer's hands: the Busy path.
void dawdle_in_claim() {
  thread_local std::uint32_t claims = 0;
  if (++claims % 4 == 0) std::this_thread::yield();
}

struct StatusLog {
  std::uint64_t done = 0, full = 0, empty = 0, busy = 0;
  // Busy although no call of the other side overlapped: a push is Busy only while a consumer holds
  // the slot (between claim and release), a pop only while a producer does.
  std::uint64_t unexplained_busy = 0;
  std::uint64_t wrong_status = 0;  // push() said Empty, or pop() said Full
  std::uint64_t out_of_order = 0;
  std::uint64_t corrupt = 0;
};

// Producers and consumers drive push() and pop() by their statuses, and now and then pause so that
// the ring runs really full (no claim in flight: a push must say Full, never Busy) and really empty
// (a pop must say Empty). Checks exactly-once, per-producer order, and that every Busy is explained
// by a call of the other side in flight.
void status_stress(std::uint32_t producers, std::uint32_t consumers, std::size_t capacity,
                   std::uint32_t total_items) {
  const std::uint32_t per_producer = total_items / producers;
  const std::uint64_t total = std::uint64_t{per_producer} * producers;
  ringflow::RingBuffer<Item> ring(capacity);
  ring.set_after_claim_for_testing(&dawdle_in_claim);
  std::vector<std::atomic<std::uint32_t>> deliveries(total);
  std::atomic<std::uint64_t> consumed{0};
  CallCounter pushes, pops;
  std::vector<StatusLog> producer_logs(producers), consumer_logs(consumers);
  const auto no_stamp = [](Item&, std::size_t) noexcept {};

  std::vector<std::thread> threads;
  for (std::uint32_t p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      StatusLog& log = producer_logs[p];
      for (std::uint32_t seq = 0; seq < per_producer; ++seq) {
        if (seq % 256 == 255) {
          for (int i = 0; i < 20; ++i) std::this_thread::yield();  // let the ring run empty
        }
        Item item{p, seq};
        for (;;) {
          const OverlapProbe probe(pops);
          pushes.started.fetch_add(1);
          const Status status = ring.push(item, no_stamp);
          pushes.finished.fetch_add(1);
          if (status == Status::Done) {
            ++log.done;
            break;
          }
          if (status == Status::Full) {
            ++log.full;
          } else if (status == Status::Busy) {
            ++log.busy;
            if (!probe.overlapped(pops)) ++log.unexplained_busy;
          } else {
            ++log.wrong_status;
          }
          std::this_thread::yield();
        }
      }
    });
  }
  for (std::uint32_t c = 0; c < consumers; ++c) {
    threads.emplace_back([&, c] {
      StatusLog& log = consumer_logs[c];
      std::vector<std::int64_t> last_seq(producers, -1);
      std::uint64_t mine = 0;
      while (consumed.load(std::memory_order_relaxed) < total) {
        Item item{};
        const OverlapProbe probe(pushes);
        pops.started.fetch_add(1);
        const Status status = ring.pop(item);
        pops.finished.fetch_add(1);
        if (status != Status::Done) {
          if (status == Status::Empty) {
            ++log.empty;
          } else if (status == Status::Busy) {
            ++log.busy;
            if (!probe.overlapped(pushes)) ++log.unexplained_busy;
          } else {
            ++log.wrong_status;
          }
          std::this_thread::yield();
          continue;
        }
        ++log.done;
        consumed.fetch_add(1, std::memory_order_relaxed);
        if (++mine % 512 == 0) {
          for (int i = 0; i < 20; ++i) std::this_thread::yield();  // let the ring run full
        }
        record(item, per_producer, last_seq, deliveries, log);
      }
    });
  }
  for (std::thread& t : threads) t.join();

  StatusLog sum;
  for (const auto* logs : {&producer_logs, &consumer_logs}) {
    for (const StatusLog& log : *logs) {
      sum.done += log.done;
      sum.busy += log.busy;
      sum.unexplained_busy += log.unexplained_busy;
      sum.wrong_status += log.wrong_status;
      sum.out_of_order += log.out_of_order;
      sum.corrupt += log.corrupt;
    }
  }
  std::uint64_t not_exactly_once = 0;
  for (const auto& count : deliveries) not_exactly_once += count.load() != 1;
  CHECK_EQ(consumed.load(), total);
  CHECK_EQ(sum.done, 2 * total);  // one Done push and one Done pop per item
  CHECK_EQ(sum.corrupt, 0u);
  CHECK_EQ(not_exactly_once, 0u);
  CHECK_EQ(sum.out_of_order, 0u);
  CHECK_EQ(sum.wrong_status, 0u);
  CHECK_EQ(sum.unexplained_busy, 0u);
  Item leftover{};
  CHECK_EQ(ring.pop(leftover), Status::Empty);
}

const std::uint32_t kStatusItems = iterations(100000u, 20000u);

}  // namespace

TEST(one_producer_one_consumer) { stress(1, 1, 4, kItems); }
TEST(four_producers_one_consumer) { stress(4, 1, 4, kItems); }
TEST(one_producer_four_consumers) { stress(1, 4, 4, kItems); }
TEST(four_producers_four_consumers) { stress(4, 4, 4, kItems); }
// The smallest buffer the turn scheme can run: every slot is reused every other ticket.
TEST(four_producers_four_consumers_two_slots) { stress(4, 4, 2, kItems); }
// Rarely full: producers and consumers race on the counters rather than on a full/empty slot.
TEST(four_producers_four_consumers_roomy) { stress(4, 4, 1024, kItems); }

TEST(statuses_four_producers_four_consumers) { status_stress(4, 4, 4, kStatusItems); }
TEST(statuses_two_producers_two_consumers_one_slot) { status_stress(2, 2, 1, kStatusItems); }
TEST(statuses_four_producers_one_consumer_two_slots) { status_stress(4, 1, 2, kStatusItems); }
TEST(statuses_one_producer_four_consumers) { status_stress(1, 4, 3, kStatusItems); }

int main(int argc, char** argv) { return check::run_all(argc, argv); }

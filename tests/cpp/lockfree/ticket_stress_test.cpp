// RingBuffer::try_push(value, stamp) under contention. The Run numbers accepted samples with the
// ticket the stamp reports (input_seq), so tickets must be dense and unique (0..N-1, each exactly
// once: a failed push takes none), every value must carry the ticket its producer was told, and
// consumers must receive tickets in increasing order. Small capacities, 1 and 3 included (one slot
// reused every ticket; a capacity that is not a power of two), keep the buffer full or empty and
// the slot turns contended.
#include <atomic>
#include <cstdint>
#include <limits>
#include <thread>
#include <vector>

#include "check.hpp"
#include "ring_buffer.hpp"
#include "tsan.hpp"

namespace {

constexpr std::uint64_t kNoTicket = std::numeric_limits<std::uint64_t>::max();

struct Ticketed {
  std::uint32_t producer = 0;
  std::uint32_t seq = 0;
  std::uint64_t ticket = kNoTicket;  // set by the stamp, inside try_push
};

// What one producer's stamp saw. Written only on that producer's thread, read after join().
struct ProducerLog {
  std::vector<std::uint64_t> ticket_of_seq;
  std::uint64_t stamp_calls = 0;
};

// What one consumer saw. Written only by that consumer, read after join().
struct ConsumerLog {
  std::vector<Ticketed> items;
  std::uint64_t tickets_not_increasing = 0;
};

void stress_with_tickets(std::uint32_t producers, std::uint32_t consumers, std::size_t capacity,
                         std::uint32_t total_items) {
  const std::uint32_t per_producer = total_items / producers;
  const std::uint64_t total = std::uint64_t{per_producer} * producers;
  ringflow::RingBuffer<Ticketed> ring(capacity);
  std::vector<ProducerLog> producer_logs(producers);
  for (ProducerLog& log : producer_logs) log.ticket_of_seq.assign(per_producer, kNoTicket);
  std::vector<ConsumerLog> consumer_logs(consumers);
  std::atomic<std::uint64_t> consumed{0};

  std::vector<std::thread> threads;
  for (std::uint32_t p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      ProducerLog& log = producer_logs[p];
      for (std::uint32_t seq = 0; seq < per_producer; ++seq) {
        Ticketed item;
        item.producer = p;
        item.seq = seq;
        const auto stamp = [&log, seq](Ticketed& value, std::size_t ticket) noexcept {
          value.ticket = ticket;
          log.ticket_of_seq[seq] = ticket;
          ++log.stamp_calls;
        };
        while (!ring.try_push(item, stamp)) std::this_thread::yield();
      }
    });
  }
  for (std::uint32_t c = 0; c < consumers; ++c) {
    threads.emplace_back([&, c] {
      ConsumerLog& log = consumer_logs[c];
      log.items.reserve(total);
      while (consumed.load(std::memory_order_relaxed) < total) {
        Ticketed item;
        if (!ring.try_pop(item)) {
          std::this_thread::yield();
          continue;
        }
        consumed.fetch_add(1, std::memory_order_relaxed);
        if (!log.items.empty() && item.ticket <= log.items.back().ticket) ++log.tickets_not_increasing;
        log.items.push_back(item);
      }
    });
  }
  for (std::thread& t : threads) t.join();

  // The stamp ran once per accepted push, never for a refused one.
  for (const ProducerLog& log : producer_logs) CHECK_EQ(log.stamp_calls, std::uint64_t{per_producer});

  // Each ticket 0..total-1 delivered exactly once, carrying the producer and seq it was given to.
  std::vector<std::uint32_t> deliveries(total, 0);
  std::uint64_t out_of_range = 0;
  std::uint64_t ticket_mismatch = 0;
  std::uint64_t tickets_not_increasing = 0;
  for (const ConsumerLog& log : consumer_logs) {
    tickets_not_increasing += log.tickets_not_increasing;
    for (const Ticketed& item : log.items) {
      if (item.ticket >= total || item.producer >= producers || item.seq >= per_producer) {
        ++out_of_range;
        continue;
      }
      ++deliveries[item.ticket];
      ticket_mismatch += producer_logs[item.producer].ticket_of_seq[item.seq] != item.ticket;
    }
  }
  std::uint64_t not_exactly_once = 0;
  for (std::uint32_t n : deliveries) not_exactly_once += n != 1;
  CHECK_EQ(consumed.load(), total);
  CHECK_EQ(out_of_range, 0u);
  CHECK_EQ(ticket_mismatch, 0u);
  CHECK_EQ(not_exactly_once, 0u);
  CHECK_EQ(tickets_not_increasing, 0u);

  // A producer's pushes take increasing tickets: its FIFO order is the global order.
  std::uint64_t producer_order_broken = 0;
  for (const ProducerLog& log : producer_logs) {
    for (std::uint32_t seq = 1; seq < per_producer; ++seq) {
      producer_order_broken += log.ticket_of_seq[seq] <= log.ticket_of_seq[seq - 1];
    }
  }
  CHECK_EQ(producer_order_broken, 0u);

  Ticketed leftover;
  CHECK(!ring.try_pop(leftover));
}

const std::uint32_t kItems = iterations(200000u, 150000u);
// With one slot every push waits for the pop before it, a hand-off per item that a busy machine
// makes slow; fewer items still give tens of thousands of contended turns.
const std::uint32_t kOneSlotItems = iterations(50000u, 50000u);

}  // namespace

TEST(a_refused_push_calls_no_stamp_and_takes_no_ticket) {
  ringflow::RingBuffer<Ticketed> ring(2);
  std::vector<std::uint64_t> stamped;
  const auto stamp = [&stamped](Ticketed& value, std::size_t ticket) noexcept {
    value.ticket = ticket;
    stamped.push_back(ticket);
  };
  Ticketed a, b, c;
  CHECK(ring.try_push(a, stamp));
  CHECK(ring.try_push(b, stamp));
  CHECK(!ring.try_push(c, stamp));  // full
  CHECK_EQ(c.ticket, kNoTicket);    // the refused value was left alone
  Ticketed out;
  CHECK(ring.try_pop(out));
  CHECK_EQ(out.ticket, 0u);
  CHECK(ring.try_push(c, stamp));
  CHECK_EQ(stamped, (std::vector<std::uint64_t>{0, 1, 2}));  // no gap where the refusal was
}

TEST(tickets_one_producer_one_consumer) { stress_with_tickets(1, 1, 4, kItems); }
TEST(tickets_four_producers_one_consumer) { stress_with_tickets(4, 1, 4, kItems); }
TEST(tickets_four_producers_four_consumers) { stress_with_tickets(4, 4, 4, kItems); }
// One slot: every push waits for the pop of the ticket before it.
TEST(tickets_four_producers_four_consumers_one_slot) { stress_with_tickets(4, 4, 1, kOneSlotItems); }
// Three slots: ticket % capacity and the lap arithmetic with a capacity that is not a power of two.
TEST(tickets_four_producers_four_consumers_three_slots) { stress_with_tickets(4, 4, 3, kItems); }
TEST(tickets_three_producers_two_consumers_three_slots) { stress_with_tickets(3, 2, 3, kItems); }

int main(int argc, char** argv) { return check::run_all(argc, argv); }

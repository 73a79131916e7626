// RingBuffer on one thread: capacity, full and empty, order, slot reuse and element lifetimes. And
// the statuses push() and pop() report (Done, Full, Empty, Busy), with a second thread holding a slot
// between its claim and its release.
#include "ring_buffer.hpp"

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <thread>

#include "check.hpp"
#include "hang_guard.hpp"

using ringflow::RingBuffer;
using Status = RingBuffer<int>::Status;

namespace {


// Counts how many instances exist, so a test can see exactly which ones the buffer destroys.
struct Counted {
  explicit Counted(int v, int& live_count) : value(v), live(&live_count) { ++*live; }
  Counted(Counted&& other) noexcept : value(other.value), live(other.live) { ++*live; }
  Counted& operator=(Counted&& other) noexcept {
    value = other.value;
    return *this;
  }
  ~Counted() { --*live; }

  int value;
  int* live;
};

// A buffer holds exactly capacity() items: one more is refused, and all of them come back out in
// order.
void check_holds_exactly_its_capacity(std::size_t requested) {
  RingBuffer<int> ring(requested);
  const int capacity = static_cast<int>(ring.capacity());
  CHECK_EQ(ring.capacity(), requested);
  for (int i = 0; i < capacity; ++i) CHECK(ring.try_push(i));
  CHECK_EQ(ring.size_approx(), ring.capacity());
  int rejected = -7;
  CHECK(!ring.try_push(rejected));
  CHECK_EQ(rejected, -7);
  for (int i = 0; i < capacity; ++i) {
    int out = -1;
    CHECK(ring.try_pop(out));
    CHECK_EQ(out, i);
  }
  int out = -1;
  CHECK(!ring.try_pop(out));
}

}  // namespace

TEST(capacity_is_exactly_what_was_asked_for) {
  for (std::size_t n : {1u, 2u, 3u, 5u, 7u, 1000u, 1024u}) CHECK_EQ(RingBuffer<int>(n).capacity(), n);
  CHECK_THROWS(RingBuffer<int>(0), std::invalid_argument);
}

TEST(pop_from_an_empty_buffer_fails_and_leaves_the_output_alone) {
  RingBuffer<int> ring(4);
  int out = 42;
  CHECK(!ring.try_pop(out));
  CHECK_EQ(out, 42);
  CHECK(ring.try_push(7));
  CHECK(ring.try_pop(out));
  CHECK_EQ(out, 7);
  out = 42;
  CHECK(!ring.try_pop(out));  // empty again once drained
  CHECK_EQ(out, 42);
}

TEST(a_full_buffer_refuses_a_push_and_keeps_what_it_holds) {
  for (std::size_t requested : {2u, 3u, 8u, 100u}) check_holds_exactly_its_capacity(requested);
}

// One slot is the edge case of the turn scheme: a full slot (turn == ticket + 1) must not look free
// to the next producer, whose ticket is also ticket + 1.
TEST(a_one_slot_buffer_refuses_a_second_push) { check_holds_exactly_its_capacity(1); }

TEST(a_full_buffer_does_not_move_from_the_rejected_value) {
  RingBuffer<std::unique_ptr<int>> ring(2);
  CHECK(ring.try_push(std::make_unique<int>(1)));
  CHECK(ring.try_push(std::make_unique<int>(2)));
  auto rejected = std::make_unique<int>(3);
  CHECK(!ring.try_push(rejected));
  CHECK(rejected != nullptr);
  CHECK_EQ(*rejected, 3);
}

// Varying batch sizes make every slot the first and the last of a batch over the laps, and the
// ticket counters run far past the capacity.
TEST(items_come_out_in_push_order_over_many_laps) {
  RingBuffer<int> ring(4);
  int next_in = 0;
  int next_out = 0;
  for (int lap = 0; lap < 10000; ++lap) {
    const int batch = 1 + lap % static_cast<int>(ring.capacity());
    for (int i = 0; i < batch; ++i) CHECK(ring.try_push(next_in++));
    CHECK_EQ(ring.size_approx(), static_cast<std::size_t>(batch));
    for (int i = 0; i < batch; ++i) {
      int out = -1;
      CHECK(ring.try_pop(out));
      CHECK_EQ(out, next_out++);
    }
  }
  CHECK_EQ(next_out, next_in);
}

// A partly full buffer sliding round: each push lands one slot past the last.
TEST(a_partly_full_buffer_stays_in_order_as_it_wraps) {
  RingBuffer<int> ring(8);
  int next_in = 0;
  int next_out = 0;
  for (int i = 0; i < 5; ++i) CHECK(ring.try_push(next_in++));
  for (int step = 0; step < 10000; ++step) {
    CHECK(ring.try_push(next_in++));
    int out = -1;
    CHECK(ring.try_pop(out));
    CHECK_EQ(out, next_out++);
  }
  CHECK_EQ(ring.size_approx(), 5u);
}

TEST(move_only_values_move_through) {
  RingBuffer<std::unique_ptr<int>> ring(4);
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 4; ++i) CHECK(ring.try_push(std::make_unique<int>(round * 10 + i)));
    for (int i = 0; i < 4; ++i) {
      std::unique_ptr<int> out;
      CHECK(ring.try_pop(out));
      CHECK(out != nullptr);
      CHECK_EQ(*out, round * 10 + i);
    }
  }
}

TEST(popped_values_are_destroyed_once_and_the_rest_by_the_destructor) {
  int live = 0;
  {
    Counted out(-1, live);
    {
      RingBuffer<Counted> ring(8);
      for (int i = 0; i < 5; ++i) CHECK(ring.try_push(Counted(i, live)));
      CHECK_EQ(live, 1 + 5);  // `out` plus the five held by the buffer; the temporaries are gone
      for (int i = 0; i < 2; ++i) {
        CHECK(ring.try_pop(out));
        CHECK_EQ(out.value, i);
      }
      CHECK_EQ(live, 1 + 3);
    }
    CHECK_EQ(live, 1);  // the buffer destroyed its three remaining values, and nothing else
  }
  CHECK_EQ(live, 0);
}

// ---- statuses ----------------------------------------------------------------------------------

namespace {

constexpr std::chrono::seconds kHangLimit{30};

const auto no_stamp = [](int&, std::size_t) noexcept {};

// A consumer thread that claims the next slot and then stays between its claim and its release
// (RingBuffer::set_after_claim_for_testing) until release() is called, as if descheduled there.
// Only the first claim after the hook is armed is held.
std::atomic<bool> g_hold_armed{false};
std::atomic<bool> g_holding{false};
std::atomic<bool> g_release{false};

void hold_claim() {
  if (!g_hold_armed.exchange(false)) return;
  g_holding = true;
  while (!g_release) std::this_thread::yield();
}

class HeldClaim {
 public:
  explicit HeldClaim(RingBuffer<int>& ring) {
    g_holding = false;
    g_release = false;
    g_hold_armed = true;
    consumer_ = std::thread([this, &ring] { status_ = ring.pop(value_); });
    while (!g_holding) std::this_thread::yield();
  }
  // Lets the consumer finish its pop; returns what it popped.
  int release() {
    g_release = true;
    consumer_.join();
    CHECK_EQ(status_, Status::Done);
    return value_;
  }
  ~HeldClaim() {
    if (consumer_.joinable()) {
      g_release = true;
      consumer_.join();
    }
  }

 private:
  std::thread consumer_;
  Status status_ = Status::Empty;
  int value_ = -1;
};

// A producer thread that claims the next slot and then stays in its stamp callback, between the
// claim and moving its value in, until release() is called.
class HeldPush {
 public:
  HeldPush(RingBuffer<int>& ring, int value) : value_(value) {
    producer_ = std::thread([this, &ring] {
      status_ = ring.push(value_, [this](int&, std::size_t ticket) noexcept {
        ticket_ = ticket;
        holding_ = true;
        while (!release_) std::this_thread::yield();
      });
    });
    while (!holding_) std::this_thread::yield();
  }
  std::size_t release() {
    release_ = true;
    producer_.join();
    CHECK_EQ(status_, Status::Done);
    return ticket_;
  }
  ~HeldPush() {
    if (producer_.joinable()) {
      release_ = true;
      producer_.join();
    }
  }

 private:
  std::thread producer_;
  int value_;
  Status status_ = Status::Full;
  std::size_t ticket_ = 0;
  std::atomic<bool> holding_{false};
  std::atomic<bool> release_{false};
};

}  // namespace

TEST(push_reports_done_then_full_and_pop_done_then_empty) {
  for (std::size_t capacity : {1u, 2u, 3u, 8u}) {
    RingBuffer<int> ring(capacity);
    const auto stamp = [](int& v, std::size_t ticket) noexcept { v = static_cast<int>(ticket); };
    for (std::size_t i = 0; i < capacity; ++i) {
      int v = -1;
      CHECK_EQ(ring.push(v, stamp), Status::Done);
    }
    int rejected = 1234;
    CHECK_EQ(ring.push(rejected, stamp), Status::Full);
    CHECK_EQ(rejected, 1234);  // untouched: not stamped, not moved from
    for (std::size_t i = 0; i < capacity; ++i) {
      int out = -1;
      CHECK_EQ(ring.pop(out), Status::Done);
      CHECK_EQ(out, static_cast<int>(i));  // stamped with its ticket: the failed push took none
    }
    int out = 42;
    CHECK_EQ(ring.pop(out), Status::Empty);
    CHECK_EQ(out, 42);
    int next = -1;
    CHECK_EQ(ring.push(next, stamp), Status::Done);
    CHECK_EQ(ring.pop(out), Status::Done);
    CHECK_EQ(out, static_cast<int>(capacity));
  }
}

// A full ring whose oldest slot a consumer has claimed but not yet released: the slot is about to
// be free, so a push reports Busy, not Full, and leaves its value alone. Once the consumer
// releases, the push goes through.
TEST(push_into_a_slot_a_consumer_is_still_releasing_is_busy_not_full) {
  HangGuard guard("a held consumer claim", kHangLimit);
  for (std::size_t capacity : {1u, 2u, 3u, 8u}) {
    RingBuffer<int> ring(capacity);
    ring.set_after_claim_for_testing(&hold_claim);
    for (std::size_t i = 0; i < capacity; ++i) CHECK(ring.try_push(static_cast<int>(i)));
    int value = 100;
    CHECK_EQ(ring.push(value, no_stamp), Status::Full);  // really full: nothing claimed
    {
      HeldClaim held(ring);
      CHECK_EQ(ring.push(value, no_stamp), Status::Busy);
      CHECK_EQ(value, 100);
      CHECK(!ring.try_push(value));  // try_push folds Busy into "not now"
      CHECK_EQ(held.release(), 0);
    }
    CHECK_EQ(ring.push(value, no_stamp), Status::Done);
    for (std::size_t i = 1; i < capacity; ++i) {
      int out = -1;
      CHECK_EQ(ring.pop(out), Status::Done);
      CHECK_EQ(out, static_cast<int>(i));
    }
    int out = -1;
    CHECK_EQ(ring.pop(out), Status::Done);
    CHECK_EQ(out, 100);
    CHECK_EQ(ring.pop(out), Status::Empty);
  }
}

// The claimed slot is the one at the push's ticket, so a push is Busy even when another slot is
// free (the ring is not full): tickets are taken in order, and that free slot is a later ticket's.
TEST(push_is_busy_while_its_own_slot_is_claimed_even_with_room_elsewhere) {
  HangGuard guard("a held consumer claim", kHangLimit);
  RingBuffer<int> ring(3);
  ring.set_after_claim_for_testing(&hold_claim);
  for (int i = 0; i < 3; ++i) CHECK(ring.try_push(i));
  HeldClaim held(ring);  // holds slot 0 (item 0)
  int out = -1;
  CHECK_EQ(ring.pop(out), Status::Done);  // item 1: a second consumer passes the held one
  CHECK_EQ(out, 1);
  CHECK_EQ(ring.size_approx(), 1u);
  int value = 7;
  CHECK_EQ(ring.push(value, no_stamp), Status::Busy);
  CHECK_EQ(held.release(), 0);
  CHECK_EQ(ring.push(value, no_stamp), Status::Done);
  value = 8;
  CHECK_EQ(ring.push(value, no_stamp), Status::Done);  // slot 1, free all along
  value = 9;
  CHECK_EQ(ring.push(value, no_stamp), Status::Full);
  for (int expected : {2, 7, 8}) {
    CHECK_EQ(ring.pop(out), Status::Done);
    CHECK_EQ(out, expected);
  }
}

// A consumer's held claim on the only item leaves nothing for anyone else: Empty, not Busy.
TEST(pop_while_the_only_item_is_claimed_by_another_consumer_is_empty) {
  HangGuard guard("a held consumer claim", kHangLimit);
  RingBuffer<int> ring(4);
  ring.set_after_claim_for_testing(&hold_claim);
  CHECK(ring.try_push(5));
  HeldClaim held(ring);
  int out = -1;
  CHECK_EQ(ring.pop(out), Status::Empty);
  CHECK_EQ(out, -1);
  CHECK_EQ(held.release(), 5);
  CHECK_EQ(ring.pop(out), Status::Empty);
}

// A producer that has claimed the next slot but not yet moved its value in: the item is coming, so
// a pop reports Busy, not Empty, and leaves its output alone. Items pushed after it wait behind it.
TEST(pop_of_a_slot_a_producer_is_still_filling_is_busy_not_empty) {
  HangGuard guard("a held producer claim", kHangLimit);
  for (std::size_t capacity : {1u, 2u, 4u}) {
    RingBuffer<int> ring(capacity);
    int out = -1;
    {
      HeldPush held(ring, 11);
      CHECK_EQ(ring.pop(out), Status::Busy);
      CHECK_EQ(out, -1);
      if (capacity > 1) {
        int later = 12;
        CHECK_EQ(ring.push(later, no_stamp), Status::Done);  // the next slot, behind the held one
        CHECK_EQ(ring.pop(out), Status::Busy);                // FIFO: 12 must not overtake 11
        CHECK_EQ(out, -1);
      } else {
        int later = 12;
        CHECK_EQ(ring.push(later, no_stamp), Status::Full);  // the one slot is the held producer's
      }
      CHECK_EQ(held.release(), 0u);
    }
    CHECK_EQ(ring.pop(out), Status::Done);
    CHECK_EQ(out, 11);
    if (capacity > 1) {
      CHECK_EQ(ring.pop(out), Status::Done);
      CHECK_EQ(out, 12);
    }
    CHECK_EQ(ring.pop(out), Status::Empty);
  }
}

int main(int argc, char** argv) { return check::run_all(argc, argv); }

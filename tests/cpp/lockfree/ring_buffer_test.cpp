// RingBuffer on one thread: capacity, full and empty, order, slot reuse and element lifetimes.
#include "ringflow/ring_buffer.hpp"

#include <cstddef>
#include <memory>
#include <stdexcept>

#include "check.hpp"

using ringflow::RingBuffer;

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

int main(int argc, char** argv) { return check::run_all(argc, argv); }

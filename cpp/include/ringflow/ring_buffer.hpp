// A bounded lock-free multi-producer multi-consumer ring buffer.
//
// Each slot carries a `turn` counter that says whose move it is: a producer holding ticket `t` may
// write slot `t % capacity` when `turn == t`, and a consumer holding ticket `t` may read it when
// `turn == t + 1`. Tickets are claimed with a CAS on `head_` (producers) or `tail_` (consumers), so
// no two threads ever own the same slot, and a full or empty buffer is detected without a lock.
//
// Memory ordering: the producer writes the value and then stores `turn` with release; the consumer
// loads `turn` with acquire before reading the value, so it sees the complete write. Symmetrically
// the consumer's release store after moving the value out hands the slot back to the next
// producer's acquire load. The ticket counters themselves are relaxed: they only arbitrate
// ownership, and the `turn` handshake carries all the data visibility.
//
// Per-producer FIFO order holds: a producer's items take increasing tickets, and every consumer
// takes tickets in increasing order.
#pragma once

#include <atomic>
#include <cstddef>
#include <new>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace ringflow {

// 64 bytes on every x86-64 and most ARM cores. std::hardware_destructive_interference_size would
// say the same, but GCC warns that its value is ABI-unstable, so we pin it.
inline constexpr std::size_t kCacheLine = 64;

template <typename T>
class RingBuffer {
  static_assert(std::is_nothrow_move_constructible_v<T>,
                "RingBuffer moves values in and out of slots and cannot roll back a throwing move");

 public:
  // Capacity is rounded up to a power of two so a ticket maps to its slot with a mask.
  explicit RingBuffer(std::size_t min_capacity)
      : capacity_(round_up_pow2(min_capacity)), mask_(capacity_ - 1), slots_(new Slot[capacity_]) {
    for (std::size_t i = 0; i < capacity_; ++i) slots_[i].turn.store(i, std::memory_order_relaxed);
  }

  // Destruction must not race with any push or pop.
  ~RingBuffer() {
    const std::size_t head = head_.load(std::memory_order_relaxed);
    for (std::size_t t = tail_.load(std::memory_order_relaxed); t != head; ++t) {
      std::launder(reinterpret_cast<T*>(&slots_[t & mask_].storage))->~T();
    }
    delete[] slots_;
  }

  RingBuffer(const RingBuffer&) = delete;
  RingBuffer& operator=(const RingBuffer&) = delete;

  // Returns false, leaving `value` untouched, when the buffer is full.
  bool try_push(T& value) noexcept {
    std::size_t ticket = head_.load(std::memory_order_relaxed);
    for (;;) {
      Slot& slot = slots_[ticket & mask_];
      const std::size_t turn = slot.turn.load(std::memory_order_acquire);
      const auto lag = static_cast<std::ptrdiff_t>(turn - ticket);
      if (lag == 0) {
        if (head_.compare_exchange_weak(ticket, ticket + 1, std::memory_order_relaxed)) {
          new (&slot.storage) T(std::move(value));
          slot.turn.store(ticket + 1, std::memory_order_release);
          return true;
        }
      } else if (lag < 0) {
        return false;  // the slot still holds the value from one lap ago: full
      } else {
        ticket = head_.load(std::memory_order_relaxed);  // another producer took this ticket
      }
    }
  }

  bool try_push(T&& value) noexcept { return try_push(value); }

  // Returns false when the buffer is empty.
  bool try_pop(T& out) noexcept {
    std::size_t ticket = tail_.load(std::memory_order_relaxed);
    for (;;) {
      Slot& slot = slots_[ticket & mask_];
      const std::size_t turn = slot.turn.load(std::memory_order_acquire);
      const auto lag = static_cast<std::ptrdiff_t>(turn - (ticket + 1));
      if (lag == 0) {
        if (tail_.compare_exchange_weak(ticket, ticket + 1, std::memory_order_relaxed)) {
          T* stored = std::launder(reinterpret_cast<T*>(&slot.storage));
          out = std::move(*stored);
          stored->~T();
          slot.turn.store(ticket + capacity_, std::memory_order_release);
          return true;
        }
      } else if (lag < 0) {
        return false;  // no producer has filled this slot yet: empty
      } else {
        ticket = tail_.load(std::memory_order_relaxed);
      }
    }
  }

  std::size_t capacity() const noexcept { return capacity_; }

  // A snapshot that may be stale by the time it is read; for metrics, never for control flow.
  std::size_t size_approx() const noexcept {
    const std::size_t head = head_.load(std::memory_order_relaxed);
    const std::size_t tail = tail_.load(std::memory_order_relaxed);
    return head > tail ? head - tail : 0;
  }

 private:
  // One slot per cache line, so producers and consumers working on neighbouring slots do not
  // invalidate each other's lines.
  struct alignas(kCacheLine) Slot {
    std::atomic<std::size_t> turn{0};
    std::aligned_storage_t<sizeof(T), alignof(T)> storage;
  };

  // At least 2: with one slot, a full slot's turn would equal the next producer's ticket.
  static std::size_t round_up_pow2(std::size_t n) {
    if (n == 0) throw std::invalid_argument("RingBuffer capacity must be at least 1");
    std::size_t p = 2;
    while (p < n) p <<= 1;
    return p;
  }

  const std::size_t capacity_;
  const std::size_t mask_;
  Slot* const slots_;
  // Producers and consumers hammer different counters; keep them on separate lines.
  alignas(kCacheLine) std::atomic<std::size_t> head_{0};
  alignas(kCacheLine) std::atomic<std::size_t> tail_{0};
};

}  // namespace ringflow

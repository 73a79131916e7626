// A bounded lock-free multi-producer multi-consumer ring buffer.
//
// Producers and consumers each claim a ticket with a CAS on their counter (`head_`, `tail_`).
// Ticket t uses slot t % capacity on lap t / capacity. Each slot's `turn` says whose move it is:
// 2 * lap means "empty, waiting for the producer of this lap", 2 * lap + 1 means "full, waiting for
// the consumer of this lap". So no two threads ever own the same slot, full and empty are detected
// without a lock, and any capacity works (1 included), not only powers of two.
//
// Memory ordering: a producer constructs the value, then stores `turn` with release; the consumer
// loads `turn` with acquire before touching the value, so it sees the complete write. The
// consumer's release store after moving the value out hands the slot back to the next lap's
// producer the same way. The ticket counters only arbitrate ownership; `turn` carries visibility.
//
// Per-producer FIFO order holds: a producer's items take increasing tickets, and consumers take
// tickets in increasing order.
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
  static_assert(std::is_nothrow_move_constructible_v<T> && std::is_nothrow_move_assignable_v<T>,
                "RingBuffer moves values in and out of slots and cannot roll back a throwing move");

 public:
  explicit RingBuffer(std::size_t capacity)
      : capacity_(checked_capacity(capacity)), slots_(new Slot[capacity_]) {}

  // Destruction must not race with any push or pop.
  ~RingBuffer() {
    const std::size_t head = head_.load(std::memory_order_relaxed);
    for (std::size_t t = tail_.load(std::memory_order_relaxed); t != head; ++t) {
      slots_[t % capacity_].value()->~T();
    }
    delete[] slots_;
  }

  RingBuffer(const RingBuffer&) = delete;
  RingBuffer& operator=(const RingBuffer&) = delete;

  // Returns false, leaving `value` untouched, when the buffer is full.
  bool try_push(T& value) noexcept {
    return try_push(value, [](T&, std::size_t) noexcept {});
  }
  bool try_push(T&& value) noexcept { return try_push(value); }

  // As try_push(), but first calls `stamp(value, ticket)` with the value's position in the global
  // push order (0, 1, 2, ...), so the value can record it. A failed push takes no ticket.
  template <typename Stamp>
  bool try_push(T& value, Stamp&& stamp) noexcept {
    std::size_t ticket = head_.load(std::memory_order_acquire);
    for (;;) {
      Slot& slot = slots_[ticket % capacity_];
      if (slot.turn.load(std::memory_order_acquire) == 2 * lap(ticket)) {
        if (head_.compare_exchange_strong(ticket, ticket + 1, std::memory_order_acq_rel)) {
          stamp(value, ticket);
          new (&slot.storage) T(std::move(value));
          slot.turn.store(2 * lap(ticket) + 1, std::memory_order_release);
          return true;
        }
      } else {
        // The slot still holds last lap's value. Unless another producer moved on meanwhile,
        // the buffer is full.
        const std::size_t seen = ticket;
        ticket = head_.load(std::memory_order_acquire);
        if (ticket == seen) return false;
      }
    }
  }

  // Returns false when the buffer is empty.
  bool try_pop(T& out) noexcept {
    std::size_t ticket = tail_.load(std::memory_order_acquire);
    for (;;) {
      Slot& slot = slots_[ticket % capacity_];
      if (slot.turn.load(std::memory_order_acquire) == 2 * lap(ticket) + 1) {
        if (tail_.compare_exchange_strong(ticket, ticket + 1, std::memory_order_acq_rel)) {
          out = std::move(*slot.value());
          slot.value()->~T();
          slot.turn.store(2 * lap(ticket) + 2, std::memory_order_release);
          return true;
        }
      } else {
        const std::size_t seen = ticket;
        ticket = tail_.load(std::memory_order_acquire);
        if (ticket == seen) return false;  // no producer has filled this slot yet: empty
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
  // One slot per cache line, so threads working on neighbouring slots do not invalidate each
  // other's lines.
  struct alignas(kCacheLine) Slot {
    std::atomic<std::size_t> turn{0};
    std::aligned_storage_t<sizeof(T), alignof(T)> storage;
    T* value() noexcept { return std::launder(reinterpret_cast<T*>(&storage)); }
  };

  static std::size_t checked_capacity(std::size_t n) {
    if (n == 0) throw std::invalid_argument("RingBuffer capacity must be at least 1");
    return n;
  }
  std::size_t lap(std::size_t ticket) const noexcept { return ticket / capacity_; }

  const std::size_t capacity_;
  Slot* const slots_;
  // Producers and consumers hammer different counters; keep them on separate lines.
  alignas(kCacheLine) std::atomic<std::size_t> head_{0};
  alignas(kCacheLine) std::atomic<std::size_t> tail_{0};
};

}  // namespace ringflow

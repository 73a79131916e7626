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

  // What a push or pop found. Busy: the slot is still in another thread's hands, between the CAS
  // that claimed it and the store that hands it on (a consumer of the previous lap still moving its
  // value out, or a producer still moving its value in). It is not full or empty: the slot frees as
  // soon as that thread runs again, so callers wait for it rather than treat the ring as full.
  enum class Status { Done, Full, Empty, Busy };

  // Returns false, leaving `value` untouched, when the buffer is full or the next slot is busy.
  bool try_push(T& value) noexcept {
    return push(value, [](T&, std::size_t) noexcept {}) == Status::Done;
  }
  bool try_push(T&& value) noexcept { return try_push(value); }

  // As try_push(), but first calls `stamp(value, ticket)` with the value's position in the global
  // push order (0, 1, 2, ...), so the value can record it. A failed push takes no ticket.
  template <typename Stamp>
  bool try_push(T& value, Stamp&& stamp) noexcept {
    return push(value, stamp) == Status::Done;
  }

  // Done, Full, or Busy; `value` is untouched unless Done.
  template <typename Stamp>
  Status push(T& value, Stamp&& stamp) noexcept {
    std::size_t ticket = head_.load(std::memory_order_acquire);
    for (;;) {
      Slot& slot = slots_[ticket % capacity_];
      if (slot.turn.load(std::memory_order_acquire) == 2 * lap(ticket)) {
        if (head_.compare_exchange_strong(ticket, ticket + 1, std::memory_order_acq_rel)) {
          stamp(value, ticket);
          new (&slot.storage) T(std::move(value));
          slot.turn.store(2 * lap(ticket) + 1, std::memory_order_release);
          return Status::Done;
        }
      } else {
        // The slot still holds last lap's value. Unless another producer moved on meanwhile, the
        // buffer is full, or that value's consumer has claimed it (tail_ is past it) and is still
        // moving it out.
        const std::size_t seen = ticket;
        ticket = head_.load(std::memory_order_acquire);
        if (ticket == seen) {
          const std::size_t tail = tail_.load(std::memory_order_acquire);
          if (tail > ticket) continue;  // consumers passed our stale ticket: head_ moved on; retry
          return ticket - tail < capacity_ ? Status::Busy : Status::Full;
        }
      }
    }
  }

  // Returns false when the buffer is empty or the next slot is still being filled.
  bool try_pop(T& out) noexcept { return pop(out) == Status::Done; }

  // Done, Empty, or Busy (a producer has claimed the next slot and is still moving its value in).
  Status pop(T& out) noexcept {
    std::size_t ticket = tail_.load(std::memory_order_acquire);
    for (;;) {
      Slot& slot = slots_[ticket % capacity_];
      if (slot.turn.load(std::memory_order_acquire) == 2 * lap(ticket) + 1) {
        if (tail_.compare_exchange_strong(ticket, ticket + 1, std::memory_order_acq_rel)) {
          after_claim_();
          out = std::move(*slot.value());
          slot.value()->~T();
          slot.turn.store(2 * lap(ticket) + 2, std::memory_order_release);
          return Status::Done;
        }
      } else {
        const std::size_t seen = ticket;
        ticket = tail_.load(std::memory_order_acquire);
        if (ticket == seen) {
          const std::size_t head = head_.load(std::memory_order_acquire);
          return head != ticket ? Status::Busy : Status::Empty;
        }
      }
    }
  }

  // Test hook: called by a consumer between claiming a slot and moving its value out, so a test
  // can hold that window open (a descheduled consumer) and check what producers do meanwhile.
  void set_after_claim_for_testing(void (*hook)()) noexcept { after_claim_hook_ = hook; }

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
  void after_claim_() const noexcept {
    if (after_claim_hook_) after_claim_hook_();
  }

  const std::size_t capacity_;
  Slot* const slots_;
  void (*after_claim_hook_)() = nullptr;  // set before the ring is shared; never changed after
  // Producers and consumers hammer different counters; keep them on separate lines.
  alignas(kCacheLine) std::atomic<std::size_t> head_{0};
  alignas(kCacheLine) std::atomic<std::size_t> tail_{0};
};

}  // namespace ringflow

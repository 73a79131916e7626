// ReorderBuffer: items put in any order by their dense ordinals (0, 1, 2, ...), taken in ordinal
// order. Several threads may put and several may take at once, without a lock.
//
// The caller bounds the window: every ordinal put must be below the take cursor + capacity (a Run
// guarantees it with credits: it numbers a sample only while fewer than `capacity` are numbered and
// not yet taken at the end of the pipeline, and every cursor of an earlier stage is at or past that
// end). Within that window each slot holds at most one ordinal at a time.
//
// Two turn counters make each slot a one-item handoff. A taker claims an ordinal with a CAS on the
// cursor and only then moves the item out; a taker paused in between must not have its slot
// overwritten by the ordinal one lap later, so put() writes only once the slot has been handed back
// (writable). That wait is rare and short: only a taker descheduled mid-move causes it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <thread>
#include <utility>
#include <vector>

#include "ring_buffer.hpp"  // kCacheLine

namespace ringflow {

template <typename T>
class ReorderBuffer {
 public:
  explicit ReorderBuffer(std::size_t capacity) : slots_(capacity == 0 ? 1 : capacity) {
    for (std::size_t i = 0; i < slots_.size(); ++i) slots_[i].writable.store(i, std::memory_order_relaxed);
  }
  ReorderBuffer(const ReorderBuffer&) = delete;
  ReorderBuffer& operator=(const ReorderBuffer&) = delete;

  // Stores the item for `ordinal`, which must be within the window (see above).
  void put(std::uint64_t ordinal, T&& item) {
    Slot& slot = slots_[ordinal % slots_.size()];
    // Acquire: pairs with the taker's release of `writable`, so its move out of `item` is complete
    // before this write starts.
    while (slot.writable.load(std::memory_order_acquire) != ordinal) std::this_thread::yield();
    slot.item = std::move(item);
    // Release: a taker that sees `ready` sees the item.
    slot.ready.store(ordinal + 1, std::memory_order_release);
  }

  // Moves the next item in ordinal order into `out`; false if it has not been put yet.
  bool try_take(T& out) {
    for (;;) {
      std::uint64_t ordinal = next_.load(std::memory_order_acquire);
      Slot& slot = slots_[ordinal % slots_.size()];
      if (slot.ready.load(std::memory_order_acquire) != ordinal + 1) return false;
      // The CAS makes exactly one taker the owner of this ordinal; a loser retries at the next.
      if (next_.compare_exchange_strong(ordinal, ordinal + 1, std::memory_order_acq_rel)) {
        out = std::move(slot.item);
        slot.writable.store(ordinal + slots_.size(), std::memory_order_release);
        return true;
      }
    }
  }

  // The next ordinal try_take() will hand out (approximate while takers race).
  std::uint64_t next() const { return next_.load(std::memory_order_acquire); }
  std::size_t capacity() const { return slots_.size(); }

 private:
  // A cache line per slot: neighbouring ordinals are put by different threads.
  struct alignas(kCacheLine) Slot {
    std::atomic<std::uint64_t> ready{0};     // ordinal + 1 once its item is stored
    std::atomic<std::uint64_t> writable{0};  // the ordinal this slot may be written for next
    T item{};
  };
  std::vector<Slot> slots_;
  alignas(kCacheLine) std::atomic<std::uint64_t> next_{0};
};

}  // namespace ringflow

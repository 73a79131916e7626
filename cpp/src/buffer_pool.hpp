// BufferPool: fixed-size, 64-byte aligned buffers that return to the pool when their last owner
// lets go, so a steady stream of results allocates nothing.
#pragma once

#include <atomic>
#include <cstdlib>
#include <memory>
#include <new>

#include "ring_buffer.hpp"

namespace ringflow {

class BufferPool : public std::enable_shared_from_this<BufferPool> {
 public:
  // Keeps at most `max_idle` free buffers; more are freed when returned.
  static std::shared_ptr<BufferPool> create(std::size_t buffer_bytes, std::size_t max_idle) {
    return std::shared_ptr<BufferPool>(new BufferPool(buffer_bytes, max_idle));
  }

  ~BufferPool() {
    void* p = nullptr;
    while (idle_.try_pop(p)) std::free(p);
  }

  // The returned owner hands the buffer back on release; the pool lives until every buffer has.
  std::shared_ptr<const void> acquire() {
    void* p = nullptr;
    if (!idle_.try_pop(p)) {
      p = std::aligned_alloc(64, padded_bytes_);
      if (!p) throw std::bad_alloc();
      allocations_.fetch_add(1, std::memory_order_relaxed);
    }
    auto self = shared_from_this();
    return std::shared_ptr<const void>(p, [self](const void* buffer) {
      void* b = const_cast<void*>(buffer);
      if (!self->idle_.try_push(b)) std::free(b);
    });
  }

  std::size_t buffer_bytes() const { return buffer_bytes_; }
  std::size_t allocations() const { return allocations_.load(std::memory_order_relaxed); }

 private:
  BufferPool(std::size_t buffer_bytes, std::size_t max_idle)
      : buffer_bytes_(buffer_bytes),
        padded_bytes_(buffer_bytes == 0 ? 64 : (buffer_bytes + 63) / 64 * 64),
        idle_(max_idle) {}

  const std::size_t buffer_bytes_;
  const std::size_t padded_bytes_;
  RingBuffer<void*> idle_;
  std::atomic<std::size_t> allocations_{0};
};

}  // namespace ringflow

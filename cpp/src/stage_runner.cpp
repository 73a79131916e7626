#include "stage_runner.hpp"

#include <cxxabi.h>

#include <system_error>

#include "ringflow/errors.hpp"

namespace ringflow {
namespace {
thread_local const void* t_stage_owner = nullptr;
}  // namespace

const void* stage_thread_owner() noexcept { return t_stage_owner; }

StageQueue::StageQueue(std::size_t capacity, bool ordered) {
  if (ordered) {
    ordered_ = std::make_unique<ReorderBuffer<Item>>(capacity);
  } else {
    fifo_ = std::make_unique<RingBuffer<Item>>(capacity);
  }
}

void StageQueue::put(Item&& item) noexcept {
  if (ordered_) {
    const std::uint64_t ordinal = item.ordinal;
    ordered_->put(ordinal, std::move(item));
  } else {
    // Credits bound the items in flight by the capacity, so a slot is free or about to be.
    while (!fifo_->try_push(item)) std::this_thread::yield();
  }
  ready_.notify_all();
}

bool StageQueue::try_take(Item& item) noexcept {
  return ordered_ ? ordered_->try_take(item) : fifo_->try_pop(item);
}

StageRunner::StageRunner(std::string name, int threads, FunctionMaker make_function, std::size_t capacity,
                         bool ordered, StageContext context)
    : name_(std::move(name)),
      threads_(threads),
      make_function_(std::move(make_function)),
      queue_(capacity, ordered),
      context_(context) {
  if (context_.trace) {
    for (int t = 0; t < threads_; ++t) lanes_.push_back(context_.trace->add_lane(name_ + " #" + std::to_string(t)));
  } else {
    lanes_.assign(static_cast<std::size_t>(threads_), 0);
  }
}

StageRunner::~StageRunner() { stop(); }

void StageRunner::start(Sink sink) {
  sink_ = std::move(sink);
  try {
    for (int t = 0; t < threads_; ++t) pool_.emplace_back([this, t] { loop(lanes_[static_cast<std::size_t>(t)]); });
  } catch (const std::system_error& e) {
    throw Error("could not start the threads of stage '" + name_ + "': " + e.what());
  }
}

void StageRunner::stop() {
  queue_.ready().notify_all();
  for (std::thread& t : pool_) {
    if (t.joinable()) t.join();
  }
  pool_.clear();
}

void StageRunner::loop(std::uint32_t lane) {
  t_stage_owner = context_.owner;
  const auto stopping = [this] { return context_.stopping->load(std::memory_order_acquire); };
  Stage::Function function;
  std::string setup_error;
  try {
    function = make_function_();
  } catch (const std::exception& e) {
    setup_error = e.what();  // every sample this thread takes fails with it
  }
  for (;;) {
    Item item;
    bool got = false;
    queue_.ready().wait_until([&] { return (got = queue_.try_take(item)) || stopping(); }, Clock::time_point::max());
    if (!got || stopping()) return;  // stop() discards whatever is still queued
    const Clock::time_point start = context_.metrics || context_.trace ? Clock::now() : Clock::time_point();
    if (item.ok() && (context_.cancelling->load(std::memory_order_acquire) || item.cancel_requested())) {
      item.cancel();
    }
    if (item.ok()) {
      Sample& s = item.sample;
      // The metadata is the sample's identity: a stage may change the tensors, not who they belong
      // to. The stream id is moved aside (no allocation), so nothing here can throw outside the try.
      std::string stream_id = std::move(s.stream_id);
      const std::int64_t frame_id = s.frame_id, pts_ns = s.pts_ns;
      const std::uint64_t input_seq = s.input_seq;
      const auto restore = [&] {
        s.stream_id = std::move(stream_id);
        s.frame_id = frame_id;
        s.pts_ns = pts_ns;
        s.input_seq = input_seq;
      };
      try {
        s.stream_id = stream_id;  // the function sees it too
        if (!setup_error.empty()) throw Error(setup_error);
        function(s);
        if (s.names.size() != s.tensors.size()) s.names.resize(s.tensors.size());
        restore();
      } catch (const abi::__forced_unwind&) {
        throw;  // the thread is being ended (pthread_exit, as Python does at exit): let it
      } catch (const std::exception& e) {
        restore();
        item.fail("stage '" + name_ + "' failed: " + e.what());
      } catch (...) {
        restore();
        item.fail("stage '" + name_ + "' failed with an exception that is not a std::exception");
      }
    }
    if (context_.metrics || context_.trace) {
      const Clock::time_point end = Clock::now();
      if (context_.metrics) {
        const auto ns = [](Clock::duration d) {
          return static_cast<std::uint64_t>(std::max<std::int64_t>(
              0, std::chrono::duration_cast<std::chrono::nanoseconds>(d).count()));
        };
        clock_.record(1, ns(start - item.queued), ns(end - start));
      }
      if (context_.trace) context_.trace->record(lane, item, start, end);
      item.queued = end;
    }
    sink_(std::move(item));
  }
}

}  // namespace ringflow

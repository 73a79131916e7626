// The middle of a Run: admission (credits and numbering), batching, and inference on the workers.
#include <algorithm>
#include <cstring>

#include "ringflow/errors.hpp"
#include "run_impl.hpp"

namespace ringflow {
namespace {

// A row-major view of rows [first, first + count) of `rows`-row `whole`, sharing its buffer.
Tensor row_slice(const Tensor& whole, std::size_t first, std::size_t count, std::size_t rows) {
  Shape shape = whole.shape();
  shape[0] = shape[0] / static_cast<std::int64_t>(rows) * static_cast<std::int64_t>(count);
  const std::size_t row_bytes = whole.size_bytes() / rows;
  const Mapping m = whole.map_read();
  auto* base = static_cast<std::uint8_t*>(const_cast<void*>(m.data));
  return Tensor::borrow(whole.dtype(), std::move(shape), base + first * row_bytes, m.keepalive);
}

}  // namespace

bool RunImpl::take_credit(bool wait_for_one) {
  const auto try_take = [this] {
    std::int64_t free = credits_.load(std::memory_order_relaxed);
    while (free > 0) {
      if (credits_.compare_exchange_weak(free, free - 1, std::memory_order_acquire, std::memory_order_relaxed)) {
        return true;
      }
    }
    return false;
  };
  if (try_take()) return true;
  if (!wait_for_one) return false;
  credit_freed_.wait_until([&] { return try_take() || stopping(); }, Clock::time_point::max());
  return !stopping();
}

void RunImpl::return_credit() {
  credits_.fetch_add(1, std::memory_order_release);
  credit_freed_.notify_all();
}

// Takes the next pushed sample and numbers it, once a result slot is free for it (a credit).
bool RunImpl::admit(Item& item, Clock::time_point deadline, bool until_closed) {
  bool got = input_.try_pop(item);
  if (!got && deadline > Clock::now()) {
    input_ready_.wait_until(
        [&] { return (got = input_.try_pop(item)) || stopping() || (until_closed && is_closed()); }, deadline);
  }
  if (!got || stopping()) return false;
  input_space_.notify_all();
  item.ordinal = next_ordinal_++;
  if (metrics()) item.queued = Clock::now();
  if (cancelling_.load(std::memory_order_acquire) || item.cancel_requested()) item.cancel();
  return true;
}

// With stages before the model: numbers the samples and hands them to the first stage.
void RunImpl::admission_loop() {
  for (;;) {
    Item item;
    if (!take_credit(true)) return;
    if (!admit(item, Clock::time_point::max(), /*until_closed=*/false)) return;
    pre_.front()->put(std::move(item));
  }
}

// The dispatcher's next sample: admitted here (the caller holds a credit for it), or, with stages
// before the model, from the last of them (`until_closed` does not apply: more may still come).
bool RunImpl::next_item(Item& item, Clock::time_point deadline, bool until_closed) {
  if (!batch_input_) return admit(item, deadline, until_closed);
  StageQueue& queue = *batch_input_;
  bool got = queue.try_take(item);
  if (!got && deadline > Clock::now()) {
    queue.ready().wait_until([&] { return (got = queue.try_take(item)) || stopping(); }, deadline);
  }
  if (!got || stopping()) return false;
  if (item.ok() && (cancelling_.load(std::memory_order_acquire) || item.cancel_requested())) item.cancel();
  if (item.ok() && user_stages_before_) {
    // What the user's stages made is checked against the model here, as push() checks otherwise.
    try {
      item.sample.tensors = model_->inputs_in_model_order(item.sample);
      item.sample.names.assign(item.sample.tensors.size(), std::string());
      check_tensors(item.sample, model_->inputs);
    } catch (const std::exception& e) {
      item.fail("stage '" + pre_.back()->name() + "' made a sample the model does not take: " + e.what());
    }
  }
  return true;
}

bool RunImpl::batchable(const Item& first, const Item& next) const {
  if (!next.ok()) return false;
  const std::vector<Tensor>& a = first.sample.tensors;
  const std::vector<Tensor>& b = next.sample.tensors;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].shape() != b[i].shape()) return false;
  }
  return true;
}

void RunImpl::dispatch_loop() {
  const std::size_t max_batch = static_cast<std::size_t>(options.max_batch);
  const auto max_delay = std::chrono::microseconds(options.max_delay_us);
  // Credits are taken here unless an admission thread took them for the stages before the model.
  const bool credits_here = !batch_input_;
  // A sample that ended the previous batch (another shape, or failed upstream); it starts the next.
  std::optional<Item> carry;
  for (;;) {
    Batch batch;
    try {
      batch.items.reserve(max_batch);
      if (carry) {
        batch.items.push_back(std::move(*carry));
        carry.reset();
      } else {
        Item item;
        if (credits_here && !take_credit(true)) return;
        if (!next_item(item, Clock::time_point::max(), /*until_closed=*/false)) return;
        batch.items.push_back(std::move(item));
      }
      if (!batch.items.front().ok()) {
        // Failed or cancelled before inference: it goes on as it is, in its place.
        after_inference(std::move(batch.items.front()));
        continue;
      }
      const Clock::time_point first_at = Clock::now();
      // Gather samples of the same shape until the batch is full, the delay has passed, or no
      // result slot is free. Without stages before the model, nothing new can be admitted after
      // close_input(), so a partial batch goes at once.
      while (batch.items.size() < max_batch && (!credits_here || take_credit(false))) {
        Item item;
        if (!next_item(item, first_at + max_delay, /*until_closed=*/true)) {
          if (credits_here) return_credit();
          break;
        }
        if (!batchable(batch.items.front(), item)) {
          carry.emplace(std::move(item));
          break;
        }
        batch.items.push_back(std::move(item));
      }
    } catch (const std::exception& e) {
      // Only an allocation can fail here; the samples already taken fail, nothing is lost.
      for (Item& item : batch.items) fail(std::move(item), std::string("dispatch failed: ") + e.what());
      continue;
    }
    if (stopping()) return;
    dispatch(batch);
  }
}

void RunImpl::dispatch(Batch& batch) {
  if (metrics() && pre_.empty()) {
    // Without a preprocess stage, "preprocess" reports the wait for dispatch.
    const Clock::time_point now = Clock::now();
    std::uint64_t waited = 0;
    for (Item& item : batch.items) waited += ns_between(item.pushed, now);
    preprocess_clock_.record(batch.items.size(), waited, 0);
  }
  if (dispatcher_infers_) {
    infer(batch.items, 0);
  } else {
    // Credits bound the batches in flight by the queue's capacity, so this always succeeds.
    while (!infer_queue_.try_push(batch)) std::this_thread::yield();
    infer_ready_.notify_all();
  }
}

void RunImpl::worker_loop(std::size_t worker) {
  for (;;) {
    Batch batch;
    bool got = false;
    infer_ready_.wait_until([&] { return (got = infer_queue_.try_pop(batch)) || stopping(); },
                            Clock::time_point::max());
    if (!got || stopping()) return;
    infer(batch.items, worker);
  }
}

Tensor RunImpl::output_tensor(std::size_t output, const Shape& shape) {
  const DType dtype = outputs()[output].dtype;
  if (pools_.empty()) return Tensor::empty(dtype, shape);
  // A pool per buffer size, up to a handful: a model whose output sizes vary without end gets
  // fresh buffers past that, instead of idle pools holding memory for sizes never seen again.
  constexpr std::size_t kMaxPools = 16;
  const std::size_t bytes = element_count(shape) * dtype_size(dtype);
  std::shared_ptr<BufferPool> pool;
  {
    OutputPools& pools = *pools_[output];
    std::lock_guard<std::mutex> lock(pools.mutex);
    for (const auto& [size, p] : pools.by_bytes) {
      if (size == bytes) pool = p;
    }
    if (!pool && pools.by_bytes.size() < kMaxPools) {
      // Up to capacity() results can be alive at once; keeping that many idle buffers means a
      // consumer that holds a full Run's results and lets them go never causes a reallocation.
      pool = BufferPool::create(bytes, capacity());
      pools.by_bytes.emplace_back(bytes, pool);
    }
  }
  if (!pool) return Tensor::empty(dtype, shape);
  std::shared_ptr<const void> buffer = pool->acquire();
  void* data = const_cast<void*>(buffer.get());
  return Tensor::borrow(dtype, shape, data, std::move(buffer));
}

std::vector<Tensor> RunImpl::run_model(const std::vector<Item>& items, std::size_t worker) {
  const std::size_t n = items.size();
  std::vector<Tensor> inputs;
  if (n == 1) {
    inputs = items[0].sample.tensors;
  } else {
    // Stack the samples (all of one shape) along dimension 0, in this worker's scratch buffers.
    for (std::size_t i = 0; i < model_->inputs.size(); ++i) {
      const Tensor& first = items[0].sample.tensors[i];
      Shape shape = first.shape();
      shape[0] *= static_cast<std::int64_t>(n);
      const std::size_t bytes = first.size_bytes() * n;
      Tensor& scratch = batch_scratch_[worker][i];
      if (scratch.size_bytes() < bytes) scratch = Tensor::empty(DType::UInt8, {static_cast<std::int64_t>(bytes)});
      const MutableMapping m = scratch.map_write();
      auto* dst = static_cast<std::uint8_t*>(m.data);
      for (const Item& j : items) {
        const Mapping src = j.sample.tensors[i].map_read();
        std::memcpy(dst, src.data, src.size_bytes);
        dst += src.size_bytes;
      }
      inputs.push_back(Tensor::borrow(first.dtype(), std::move(shape), m.data, m.keepalive));
    }
  }
  // Outputs whose shape the inputs determine are preallocated (pooled); the rest ORT allocates.
  std::vector<Tensor> results(outputs().size());
  for (std::size_t o = 0; o < results.size(); ++o) {
    if (std::optional<Shape> shape = model_->output_shape(o, inputs)) results[o] = output_tensor(o, *shape);
  }
  model_->infer(*session_, inputs, results, *run_options_[worker]);
  if (n > 1) {
    for (std::size_t o = 0; o < results.size(); ++o) {
      const Shape& shape = results[o].shape();
      if (shape.empty() || shape[0] % static_cast<std::int64_t>(n) != 0) {
        throw InferenceError("output '" + outputs()[o].name + "' is " + results[o].describe() + " for a batch of " +
                             std::to_string(n) + " samples, so it cannot be split by sample");
      }
    }
  }
  return results;
}

void RunImpl::infer(std::vector<Item>& items, std::size_t worker) {
  // Samples cancelled while they waited in the batch (all of them, after Run::cancel()) go on as
  // Cancelled; the rest run.
  const bool cancelling = cancelling_.load(std::memory_order_acquire);
  if (cancelling || std::any_of(items.begin(), items.end(), [](const Item& i) { return i.cancel_requested(); })) {
    std::size_t kept = 0;
    for (Item& item : items) {
      if (cancelling || item.cancel_requested()) {
        item.cancel();
        after_inference(std::move(item));
      } else {
        if (&item != &items[kept]) items[kept] = std::move(item);
        ++kept;
      }
    }
    items.resize(kept);
    if (items.empty()) return;
  }
  const std::size_t n = items.size();
  const Clock::time_point start = Clock::now();
  std::vector<Tensor> results;
  std::string error;
  try {
    results = run_model(items, worker);
  } catch (const std::exception& e) {
    error = e.what();
  } catch (...) {
    error = "unknown exception";
  }
  if (!error.empty()) {
    if (n > 1 && !stopping()) {
      // One failure stays one failure: retry the samples one by one, so only those that fail on
      // their own get an error.
      std::vector<Item> one(1);
      for (Item& item : items) {
        one[0] = std::move(item);
        infer(one, worker);
      }
      return;
    }
    for (Item& item : items) fail(std::move(item), error);
    return;
  }
  const Clock::time_point inferred = Clock::now();
  batches_.fetch_add(1, std::memory_order_relaxed);
  batched_samples_.fetch_add(n, std::memory_order_relaxed);
  // Recorded before delivery, so stats() read after the last pull already include this batch.
  if (metrics()) {
    std::uint64_t waited = 0;
    for (const Item& item : items) waited += ns_between(item.queued, start);
    inference_clock_.record(n, waited, ns_between(start, inferred) * n);
  }
  if (trace_) trace_->record(inference_lanes_[worker], items.data(), n, start, inferred);
  for (std::size_t k = 0; k < n; ++k) {
    Item& item = items[k];
    try {
      std::vector<Tensor> tensors;
      std::vector<std::string> names;
      for (std::size_t o = 0; o < results.size(); ++o) {
        if (n == 1) {
          tensors.push_back(results[o]);
        } else {
          const std::size_t rows = static_cast<std::size_t>(results[o].shape()[0]);
          Tensor row = row_slice(results[o], k * rows / n, rows / n, rows);
          // Owned: each result gets its own buffer, so holding one never pins the whole batch.
          tensors.push_back(pools_.empty() ? row.clone() : std::move(row));
        }
        names.push_back(outputs()[o].name);
      }
      item.sample.tensors = std::move(tensors);
      item.sample.names = std::move(names);
    } catch (const std::exception& e) {
      item.fail(std::string("could not hand the result on: ") + e.what());
    }
    if (metrics()) item.queued = inferred;
    after_inference(std::move(item));
  }
  if (metrics()) postprocess_clock_.record(n, 0, ns_between(inferred, Clock::now()) * n);
}

void RunImpl::fail(Item&& item, std::string error) noexcept {
  item.fail(std::move(error));
  after_inference(std::move(item));
}

// From inference (or a sample that failed before it) on through the stages after the model.
void RunImpl::after_inference(Item&& item) noexcept {
  if (post_.empty()) {
    deliver(std::move(item));
  } else {
    post_.front()->put(std::move(item));
  }
}

}  // namespace ringflow

#include "ringflow/run.hpp"

#include <cstring>

#include "ringflow/errors.hpp"
#include "run_impl.hpp"

namespace ringflow {
namespace {

std::uint64_t ns_between(Clock::time_point from, Clock::time_point to) {
  return to > from ? static_cast<std::uint64_t>(
                         std::chrono::duration_cast<std::chrono::nanoseconds>(to - from).count())
                   : 0;
}

std::int64_t ns_since_epoch(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

// A row-major view of rows [first, first + count) of `rows`-row `whole`, sharing its buffer.
Tensor row_slice(const Tensor& whole, std::size_t first, std::size_t count, std::size_t rows) {
  Shape shape = whole.shape();
  shape[0] = shape[0] / static_cast<std::int64_t>(rows) * static_cast<std::int64_t>(count);
  const std::size_t row_bytes = whole.size_bytes() / rows;
  const Mapping m = whole.map_read();
  auto* base = static_cast<std::uint8_t*>(const_cast<void*>(m.data));
  return Tensor::borrow(whole.dtype(), std::move(shape), base + first * row_bytes, m.keepalive);
}

Shape batched(Shape shape, std::size_t batch_size) {
  shape[0] *= static_cast<std::int64_t>(batch_size);
  return shape;
}

}  // namespace

const char* pull_status_name(PullStatus status) {
  switch (status) {
    case PullStatus::Ok: return "Ok";
    case PullStatus::Timeout: return "Timeout";
    case PullStatus::Closed: return "Closed";
    case PullStatus::Error: return "Error";
  }
  return "Unknown";
}

const char* drop_reason_name(DropReason reason) {
  switch (reason) {
    case DropReason::QueueFull: return "QueueFull";
    case DropReason::Evicted: return "Evicted";
  }
  return "Unknown";
}

RunOptions RunOptions::Realtime() {
  RunOptions o;
  o.queue_depth = 2;
  o.overflow_policy = OverflowPolicy::KeepLatest;
  return o;
}

RunOptions RunOptions::Balanced() { return RunOptions(); }

RunOptions RunOptions::Reliable() {
  RunOptions o;
  o.queue_depth = 64;
  o.overflow_policy = OverflowPolicy::Block;
  return o;
}

RunImpl::RunImpl(std::shared_ptr<const ModelImpl> model, RunOptions run_options,
                 std::vector<TensorSpec> push_specs, std::vector<TensorSpec> model_specs,
                 std::vector<TensorSpec> output_specs)
    : options(std::move(run_options)),
      push_inputs(std::move(push_specs)),
      model_inputs(std::move(model_specs)),
      outputs(std::move(output_specs)),
      model_(std::move(model)),
      dispatcher_infers_(options.workers == 1 && !model_->options.preprocess.enabled()),
      result_capacity_(options.queue_depth +
                       static_cast<std::size_t>(options.workers) * static_cast<std::size_t>(options.max_batch)),
      input_(options.queue_depth),
      infer_queue_(result_capacity_),
      credits_(static_cast<std::int64_t>(result_capacity_)),
      ordered_results_(options.ordered ? result_capacity_ : 0),
      unordered_results_(result_capacity_) {
  // Several requests sharing the cores each get their share of ORT threads, unless the model was
  // loaded with an explicit thread count.
  int threads = 0;
  if (options.workers > 1 && model_->options.session.intra_op_threads == 0) {
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    threads = std::max(1, cores / options.workers);
  }
  session_ = model_->session(threads);
  for (std::size_t i = 0; i < ordered_results_.size(); ++i) {
    ordered_results_[i].writable_ordinal.store(i, std::memory_order_relaxed);
  }
  if (model_->options.preprocess.enabled()) preprocessor_.emplace(model_->options.preprocess, model_inputs[0]);

  const std::size_t batch = static_cast<std::size_t>(options.max_batch);
  for (int w = 0; w < options.workers; ++w) {
    run_options_.push_back(std::make_unique<Ort::RunOptions>());
    std::vector<Tensor> scratch;
    if (batch > 1) {
      for (const TensorSpec& spec : model_inputs) {
        scratch.push_back(Tensor::empty(spec.dtype, batched(spec.shape, batch)));
      }
    }
    batch_inputs_.push_back(std::move(scratch));
  }
  if (options.output_memory == OutputMemory::Pooled) {
    for (const TensorSpec& spec : outputs) {
      const std::size_t bytes = element_count(spec.shape) * dtype_size(spec.dtype);
      std::vector<std::shared_ptr<BufferPool>> by_batch;
      // Up to capacity() results can be alive at once; keeping that many idle buffers means a
      // consumer that holds a full Run's results and lets them go never causes a reallocation.
      for (std::size_t n = 1; n <= batch; ++n) {
        by_batch.push_back(BufferPool::create(bytes * n, options.queue_depth + result_capacity_));
      }
      pools_.push_back(std::move(by_batch));
    }
  }

  threads_.emplace_back([this] { dispatch_loop(); });
  if (!dispatcher_infers_) {
    for (int w = 0; w < options.workers; ++w) threads_.emplace_back([this, w] { worker_loop(w); });
  }
}

RunImpl::~RunImpl() {
  close_input();
  stopping_.store(true, std::memory_order_seq_cst);
  // Abort inferences in flight rather than wait out a long model; their results are discarded.
  for (auto& ro : run_options_) ro->SetTerminate();
  for (EventCount* ec : {&input_ready_, &input_space_, &infer_ready_, &credit_freed_, &result_ready_}) {
    ec->notify_all();
  }
  for (std::thread& t : threads_) t.join();
}

// ---- push side ---------------------------------------------------------------------------------

void RunImpl::validate(Sample& sample) const {
  sample.tensors = model_->inputs_in_model_order(sample);
  sample.names.assign(sample.tensors.size(), std::string());
  if (preprocessor_) {
    preprocessor_->check_frame(sample.tensors[0]);
    return;
  }
  for (std::size_t i = 0; i < sample.tensors.size(); ++i) {
    check_against_spec(sample.tensors[i], model_inputs[i], "input");
  }
}

void RunImpl::report_drop(const Sample& sample, DropReason reason, std::string& callback_error) {
  if (!options.on_input_drop) return;
  DroppedInput dropped{sample.stream_id, sample.frame_id,
                       reason == DropReason::Evicted ? sample.input_seq : 0, reason};
  try {
    options.on_input_drop(dropped);
  } catch (const std::exception& e) {
    if (callback_error.empty()) callback_error = e.what();
  } catch (...) {
    if (callback_error.empty()) callback_error = "unknown exception";
  }
}

bool RunImpl::push(Sample sample, bool may_wait) {
  return *push(sample, may_wait ? PushMode::Wait : PushMode::NoWait);
}

std::optional<bool> RunImpl::push(Sample& sample, PushMode mode) {
  const bool may_wait = mode == PushMode::Wait;
  const Clock::time_point started = Clock::now();
  pushes_.fetch_add(1, std::memory_order_relaxed);

  // Register as a push in progress, so end of stream waits for this push to finish.
  std::uint64_t state = state_.load(std::memory_order_relaxed);
  do {
    if (state & 1) {
      push_failures_.fetch_add(1, std::memory_order_relaxed);
      throw ClosedError("push after close_input(): this Run accepts no more samples");
    }
  } while (!state_.compare_exchange_weak(state, state + 2, std::memory_order_acq_rel));
  struct Leave {
    RunImpl* run;
    ~Leave() {
      if (run->state_.fetch_sub(2, std::memory_order_acq_rel) & 1) run->result_ready_.notify_all();
    }
  } leave{this};

  try {
    validate(sample);
  } catch (...) {
    push_failures_.fetch_add(1, std::memory_order_relaxed);
    throw;
  }

  Job job{std::move(sample), {}, 0};
  job.times.pushed = started;
  const auto stamp = [](Job& j, std::size_t ticket) noexcept { j.sample.input_seq = ticket; };
  std::string callback_error;
  bool accepted = false;
  for (;;) {
    if (input_.try_push(job, stamp)) {
      accepted = true;
      break;
    }
    if (options.overflow_policy == OverflowPolicy::DropIncoming) {
      rejected_.fetch_add(1, std::memory_order_relaxed);
      report_drop(job.sample, DropReason::QueueFull, callback_error);
      break;
    }
    if (options.overflow_policy == OverflowPolicy::KeepLatest) {
      Job oldest;
      if (input_.try_pop(oldest)) {
        evicted_.fetch_add(1, std::memory_order_relaxed);
        report_drop(oldest.sample, DropReason::Evicted, callback_error);
      }
      continue;
    }
    if (mode == PushMode::IfRoom) {
      // Would wait: hand the sample back untouched and uncounted, for a waiting push to follow.
      pushes_.fetch_sub(1, std::memory_order_relaxed);
      sample = std::move(job.sample);
      return std::nullopt;
    }
    if (!may_wait) break;
    input_space_.wait_until([&] { return (accepted = input_.try_push(job, stamp)) || is_closed(); },
                            Clock::time_point::max());
    if (accepted) break;
    push_failures_.fetch_add(1, std::memory_order_relaxed);
    throw ClosedError("close_input() was called while this push waited for room; the sample was not accepted");
  }

  if (accepted) {
    accepted_.fetch_add(1, std::memory_order_release);
    input_ready_.notify_all();
    std::int64_t none = 0;
    first_push_ns_.compare_exchange_strong(none, ns_since_epoch(started), std::memory_order_relaxed);
    const std::uint64_t fill = input_.size_approx() * 1000 / input_.capacity();
    fill_permille_sum_.fetch_add(fill, std::memory_order_relaxed);
    std::uint64_t max = fill_permille_max_.load(std::memory_order_relaxed);
    while (fill > max && !fill_permille_max_.compare_exchange_weak(max, fill, std::memory_order_relaxed)) {
    }
  } else {
    push_failures_.fetch_add(1, std::memory_order_relaxed);
  }
  push_ns_.fetch_add(ns_between(started, Clock::now()), std::memory_order_relaxed);

  if (!callback_error.empty()) {
    throw CallbackError(std::string("on_input_drop threw: ") + callback_error + ". The drop was counted and " +
                        (accepted ? "this sample was accepted" : "this sample was not accepted") +
                        "; nothing else was lost.");
  }
  return accepted;
}

void RunImpl::close_input() {
  state_.fetch_or(1, std::memory_order_acq_rel);
  // Wake pullers, so they can report end of stream; pushers waiting for room, so they fail; and
  // the dispatcher, so it sends a partial batch without waiting out max_delay_us.
  result_ready_.notify_all();
  input_space_.notify_all();
  input_ready_.notify_all();
}

// ---- dispatch and inference --------------------------------------------------------------------

bool RunImpl::take_credit(bool wait) {
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
  if (!wait) return false;
  bool taken = false;
  credit_freed_.wait_until([&] { return (taken = try_take()) || stopping_.load(std::memory_order_acquire); },
                           Clock::time_point::max());
  return taken;
}

void RunImpl::return_credit() {
  credits_.fetch_add(1, std::memory_order_release);
  credit_freed_.notify_all();
}

bool RunImpl::next_input(Job& job, Clock::time_point deadline, bool until_closed) {
  bool got = input_.try_pop(job);
  if (!got && deadline > Clock::now()) {
    input_ready_.wait_until(
        [&] {
          return (got = input_.try_pop(job)) || stopping_.load(std::memory_order_acquire) ||
                 (until_closed && is_closed());
        },
        deadline);
  }
  if (got) input_space_.notify_all();
  return got && !stopping_.load(std::memory_order_acquire);
}

void RunImpl::dispatch_loop() {
  const std::size_t max_batch = static_cast<std::size_t>(options.max_batch);
  const auto max_delay = std::chrono::microseconds(options.max_delay_us);
  std::uint64_t next_ordinal = 0;
  for (;;) {
    Batch batch;
    Job job;
    if (!take_credit(true)) return;
    if (!next_input(job, Clock::time_point::max(), /*until_closed=*/false)) return;
    const Clock::time_point first_at = Clock::now();
    job.ordinal = next_ordinal++;
    batch.jobs.push_back(std::move(job));
    // Gather more until the batch is full, the delay has passed, or no result slot is free.
    while (batch.jobs.size() < max_batch && take_credit(false)) {
      // After close_input() nothing new can arrive, so a partial batch goes at once.
      if (!next_input(job, first_at + max_delay, /*until_closed=*/true)) {
        return_credit();
        break;
      }
      job.ordinal = next_ordinal++;
      batch.jobs.push_back(std::move(job));
    }
    if (stopping_.load(std::memory_order_acquire)) return;

    const Clock::time_point dispatched = Clock::now();
    std::uint64_t waited = 0;
    for (Job& j : batch.jobs) {
      j.times.dispatched = dispatched;
      waited += ns_between(j.times.pushed, dispatched);
    }
    if (preprocessor_) {
      std::vector<Job> ready;
      for (Job& j : batch.jobs) {
        try {
          j.sample.tensors[0] = preprocessor_->apply(j.sample.tensors[0]);
          ready.push_back(std::move(j));
        } catch (const std::exception& e) {
          fail(std::move(j), std::string("preprocess failed: ") + e.what());
        }
      }
      batch.jobs = std::move(ready);
    }
    if (metrics()) {
      const Clock::time_point done = Clock::now();
      for (Job& j : batch.jobs) j.times.dispatched = done;
      preprocess_clock_.record(batch.jobs.size(), waited, ns_between(dispatched, done) * batch.jobs.size());
    }
    if (batch.jobs.empty()) continue;

    if (dispatcher_infers_) {
      infer(batch, 0);
    } else {
      // Credits bound the batches in flight by the queue's capacity, so this always succeeds.
      while (!infer_queue_.try_push(batch)) std::this_thread::yield();
      infer_ready_.notify_all();
    }
  }
}

void RunImpl::worker_loop(std::size_t worker) {
  for (;;) {
    Batch batch;
    bool got = false;
    infer_ready_.wait_until(
        [&] { return (got = infer_queue_.try_pop(batch)) || stopping_.load(std::memory_order_acquire); },
        Clock::time_point::max());
    if (!got || stopping_.load(std::memory_order_acquire)) return;
    infer(batch, worker);
  }
}

Tensor RunImpl::output_tensor(std::size_t output, std::size_t batch_size) {
  const TensorSpec& spec = outputs[output];
  Shape shape = batched(spec.shape, batch_size);
  if (pools_.empty()) return Tensor::empty(spec.dtype, std::move(shape));
  std::shared_ptr<const void> buffer = pools_[output][batch_size - 1]->acquire();
  void* data = const_cast<void*>(buffer.get());
  return Tensor::borrow(spec.dtype, std::move(shape), data, std::move(buffer));
}

void RunImpl::infer(Batch& batch, std::size_t worker) {
  const std::size_t n = batch.jobs.size();
  const Clock::time_point start = Clock::now();
  std::vector<Tensor> results;
  try {
    std::vector<Tensor> inputs;
    if (n == 1) {
      inputs = batch.jobs[0].sample.tensors;
    } else {
      // Stack the samples into this worker's scratch buffers, viewed at this batch's size.
      for (std::size_t i = 0; i < model_inputs.size(); ++i) {
        Tensor stacked = row_slice(batch_inputs_[worker][i], 0, n, static_cast<std::size_t>(options.max_batch));
        auto* dst = static_cast<std::uint8_t*>(stacked.map_write().data);
        for (const Job& j : batch.jobs) {
          const Mapping m = j.sample.tensors[i].map_read();
          std::memcpy(dst, m.data, m.size_bytes);
          dst += m.size_bytes;
        }
        inputs.push_back(std::move(stacked));
      }
    }
    for (std::size_t o = 0; o < outputs.size(); ++o) results.push_back(output_tensor(o, n));
    model_->infer(*session_, inputs, results, *run_options_[worker]);
  } catch (const std::exception& e) {
    for (Job& j : batch.jobs) fail(std::move(j), e.what());
    return;
  }
  const Clock::time_point inferred = Clock::now();
  batches_.fetch_add(1, std::memory_order_relaxed);
  batched_samples_.fetch_add(n, std::memory_order_relaxed);

  std::vector<Result> finished(n);
  for (std::size_t k = 0; k < n; ++k) {
    Job& j = batch.jobs[k];
    Result& r = finished[k];
    r.times = j.times;
    r.ordinal = j.ordinal;
    r.sample = std::move(j.sample);
    r.sample.tensors.clear();
    r.sample.names.clear();
    for (std::size_t o = 0; o < outputs.size(); ++o) {
      if (n == 1) {
        r.sample.tensors.push_back(results[o]);
      } else if (pools_.empty()) {
        // Owned: each result gets its own buffer, so holding one never pins the whole batch.
        r.sample.tensors.push_back(row_slice(results[o], k, 1, n).clone());
      } else {
        r.sample.tensors.push_back(row_slice(results[o], k, 1, n));
      }
      r.sample.names.push_back(outputs[o].name);
    }
  }
  // Recorded before delivery, so stats() read after the last pull already include this batch.
  if (metrics()) {
    std::uint64_t waited = 0;
    for (const Result& r : finished) waited += ns_between(r.times.dispatched, start);
    inference_clock_.record(n, waited, ns_between(start, inferred) * n);
    postprocess_clock_.record(n, 0, ns_between(inferred, Clock::now()) * n);
  }
  for (Result& r : finished) deliver(std::move(r));
}

void RunImpl::fail(Job&& job, const std::string& error) {
  Result r;
  r.times = job.times;
  r.ordinal = job.ordinal;
  r.sample = std::move(job.sample);
  r.sample.tensors.clear();
  r.sample.names.clear();
  r.error = error;
  errors_.fetch_add(1, std::memory_order_relaxed);
  deliver(std::move(r));
}

void RunImpl::deliver(Result&& result) {
  if (metrics()) result.times.ready = Clock::now();
  if (options.ordered) {
    const std::uint64_t ordinal = result.ordinal;
    ResultSlot& slot = ordered_results_[ordinal % ordered_results_.size()];
    // Rarely waits: only while the puller of the previous lap is between its claim and its move.
    while (slot.writable_ordinal.load(std::memory_order_acquire) != ordinal) std::this_thread::yield();
    slot.result = std::move(result);
    slot.ready_ordinal.store(ordinal + 1, std::memory_order_release);
  } else {
    // A credit was taken for this result, so the ring has room.
    while (!unordered_results_.try_push(result)) std::this_thread::yield();
  }
  ready_.fetch_add(1, std::memory_order_relaxed);
  result_ready_.notify_all();
}

// ---- pull side ---------------------------------------------------------------------------------

bool RunImpl::drained() const {
  const std::uint64_t state = state_.load(std::memory_order_acquire);
  if (state != 1) return false;  // still open, or a push is in progress
  return pulled_.load(std::memory_order_acquire) + evicted_.load(std::memory_order_acquire) ==
         accepted_.load(std::memory_order_acquire);
}

PullResult RunImpl::pull(int timeout_ms) {
  const Clock::time_point deadline = deadline_after(timeout_ms);
  Result taken;
  const auto try_take = [&] {
    if (!options.ordered) return unordered_results_.try_pop(taken);
    for (;;) {
      std::uint64_t ordinal = next_pull_.load(std::memory_order_acquire);
      ResultSlot& slot = ordered_results_[ordinal % ordered_results_.size()];
      if (slot.ready_ordinal.load(std::memory_order_acquire) != ordinal + 1) return false;
      if (next_pull_.compare_exchange_strong(ordinal, ordinal + 1, std::memory_order_acq_rel)) {
        taken = std::move(slot.result);
        slot.writable_ordinal.store(ordinal + ordered_results_.size(), std::memory_order_release);
        return true;
      }
    }
  };

  bool got = try_take();
  if (!got) {
    if (drained()) return {PullStatus::Closed, std::nullopt, {}};
    if (timeout_ms == 0) return {PullStatus::Timeout, std::nullopt, {}};  // a poll: no spinning
    result_ready_.wait_until(
        [&] { return (got = try_take()) || drained() || stopping_.load(std::memory_order_acquire); }, deadline);
    if (!got) {
      const bool closed = drained() || stopping_.load(std::memory_order_acquire);
      return {closed ? PullStatus::Closed : PullStatus::Timeout, std::nullopt, {}};
    }
  }

  pulled_.fetch_add(1, std::memory_order_acq_rel);
  return_credit();
  const Clock::time_point now = Clock::now();
  last_pull_ns_.store(ns_since_epoch(now), std::memory_order_relaxed);
  if (metrics()) {
    latency_.record(ns_between(taken.times.pushed, now));
    reorder_clock_.record(1, ns_between(taken.times.ready, now), 0);
  }
  if (is_closed()) result_ready_.notify_all();  // the last pull may have ended the stream

  PullResult result;
  result.status = taken.error.empty() ? PullStatus::Ok : PullStatus::Error;
  result.error = std::move(taken.error);
  result.sample = std::move(taken.sample);
  return result;
}

Sample RunImpl::run_one(Sample sample, int timeout_ms) {
  std::lock_guard<std::mutex> lock(run_one_mutex_);
  const std::uint64_t in_flight = accepted_.load(std::memory_order_acquire) -
                                  evicted_.load(std::memory_order_acquire) -
                                  pulled_.load(std::memory_order_acquire);
  if (in_flight != 0) {
    throw Error("Run::run() needs an idle Run, but " + std::to_string(in_flight) +
                " pushed samples are not pulled yet; use push() and pull() instead");
  }
  if (!push(std::move(sample), true)) throw Error("Run::run(): the sample was dropped by the overflow policy");
  PullResult r = pull(timeout_ms);
  switch (r.status) {
    case PullStatus::Ok: return std::move(*r.sample);
    case PullStatus::Error: throw InferenceError(r.error);
    case PullStatus::Timeout:
      throw TimeoutError("Run::run() got no result within timeout_ms=" + std::to_string(timeout_ms));
    case PullStatus::Closed: break;
  }
  throw ClosedError("Run::run() on a closed Run");
}

// ---- measurement -------------------------------------------------------------------------------

InputStats RunImpl::input_stats() const {
  InputStats s;
  s.pushes = pushes_.load(std::memory_order_relaxed);
  s.push_failures = push_failures_.load(std::memory_order_relaxed);
  // Evictions are read first: a sample is counted accepted just after it becomes evictable, so a
  // snapshot can briefly see an eviction before its acceptance.
  const std::uint64_t evicted = evicted_.load(std::memory_order_acquire);
  const std::uint64_t accepted = accepted_.load(std::memory_order_acquire);
  // An evicted sample was enqueued and then dropped; it counts once, as dropped.
  s.inputs_enqueued = accepted > evicted ? accepted - evicted : 0;
  s.inputs_dropped = evicted + rejected_.load(std::memory_order_relaxed);
  if (s.pushes) s.avg_push_us = static_cast<double>(push_ns_.load(std::memory_order_relaxed)) / s.pushes / 1e3;
  if (accepted) {
    s.avg_queue_fill = static_cast<double>(fill_permille_sum_.load(std::memory_order_relaxed)) / accepted / 1000;
  }
  s.max_queue_fill = static_cast<double>(fill_permille_max_.load(std::memory_order_relaxed)) / 1000;
  return s;
}

RunStats RunImpl::stats() const {
  RunStats s;
  s.input = input_stats();
  s.outputs_ready = ready_.load(std::memory_order_relaxed);
  s.outputs_pulled = pulled_.load(std::memory_order_relaxed);
  s.errors = errors_.load(std::memory_order_relaxed);
  s.batches = batches_.load(std::memory_order_relaxed);
  if (s.batches) {
    s.avg_batch_size = static_cast<double>(batched_samples_.load(std::memory_order_relaxed)) / s.batches;
  }
  s.latency = latency_.summary();
  s.stages = {preprocess_clock_.snapshot("preprocess"), inference_clock_.snapshot("inference"),
              postprocess_clock_.snapshot("postprocess"), reorder_clock_.snapshot("reorder")};
  const std::int64_t first = first_push_ns_.load(std::memory_order_relaxed);
  const std::int64_t last = last_pull_ns_.load(std::memory_order_relaxed);
  if (first && last > first) {
    s.elapsed_s = static_cast<double>(last - first) / 1e9;
    s.throughput_fps = static_cast<double>(s.outputs_pulled) / s.elapsed_s;
  }
  return s;
}

// ---- Run: a thin handle ------------------------------------------------------------------------

Run::Run(std::unique_ptr<RunImpl> impl) : impl_(std::move(impl)) {}
Run::Run(Run&&) noexcept = default;
Run& Run::operator=(Run&&) noexcept = default;
Run::~Run() = default;

namespace {
RunImpl& live(const std::unique_ptr<RunImpl>& impl) {
  if (!impl) throw Error("this Run was moved from and no longer refers to a pipeline");
  return *impl;
}
}  // namespace

bool Run::push(const std::vector<Tensor>& inputs) { return live(impl_).push(make_sample(inputs), true); }
bool Run::push(Sample sample) { return live(impl_).push(std::move(sample), true); }
bool Run::try_push(const std::vector<Tensor>& inputs) { return live(impl_).push(make_sample(inputs), false); }
bool Run::try_push(Sample sample) { return live(impl_).push(std::move(sample), false); }
std::optional<bool> Run::push_if_room(Sample& sample) { return live(impl_).push(sample, RunImpl::PushMode::IfRoom); }
void Run::close_input() { live(impl_).close_input(); }

std::optional<Sample> Run::pull(int timeout_ms) {
  PullResult r = live(impl_).pull(timeout_ms);
  if (r.status == PullStatus::Error) {
    const Sample& s = *r.sample;
    throw InferenceError("sample input_seq=" + std::to_string(s.input_seq) +
                         " frame_id=" + std::to_string(s.frame_id) + " failed: " + r.error);
  }
  return std::move(r.sample);
}

PullResult Run::pull_with_status(int timeout_ms) { return live(impl_).pull(timeout_ms); }
Sample Run::run(const std::vector<Tensor>& inputs, int timeout_ms) {
  return live(impl_).run_one(make_sample(inputs), timeout_ms);
}
Sample Run::run(Sample sample, int timeout_ms) { return live(impl_).run_one(std::move(sample), timeout_ms); }
const std::vector<TensorSpec>& Run::input_specs() const { return live(impl_).push_inputs; }
const std::vector<TensorSpec>& Run::output_specs() const { return live(impl_).outputs; }
const RunOptions& Run::options() const { return live(impl_).options; }
std::size_t Run::capacity() const { return live(impl_).capacity(); }
RunStats Run::stats() const { return live(impl_).stats(); }
InputStats Run::input_stats() const { return live(impl_).input_stats(); }

}  // namespace ringflow

#include "ringflow/run.hpp"

#include "ringflow/errors.hpp"
#include "run_impl.hpp"

namespace ringflow {

const char* pull_status_name(PullStatus status) {
  switch (status) {
    case PullStatus::Ok: return "Ok";
    case PullStatus::Timeout: return "Timeout";
    case PullStatus::Closed: return "Closed";
    case PullStatus::Error: return "Error";
  }
  return "Unknown";
}

RunImpl::RunImpl(std::shared_ptr<const ModelImpl> model, RunOptions run_options,
                 std::vector<TensorSpec> push_specs, std::vector<TensorSpec> model_specs,
                 std::vector<TensorSpec> output_specs)
    : options(run_options),
      push_inputs(std::move(push_specs)),
      model_inputs(std::move(model_specs)),
      outputs(std::move(output_specs)),
      model_(std::move(model)),
      preprocess_queue_(options.queue_depth),
      infer_queue_(options.queue_depth),
      results_(options.queue_depth),
      free_slots_(static_cast<std::int64_t>(options.queue_depth)) {
  if (model_->options.preprocess.enabled()) {
    preprocessor_.emplace(model_->options.preprocess, model_inputs[0]);
    threads_.emplace_back([this] { preprocess_loop(); });
  }
  for (int w = 0; w < options.workers; ++w) {
    run_options_.push_back(std::make_unique<Ort::RunOptions>());
    threads_.emplace_back([this, w] { infer_loop(static_cast<std::size_t>(w)); });
  }
}

RunImpl::~RunImpl() {
  close_input();
  stopping_.store(true, std::memory_order_seq_cst);
  // Abort inferences in flight rather than wait out a long model; their results are discarded.
  for (auto& ro : run_options_) ro->SetTerminate();
  preprocess_ready_.notify_all();
  infer_ready_.notify_all();
  result_ready_.notify_all();
  slot_freed_.notify_all();
  for (std::thread& t : threads_) t.join();
}

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

bool RunImpl::try_acquire_slot() {
  std::int64_t free = free_slots_.load(std::memory_order_relaxed);
  while (free > 0) {
    if (free_slots_.compare_exchange_weak(free, free - 1, std::memory_order_acquire,
                                          std::memory_order_relaxed)) {
      return true;
    }
  }
  return false;
}

void RunImpl::release_slot() {
  free_slots_.fetch_add(1, std::memory_order_release);
  slot_freed_.notify_all();
}

bool RunImpl::is_closed() const { return admitted_.load(std::memory_order_acquire) & 1; }

bool RunImpl::push(Sample sample, bool wait) {
  if (is_closed()) throw ClosedError("push after close_input(): this Run accepts no more samples");
  validate(sample);

  bool acquired = try_acquire_slot();
  if (!acquired) {
    if (!wait) return false;
    slot_freed_.wait_until([&] { return (acquired = try_acquire_slot()) || is_closed(); },
                           Clock::time_point::max());
  }
  std::uint64_t admitted = admitted_.load(std::memory_order_relaxed);
  do {
    if (admitted & 1) {
      if (acquired) release_slot();
      throw ClosedError("push after close_input(): this Run accepts no more samples");
    }
  } while (!admitted_.compare_exchange_weak(admitted, admitted + 2, std::memory_order_acq_rel));

  sample.input_seq = admitted >> 1;
  if (preprocessor_) {
    enqueue(preprocess_queue_, preprocess_ready_, Job{std::move(sample)});
  } else {
    enqueue(infer_queue_, infer_ready_, Job{std::move(sample)});
  }
  return true;
}

void RunImpl::close_input() {
  admitted_.fetch_or(1, std::memory_order_acq_rel);
  // Wake pullers, so they can report end of stream, and pushers waiting for room, so they fail.
  result_ready_.notify_all();
  slot_freed_.notify_all();
}

void RunImpl::enqueue(RingBuffer<Job>& ring, EventCount& ready, Job&& job) {
  // Admission control bounds the jobs in flight by queue_depth, which is at most the ring's
  // capacity, so the ring always has room; the loop only guards that invariant.
  while (!ring.try_push(job)) std::this_thread::yield();
  ready.notify_all();
}

bool RunImpl::dequeue(RingBuffer<Job>& ring, EventCount& ready, Job& job) {
  bool got = false;
  ready.wait_until(
      [&] {
        got = ring.try_pop(job);
        return got || stopping_.load(std::memory_order_acquire);
      },
      Clock::time_point::max());
  return got && !stopping_.load(std::memory_order_acquire);
}

void RunImpl::deliver(Sample&& sample, std::string error) {
  const std::uint64_t seq = sample.input_seq;
  ResultSlot& slot = results_[seq % results_.size()];
  slot.sample = std::move(sample);
  slot.error = std::move(error);
  slot.ready_seq.store(seq + 1, std::memory_order_release);
  result_ready_.notify_all();
}

void RunImpl::preprocess_loop() {
  Job job;
  while (dequeue(preprocess_queue_, preprocess_ready_, job)) {
    try {
      job.sample.tensors[0] = preprocessor_->apply(job.sample.tensors[0]);
    } catch (const std::exception& e) {
      job.sample.tensors.clear();
      deliver(std::move(job.sample), std::string("preprocess failed: ") + e.what());
      continue;
    }
    enqueue(infer_queue_, infer_ready_, std::move(job));
  }
}

void RunImpl::infer_loop(std::size_t worker) {
  const Ort::RunOptions& run_options = *run_options_[worker];
  Job job;
  while (dequeue(infer_queue_, infer_ready_, job)) {
    Sample& sample = job.sample;
    std::string error;
    std::vector<Tensor> results;
    try {
      results.reserve(outputs.size());
      for (const TensorSpec& spec : outputs) results.push_back(Tensor::allocate(spec.dtype, spec.shape));
      model_->infer(sample.tensors, results, run_options);
    } catch (const std::exception& e) {
      error = e.what();
      results.clear();
    }
    sample.tensors = std::move(results);
    sample.names.clear();
    if (error.empty()) {
      for (const TensorSpec& spec : outputs) sample.names.push_back(spec.name);
    }
    deliver(std::move(sample), std::move(error));
  }
}

PullResult RunImpl::pull(int timeout_ms) {
  const Clock::time_point deadline = deadline_after(timeout_ms);
  for (;;) {
    std::uint64_t seq = next_pull_.load(std::memory_order_acquire);
    ResultSlot& slot = results_[seq % results_.size()];
    if (slot.ready_seq.load(std::memory_order_acquire) == seq + 1) {
      if (!next_pull_.compare_exchange_strong(seq, seq + 1, std::memory_order_acq_rel)) continue;
      PullResult result;
      result.sample = std::move(slot.sample);
      result.error = std::move(slot.error);
      result.status = result.error.empty() ? PullStatus::Ok : PullStatus::Error;
      release_slot();
      return result;
    }
    const std::uint64_t admitted = admitted_.load(std::memory_order_acquire);
    if ((admitted & 1) && seq == (admitted >> 1)) return {PullStatus::Closed, std::nullopt, {}};

    const bool woke = result_ready_.wait_until(
        [&] {
          const std::uint64_t s = next_pull_.load(std::memory_order_acquire);
          if (s != seq) return true;  // another puller advanced: look again
          if (results_[s % results_.size()].ready_seq.load(std::memory_order_acquire) == s + 1) return true;
          const std::uint64_t a = admitted_.load(std::memory_order_acquire);
          return ((a & 1) && s == (a >> 1)) || stopping_.load(std::memory_order_acquire);
        },
        deadline);
    if (!woke) return {PullStatus::Timeout, std::nullopt, {}};
    if (stopping_.load(std::memory_order_acquire)) return {PullStatus::Closed, std::nullopt, {}};
  }
}

Sample RunImpl::run_one(const std::vector<Tensor>& inputs, int timeout_ms) {
  std::lock_guard<std::mutex> lock(run_one_mutex_);
  const std::uint64_t in_flight = (admitted_.load(std::memory_order_acquire) >> 1) -
                                  next_pull_.load(std::memory_order_acquire);
  if (in_flight != 0) {
    throw Error("Run::run() needs an idle Run, but " + std::to_string(in_flight) +
                " pushed samples are not pulled yet; use push() and pull() instead");
  }
  push(make_sample(inputs), true);
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

// Run: a thin handle.

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

void Run::push(const std::vector<Tensor>& inputs) { live(impl_).push(make_sample(inputs), true); }
void Run::push(Sample sample) { live(impl_).push(std::move(sample), true); }
bool Run::try_push(const std::vector<Tensor>& inputs) { return live(impl_).push(make_sample(inputs), false); }
bool Run::try_push(Sample sample) { return live(impl_).push(std::move(sample), false); }
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
  return live(impl_).run_one(inputs, timeout_ms);
}
const std::vector<TensorSpec>& Run::input_specs() const { return live(impl_).push_inputs; }
const std::vector<TensorSpec>& Run::output_specs() const { return live(impl_).outputs; }
const RunOptions& Run::options() const { return live(impl_).options; }

}  // namespace ringflow

#include "ringflow/run.hpp"

#include <cxxabi.h>

#include <cstring>
#include <system_error>

#include "ringflow/errors.hpp"
#include "fork_guard.hpp"
#include "run_impl.hpp"
#include "testing_hooks.hpp"
#include "waiting.hpp"

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

}  // namespace

const char* pull_status_name(PullStatus status) {
  switch (status) {
    case PullStatus::Ok: return "Ok";
    case PullStatus::Timeout: return "Timeout";
    case PullStatus::Closed: return "Closed";
    case PullStatus::Error: return "Error";
    case PullStatus::Cancelled: return "Cancelled";
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

// ---- waiting, stopping, fork ---------------------------------------------------------------------

namespace {

// The wait check installed by ScopedWaitCheck on this thread, if any.
thread_local const std::function<void()>* t_wait_check = nullptr;
// The Run whose on_input_drop this thread is inside, if any: a push into it from there is refused.
thread_local const RunImpl* t_in_drop_callback = nullptr;
// The Run whose result callback this thread is inside, if any: stopping it from there is refused.
thread_local const RunImpl* t_in_result_callback = nullptr;

void (*g_input_claim_hook)() = nullptr;

}  // namespace

ScopedWaitCheck::ScopedWaitCheck(std::function<void()> check)
    : check_(std::move(check)), previous_(t_wait_check) {
  t_wait_check = &check_;
}

ScopedWaitCheck::~ScopedWaitCheck() { t_wait_check = previous_; }

void testing::set_input_claim_hook(void (*hook)()) { g_input_claim_hook = hook; }

const std::function<void()>* wait_check() noexcept { return t_wait_check; }

// Counts a thread into push/pull/run for stop() to wait on; see callers_ in run_impl.hpp.
class RunImpl::Caller {
 public:
  explicit Caller(RunImpl& run) : run_(run) {
    check_not_forked(run.generation_, "this Run");
    run_.callers_.fetch_add(1, std::memory_order_seq_cst);
  }
  // The decrement is the caller's last touch of the Run: once stop() sees zero, the Run may be
  // freed at once, so nothing (not even a wake-up) may follow it. stop() polls instead.
  ~Caller() { run_.callers_.fetch_sub(1, std::memory_order_seq_cst); }
  bool stopped() const { return run_.stopping_.load(std::memory_order_seq_cst); }

 private:
  RunImpl& run_;
};

bool RunImpl::forked() const { return generation_ != fork_generation(); }

RunImpl::RunImpl(std::shared_ptr<const ModelImpl> model, RunOptions run_options, std::vector<TensorSpec> push_specs,
                 std::vector<Shape> max_shapes, std::vector<Stage> before, std::vector<Stage> after)
    : options(std::move(run_options)),
      push_inputs(std::move(push_specs)),
      model_(std::move(model)),
      max_shapes_(std::move(max_shapes)),
      generation_(fork_generation()),
      result_capacity_(options.queue_depth +
                       static_cast<std::size_t>(options.workers) * static_cast<std::size_t>(options.max_batch)),
      dispatcher_infers_(options.workers == 1),
      input_(options.queue_depth),
      infer_queue_(result_capacity_),
      credits_(static_cast<std::int64_t>(result_capacity_)),
      results_(result_capacity_, options.ordered),
      result_ready_(results_.ready()) {
  // Several requests sharing the cores each get their share of ORT threads, unless the model was
  // loaded with an explicit thread count.
  int threads = 0;
  if (options.workers > 1 && model_->options.session.intra_op_threads == 0) {
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    threads = std::max(1, cores / options.workers);
  }
  session_ = model_->session(threads);
  input_.set_after_claim_for_testing(g_input_claim_hook);
  if (model_->options.preprocess.enabled()) {
    const Shape& model_shape = model_->inputs[0].shape;
    if (model_shape.size() == 4 && model_shape[2] >= 0 && model_shape[3] >= 0) {
      preprocessor_.emplace(model_->options.preprocess, preprocessed_input(model_->inputs[0], 1, 1));
      preprocess_pool_ = BufferPool::create(element_count(preprocessor_->model_input().shape) * sizeof(float),
                                            result_capacity_);
    }
  }
  for (int w = 0; w < options.workers; ++w) {
    run_options_.push_back(std::make_unique<Ort::RunOptions>());
    batch_scratch_.emplace_back(model_->inputs.size());
  }
  if (options.output_memory == OutputMemory::Pooled) {
    for (std::size_t o = 0; o < outputs().size(); ++o) pools_.push_back(std::make_unique<OutputPools>());
  }
  add_stages(std::move(before), std::move(after));
  start_threads();
}

void RunImpl::add_stages(std::vector<Stage> before, std::vector<Stage> after) {
  user_stages_before_ = !before.empty();
  const bool preprocess = model_->options.preprocess.enabled();
  if (options.trace_samples > 0) {
    const std::size_t stages = before.size() + after.size() + (preprocess ? 1 : 0) + 1;
    trace_ = std::make_unique<TraceLog>(options.trace_samples, stages);
  }
  const StageContext context{&stopping_, &cancelling_, trace_.get(), options.enable_metrics};
  const auto runner = [&](const std::string& name, int threads, StageRunner::FunctionMaker make) {
    return std::make_unique<StageRunner>(name, threads, std::move(make), result_capacity_, options.ordered, context);
  };
  for (Stage& stage : before) {
    // Each thread calls the one function: a stage's function must be safe to call concurrently
    // when it asks for several threads, as OpenVINO's task executors require too.
    auto shared = std::make_shared<Stage>(std::move(stage));
    pre_.push_back(runner(shared->name(), shared->threads(), [shared] {
      return Stage::Function([shared](Sample& s) { shared->function()(s); });
    }));
  }
  if (preprocess) {
    pre_.push_back(runner("preprocess", std::max(1, model_->options.preprocess.threads),
                          [this] { return preprocess_function(); }));
  }
  if (trace_) {
    for (int w = 0; w < options.workers; ++w) {
      inference_lanes_.push_back(trace_->add_lane("inference #" + std::to_string(w)));
    }
  }
  for (Stage& stage : after) {
    auto shared = std::make_shared<Stage>(std::move(stage));
    post_.push_back(runner(shared->name(), shared->threads(), [shared] {
      return Stage::Function([shared](Sample& s) { shared->function()(s); });
    }));
  }
  if (!pre_.empty()) batch_input_ = std::make_unique<StageQueue>(result_capacity_, options.ordered);
}

// The built-in preprocessing, for one thread: frames of a size met before reuse their resize taps,
// and a model of fixed size gets its inputs from a pool instead of a fresh allocation per frame.
Stage::Function RunImpl::preprocess_function() const {
  struct Scratch {
    Preprocessor::Taps taps;
    std::optional<Preprocessor> sized;  // for a model of dynamic size: the last frame size's
    Shape sized_for;
  };
  auto scratch = std::make_shared<Scratch>();
  return [this, scratch](Sample& s) {
    if (s.tensors.empty()) throw ShapeError("preprocess needs a frame, but the sample has no tensors");
    const Tensor& frame = s.tensors[0];
    const Preprocessor* pre = preprocessor_ ? &*preprocessor_ : nullptr;
    if (!pre) {
      if (!scratch->sized || scratch->sized_for != frame.shape()) {
        scratch->sized.emplace(model_->frame_preprocessor(frame));
        scratch->sized_for = frame.shape();
      }
      pre = &*scratch->sized;
    }
    pre->check_frame(frame);
    Tensor out;
    if (preprocess_pool_) {
      std::shared_ptr<const void> buffer = preprocess_pool_->acquire();
      void* data = const_cast<void*>(buffer.get());  // before the move below
      out = Tensor::borrow(DType::Float32, pre->model_input().shape, data, std::move(buffer));
    } else {
      out = Tensor::allocate(DType::Float32, pre->model_input().shape);
    }
    pre->apply(frame, out, scratch->taps);
    s.tensors[0] = std::move(out);
  };
}

void RunImpl::start_threads() {
  try {
    for (std::size_t i = 0; i < pre_.size(); ++i) {
      StageRunner* next = i + 1 < pre_.size() ? pre_[i + 1].get() : nullptr;
      pre_[i]->start([this, next](Item&& item) {
        if (next) {
          next->put(std::move(item));
        } else {
          batch_input_->put(std::move(item));
        }
      });
    }
    for (std::size_t i = 0; i < post_.size(); ++i) {
      StageRunner* next = i + 1 < post_.size() ? post_[i + 1].get() : nullptr;
      post_[i]->start([this, next](Item&& item) {
        if (next) {
          next->put(std::move(item));
        } else {
          deliver(std::move(item));
        }
      });
    }
    if (!pre_.empty()) threads_.emplace_back([this] { admission_loop(); });
    threads_.emplace_back([this] { dispatch_loop(); });
    if (!dispatcher_infers_) {
      for (int w = 0; w < options.workers; ++w) threads_.emplace_back([this, w] { worker_loop(w); });
    }
  } catch (const std::system_error& e) {
    stop();  // joins the threads that did start
    throw Error(std::string("could not start the Run's threads: ") + e.what());
  } catch (const Error&) {
    stop();
    throw;
  }
}

RunImpl::~RunImpl() { stop(); }

void RunImpl::stop() {
  if (t_in_drop_callback == this || t_in_result_callback == this) {
    throw Error("stop() called from inside one of this Run's own callbacks; it would wait for itself");
  }
  std::lock_guard<std::mutex> lock(stop_mutex_);
  if (stopped_) return;
  state_.fetch_or(1, std::memory_order_acq_rel);
  stopping_.store(true, std::memory_order_seq_cst);
  // Abort inferences in flight rather than wait out a long model; their results are discarded.
  for (auto& ro : run_options_) ro->SetTerminate();
  for (EventCount* ec : {&input_ready_, &input_space_, &infer_ready_, &credit_freed_, &result_ready_, &idle_}) {
    ec->notify_all();
  }
  if (batch_input_) batch_input_->ready().notify_all();
  // Woken above, callers leave within microseconds; poll with a backoff rather than have them
  // notify (see Caller).
  for (auto pause = std::chrono::microseconds(1); callers_.load(std::memory_order_seq_cst) != 0;
       pause = std::min(pause * 2, std::chrono::microseconds(1000))) {
    std::this_thread::sleep_for(pause);
  }
  // After the callers: a set_callback() racing this stop() has either subscribed by now or seen
  // stopping_ and refused (the Caller protocol).
  if (has_callback_.load(std::memory_order_acquire)) report_thread_->unsubscribe(this);
  for (std::thread& t : threads_) t.join();
  for (auto* stages : {&pre_, &post_}) {
    for (auto& stage : *stages) stage->stop();
  }
  stopped_ = true;
}

// ---- push side ---------------------------------------------------------------------------------

void RunImpl::validate(Sample& sample) const {
  if (user_stages_before_) return;  // the first stage takes whatever it takes
  check_model_inputs(sample);
}

// The sample's tensors as push() takes them, in model order: the model's inputs, or, when
// preprocessing, its frame. Throws ShapeError or DTypeError for what does not match.
void RunImpl::check_model_inputs(Sample& sample) const {
  sample.tensors = model_->inputs_in_model_order(sample);
  sample.names.assign(sample.tensors.size(), std::string());
  if (model_->options.preprocess.enabled()) {
    if (preprocessor_) {
      preprocessor_->check_frame(sample.tensors[0]);
    } else {
      model_->frame_preprocessor(sample.tensors[0]).check_frame(sample.tensors[0]);
    }
    return;
  }
  for (std::size_t i = 0; i < sample.tensors.size(); ++i) {
    const Shape* max = max_shapes_.empty() || max_shapes_[i].empty() ? nullptr : &max_shapes_[i];
    check_against_spec(sample.tensors[i], push_inputs[i], "input", max);
  }
}

void RunImpl::check(Sample sample) const {
  check_not_forked(generation_, "this Run");
  validate(sample);
}

void RunImpl::report_drop(const Sample& sample, DropReason reason, std::exception_ptr& callback_error) {
  if (!options.on_input_drop) return;
  DroppedInput dropped{sample.stream_id, sample.frame_id,
                       reason == DropReason::Evicted ? sample.input_seq : 0, reason};
  const RunImpl* outer = t_in_drop_callback;
  t_in_drop_callback = this;
  try {
    options.on_input_drop(dropped);
  } catch (const abi::__forced_unwind&) {
    t_in_drop_callback = outer;
    throw;  // the thread is being ended (pthread_exit, as Python does at exit): let it
  } catch (...) {
    if (!callback_error) callback_error = std::current_exception();
  }
  t_in_drop_callback = outer;
}

void RunImpl::release_samples(std::uint64_t count) {
  // The RMW that leaves nothing outstanding wakes wait_all(); if the Run is closed, that also ends
  // the stream. See state_.
  const std::uint64_t before = state_.fetch_sub(2 * count, std::memory_order_acq_rel);
  if ((before >> 1) == count) idle_.notify_all();
  // After close_input(), pullers wait for the end of stream and stop_and_wait() for every
  // sample to be delivered: any change may be the one they wait for.
  if (before & 1) result_ready_.notify_all();
  // Fewer outstanding samples may complete a last partial group for the callback.
  if (has_callback_.load(std::memory_order_acquire)) report_thread_->wake();
}

std::optional<bool> RunImpl::push(Sample& sample, PushMode mode, Clock::time_point deadline) {
  if (t_in_drop_callback == this) {
    throw Error("push() from inside this Run's own on_input_drop callback is refused: each push could "
                "drop another sample and call the callback again without end. Push from another thread, "
                "or into another Run");
  }
  Caller caller(*this);
  callback_errors_.raise("the result callback");  // before this push: its sample is not accepted
  const Clock::time_point started = Clock::now();
  pushes_.fetch_add(1, std::memory_order_relaxed);
  const auto refuse = [this](const char* why) {
    push_failures_.fetch_add(1, std::memory_order_relaxed);
    throw ClosedError(why);
  };
  if (caller.stopped()) refuse("push after stop(): this Run accepts no more samples");

  // Register as a push in progress, so end of stream waits for this push to finish.
  std::uint64_t state = state_.load(std::memory_order_relaxed);
  do {
    if (state & 1) refuse("push after close_input(): this Run accepts no more samples");
  } while (!state_.compare_exchange_weak(state, state + 2, std::memory_order_acq_rel));
  bool accepted = false;
  struct Leave {
    RunImpl* run;
    const bool& accepted;
    ~Leave() {
      if (!accepted) run->release_samples(1);  // an accepted push hands its step to its sample
    }
  } leave{this, accepted};

  try {
    validate(sample);
  } catch (...) {
    push_failures_.fetch_add(1, std::memory_order_relaxed);
    throw;
  }

  Item job;
  job.sample = std::move(sample);
  job.pushed = started;
  const auto stamp = [](Item& j, std::size_t ticket) noexcept { j.sample.input_seq = ticket; };
  const auto hand_back = [&] {
    pushes_.fetch_sub(1, std::memory_order_relaxed);
    sample = std::move(job.sample);
    return std::nullopt;
  };
  std::exception_ptr callback_error;
  // How long this call may wait: push() as long as it takes, try_push() not at all (beyond the
  // brief spin every wait starts with), push_if_room() until its deadline.
  Clock::time_point may_wait_until = mode == PushMode::Wait     ? Clock::time_point::max()
                                     : mode == PushMode::IfRoom ? deadline
                                                                : Clock::time_point::min();
  for (;;) {
    using Status = RingBuffer<Item>::Status;
    Status status = input_.push(job, stamp);
    if (status == Status::Busy) {
      // A consumer has claimed the slot and is moving its sample out: room is coming, however
      // long that thread stays descheduled. The ring is not full, so no policy applies: park until
      // the slot is handed back, as long as this call may wait; if it may not, there is no room now.
      wait_with_checks(input_space_,
                       [&] { return (status = input_.push(job, stamp)) != Status::Busy || stopping(); },
                       may_wait_until);
      if (status == Status::Busy && !stopping()) {
        if (mode == PushMode::IfRoom) return hand_back();
        break;  // try_push(): no room now
      }
    }
    if (status == Status::Done) {
      accepted = true;
      break;
    }
    if (stopping()) refuse("stop() was called while this push waited; the sample was not accepted");
    if (status == Status::Busy) continue;
    // Full.
    if (options.overflow_policy == OverflowPolicy::DropIncoming) {
      rejected_.fetch_add(1, std::memory_order_relaxed);
      report_drop(job.sample, DropReason::QueueFull, callback_error);
      break;
    }
    if (options.overflow_policy == OverflowPolicy::KeepLatest) {
      // Evict the oldest waiting sample. Only a ring that is really full gets here, so a single
      // producer evicts at most one sample per push; with several racing, a slot freed here may go
      // to another producer's push first, and each eviction still makes room for one sample.
      Item oldest;
      Status popped = input_.pop(oldest);
      if (popped == Status::Busy) {
        // The oldest is still being written by another producer: wait for it to land, as long as
        // this call may wait.
        wait_with_checks(input_ready_,
                         [&] { return (popped = input_.pop(oldest)) != Status::Busy || stopping(); },
                         may_wait_until);
        if (popped == Status::Busy && !stopping()) {
          if (mode == PushMode::IfRoom) return hand_back();
          break;  // try_push(): no room now
        }
      }
      if (popped == Status::Done) {
        input_space_.notify_all();
        evicted_.fetch_add(1, std::memory_order_relaxed);
        release_samples(1);
        report_drop(oldest.sample, DropReason::Evicted, callback_error);
        // Having dropped a sample for this one, push_if_room() must not hand it back (a retry
        // would evict again, and the drop callback's error would be lost): it finishes as push().
        if (mode == PushMode::IfRoom) {
          mode = PushMode::Wait;
          may_wait_until = Clock::time_point::max();
        }
      }
      continue;
    }
    // Block.
    if (mode == PushMode::NoWait) break;
    if (mode == PushMode::IfRoom && deadline <= Clock::now()) return hand_back();
    const bool done = wait_with_checks(
        input_space_,
        [&] { return (status = input_.push(job, stamp)) == Status::Done || is_closed() || stopping(); },
        may_wait_until);
    if (status == Status::Done) {
      accepted = true;
      break;
    }
    if (!done) return hand_back();  // IfRoom's deadline passed
    refuse(stopping() ? "stop() was called while this push waited for room; the sample was not accepted"
                      : "close_input() was called while this push waited for room; the sample was not accepted");
  }

  if (accepted) {
    accepted_.fetch_add(1, std::memory_order_relaxed);
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

  if (callback_error) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(callback_error);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    throw CallbackError("on_input_drop raised: " + what + "; push() completed and this sample was " +
                            (accepted ? "accepted" : "not accepted") + " (nothing else was lost)",
                        accepted, callback_error);
  }
  return accepted;
}

void RunImpl::close_input() {
  check_not_forked(generation_, "this Run");
  state_.fetch_or(1, std::memory_order_acq_rel);
  // Wake pullers, so they can report end of stream; pushers waiting for room, so they fail; and
  // the dispatcher, so it sends a partial batch without waiting out max_delay_us.
  result_ready_.notify_all();
  input_space_.notify_all();
  input_ready_.notify_all();
  if (has_callback_.load(std::memory_order_acquire)) report_thread_->wake();  // a last partial group
}

bool RunImpl::stop_and_wait(int timeout_ms) {
  if (t_in_result_callback == this || t_in_drop_callback == this) {
    throw Error("stop_and_wait() called from inside one of this Run's own callbacks; it would wait for itself");
  }
  Caller caller(*this);
  close_input();
  // Every accepted sample is delivered once the samples outstanding (state_) are all results
  // waiting to be pulled. Reading ready_, then state_, then pulled_ can only overcount what is
  // undelivered (a pull between two reads lowers state_ after raising pulled_), never report done
  // early.
  const auto all_delivered = [this] {
    const std::uint64_t ready = ready_.load(std::memory_order_acquire);
    const std::uint64_t outstanding = state_.load(std::memory_order_acquire) >> 1;
    const std::uint64_t pulled = pulled_.load(std::memory_order_acquire);
    return outstanding + pulled <= ready || stopping();
  };
  const bool done = wait_with_checks(result_ready_, all_delivered, deadline_after(timeout_ms));
  return done && !stopping();
}

void RunImpl::cancel() {
  check_not_forked(generation_, "this Run");
  cancelling_.store(true, std::memory_order_release);
  close_input();
}

void RunImpl::trace(const std::string& path) const {
  if (!trace_) {
    throw Error("Run::trace: tracing is off for this Run; build it with RunOptions.trace_samples > 0");
  }
  trace_->write_chrome_json(path);
}

// ---- dispatch and inference --------------------------------------------------------------------

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
  if (cancelling_.load(std::memory_order_acquire)) item.cancel();
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

// The dispatcher's next sample: admitted here, or, with stages before the model, from the last of
// them. With `credit_held` false, a credit is taken first (and false returned without one).
bool RunImpl::next_item(Item& item, Clock::time_point deadline, bool until_closed) {
  if (!batch_input_) return admit(item, deadline, until_closed);
  StageQueue& queue = *batch_input_;
  bool got = queue.try_take(item);
  if (!got && deadline > Clock::now()) {
    queue.ready().wait_until([&] { return (got = queue.try_take(item)) || stopping(); }, deadline);
  }
  if (!got || stopping()) return false;
  if (item.ok() && cancelling_.load(std::memory_order_acquire)) item.cancel();
  if (item.ok() && user_stages_before_) {
    // What the user's stages made is checked against the model here, as push() checks otherwise.
    try {
      item.sample.tensors = model_->inputs_in_model_order(item.sample);
      item.sample.names.assign(item.sample.tensors.size(), std::string());
      for (std::size_t i = 0; i < item.sample.tensors.size(); ++i) {
        const Shape* max = max_shapes_.empty() || max_shapes_[i].empty() ? nullptr : &max_shapes_[i];
        check_against_spec(item.sample.tensors[i], model_->inputs[i], "input", max);
      }
    } catch (const std::exception& e) {
      item.fail(std::string("the stages before the model made a sample the model does not take: ") + e.what());
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
      // result slot is free. After close_input() nothing new can be admitted, so a partial batch
      // goes at once.
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
  const std::size_t n = items.size();
  if (cancelling_.load(std::memory_order_acquire)) {
    for (Item& item : items) {
      item.cancel();
      after_inference(std::move(item));
    }
    return;
  }
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
      for (Item& item : items) {
        std::vector<Item> one(1);
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

void RunImpl::deliver(Item&& item) noexcept {
  if (item.status == PullStatus::Error) errors_.fetch_add(1, std::memory_order_relaxed);
  if (item.status == PullStatus::Cancelled) cancelled_.fetch_add(1, std::memory_order_relaxed);
  if (metrics()) item.queued = Clock::now();
  results_.put(std::move(item));  // wakes pullers (result_ready_)
  ready_.fetch_add(1, std::memory_order_relaxed);
  if (has_callback_.load(std::memory_order_acquire)) report_thread_->wake();
}

// ---- pull side ---------------------------------------------------------------------------------

// Everything but release_samples(), which the caller does once the result is handed over.
PullResult RunImpl::finish_take(Item&& taken) {
  pulled_.fetch_add(1, std::memory_order_relaxed);
  return_credit();
  const Clock::time_point now = Clock::now();
  last_pull_ns_.store(ns_since_epoch(now), std::memory_order_relaxed);
  if (metrics()) {
    latency_.record(ns_between(taken.pushed, now));
    reorder_clock_.record(1, ns_between(taken.queued, now), 0);
  }
  PullResult result;
  result.status = taken.status;
  result.error = std::move(taken.error);
  result.sample = std::move(taken.sample);
  return result;
}

PullResult RunImpl::pull(int timeout_ms) {
  Caller caller(*this);
  if (has_callback_.load(std::memory_order_acquire)) {
    throw Error("this Run hands its results to the callback given to set_callback(), so pull() has none; "
                "use wait_all() to wait for them");
  }
  if (caller.stopped()) return {PullStatus::Closed, std::nullopt, {}};
  const Clock::time_point deadline = deadline_after(timeout_ms);
  Item taken;
  bool got = take(taken);
  if (!got) {
    if (drained()) return {PullStatus::Closed, std::nullopt, {}};
    if (timeout_ms == 0) return {PullStatus::Timeout, std::nullopt, {}};  // a poll: no spinning
    wait_with_checks(result_ready_, [&] { return (got = take(taken)) || drained() || stopping(); }, deadline);
    if (!got) {
      const bool closed = drained() || stopping();
      return {closed ? PullStatus::Closed : PullStatus::Timeout, std::nullopt, {}};
    }
  }
  PullResult result = finish_take(std::move(taken));
  release_samples(1);  // last, so stats() read after end of stream include this pull
  return result;
}

// ---- result callbacks --------------------------------------------------------------------------

void RunImpl::set_callback(ResultCallback callback, int every, int max_delay_ms,
                           std::shared_ptr<ReportThreadImpl> thread) {
  Caller caller(*this);
  if (caller.stopped()) throw ClosedError("set_callback() after stop(): this Run delivers nothing more");
  callback_errors_.raise("the result callback");
  if (!callback) throw Error("set_callback() needs a callback");
  if (every < 1) throw Error("set_callback(): every must be at least 1, got " + std::to_string(every));
  if (has_callback_.load(std::memory_order_acquire)) throw Error("set_callback() was already called on this Run");
  if (pushes_.load(std::memory_order_relaxed) != 0) {
    throw Error("set_callback() must come before the first push, so that no result goes to pull() instead");
  }
  auto delivery = std::make_unique<Delivery>();
  delivery->callback = std::move(callback);
  delivery->every = static_cast<std::size_t>(every);
  delivery->max_delay_ms = max_delay_ms;
  delivery->group.reserve(delivery->every);
  delivery_ = std::move(delivery);
  report_thread_ = thread ? std::move(thread) : std::make_shared<ReportThreadImpl>();
  has_callback_.store(true, std::memory_order_release);
  report_thread_->subscribe(this);
}

bool RunImpl::wait_all(int timeout_ms) {
  if (t_in_result_callback == this) {
    throw Error("wait_all() called from inside this Run's own result callback; it would wait for itself");
  }
  Caller caller(*this);
  callback_errors_.raise("the result callback");
  flush_waiters_.fetch_add(1, std::memory_order_acq_rel);
  if (has_callback_.load(std::memory_order_acquire)) report_thread_->wake();
  bool idle = false;
  try {
    idle = wait_with_checks(idle_, [&] { return (state_.load(std::memory_order_acquire) >> 1) == 0 || stopping(); },
                deadline_after(timeout_ms));
  } catch (...) {
    flush_waiters_.fetch_sub(1, std::memory_order_acq_rel);
    throw;
  }
  flush_waiters_.fetch_sub(1, std::memory_order_acq_rel);
  callback_errors_.raise("the result callback");
  return idle && (state_.load(std::memory_order_acquire) >> 1) == 0;
}

// On the report thread: hands every group that is ready to the callback; returns when the partial
// group left over is due (max_delay_ms), or max() if only a wake-up can complete it.
Clock::time_point RunImpl::report() {
  Delivery& d = *delivery_;
  if (stopping()) return Clock::time_point::max();
  for (;;) {
    Item taken;
    while (d.group.size() < d.every && take(taken)) {
      if (d.group.empty()) d.oldest = Clock::now();
      d.group.push_back(finish_take(std::move(taken)));
    }
    if (d.group.empty()) return Clock::time_point::max();
    if (d.group.size() < d.every) {
      // A partial group goes when nothing more can join it before someone waits on it: the input
      // is closed or wait_all() is waiting, and every outstanding sample is already in it.
      const std::uint64_t outstanding = state_.load(std::memory_order_acquire) >> 1;
      const bool last = outstanding == d.group.size() &&
                        (is_closed() || flush_waiters_.load(std::memory_order_acquire) > 0);
      const Clock::time_point due = d.max_delay_ms < 0 ? Clock::time_point::max()
                                                       : d.oldest + std::chrono::milliseconds(d.max_delay_ms);
      if (!last && Clock::now() < due) return due;
    }
    deliver_group();
  }
}

void RunImpl::deliver_group() {
  Delivery& d = *delivery_;
  const std::size_t n = d.group.size();
  t_in_result_callback = this;
  try {
    d.callback(d.group);
  } catch (const abi::__forced_unwind&) {
    t_in_result_callback = nullptr;
    throw;  // the thread is being ended (pthread_exit, as Python does at exit): let it
  } catch (...) {
    callback_errors_.add(std::current_exception());
  }
  t_in_result_callback = nullptr;
  d.group.clear();  // pooled buffers the callback did not keep go back now
  release_samples(n);
}

Sample RunImpl::run_one(Sample sample, int timeout_ms) {
  Caller caller(*this);
  if (has_callback_.load(std::memory_order_acquire)) {
    throw Error("this Run hands its results to the callback given to set_callback(); Run::run() cannot wait for one");
  }
  if (caller.stopped() || is_closed()) {
    throw ClosedError(std::string("Run::run() after ") + (caller.stopped() ? "stop()" : "close_input()") +
                      ": this Run accepts no more samples");
  }
  std::lock_guard<std::mutex> lock(run_one_mutex_);
  // Results of earlier run() calls that timed out or were interrupted after their sample went in.
  for (; abandoned_ > 0; --abandoned_) {
    if (pull(-1).status == PullStatus::Closed) break;
  }
  const std::uint64_t in_flight = state_.load(std::memory_order_acquire) >> 1;
  if (in_flight != 0) {
    throw Error("Run::run() needs an idle Run, but " + std::to_string(in_flight) +
                " pushed samples are not pulled yet; use push() and pull() instead");
  }
  if (!*push(sample, PushMode::Wait)) throw Error("Run::run(): the sample was dropped by the overflow policy");
  PullResult r;
  try {
    r = pull(timeout_ms);
  } catch (...) {
    ++abandoned_;
    throw;
  }
  switch (r.status) {
    case PullStatus::Ok: return std::move(*r.sample);
    case PullStatus::Error: throw InferenceError(r.error);
    case PullStatus::Cancelled: throw CancelledError("Run::run(): the sample was cancelled by Run::cancel()");
    case PullStatus::Timeout:
      ++abandoned_;
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
  s.cancelled = cancelled_.load(std::memory_order_relaxed);
  s.latency = latency_.summary();
  const std::int64_t first = first_push_ns_.load(std::memory_order_relaxed);
  const std::int64_t last = last_pull_ns_.load(std::memory_order_relaxed);
  if (first && last > first) {
    s.elapsed_s = static_cast<double>(last - first) / 1e9;
    s.throughput_fps = static_cast<double>(s.outputs_pulled) / s.elapsed_s;
  }
  // Occupancy is over the time the Run has been working: up to now while samples are in flight.
  const bool busy = (state_.load(std::memory_order_acquire) >> 1) != 0;
  const double active_s =
      first == 0 ? 0.0
                 : busy || last <= first ? static_cast<double>(ns_since_epoch(Clock::now()) - first) / 1e9 : s.elapsed_s;
  const std::size_t before = pre_.size() - (model_->options.preprocess.enabled() ? 1 : 0);
  for (std::size_t i = 0; i < before; ++i) s.stages.push_back(pre_[i]->stats(active_s));
  s.stages.push_back(before < pre_.size() ? pre_[before]->stats(active_s)
                                          : preprocess_clock_.snapshot("preprocess", 1, active_s));
  const std::uint64_t batched = batched_samples_.load(std::memory_order_relaxed);
  const double per_call = batched ? static_cast<double>(s.batches) / static_cast<double>(batched) : 1.0;
  s.stages.push_back(inference_clock_.snapshot("inference", options.workers, active_s, per_call));
  s.stages.push_back(postprocess_clock_.snapshot("postprocess", options.workers, active_s, per_call));
  for (const auto& stage : post_) s.stages.push_back(stage->stats(active_s));
  s.stages.push_back(reorder_clock_.snapshot("reorder", 1, active_s));
  return s;
}

// ---- Run: a thin handle ------------------------------------------------------------------------

Run::Run(std::unique_ptr<RunImpl> impl) : impl_(std::move(impl)) {}
Run::Run(Run&&) noexcept = default;

Run& Run::operator=(Run&& other) noexcept {
  if (this != &other) {
    discard();
    impl_ = std::move(other.impl_);
  }
  return *this;
}

Run::~Run() { discard(); }

void Run::discard() noexcept {
  if (!impl_) return;
  // In a forked child the engine's threads do not exist: leak the pipeline rather than join them.
  if (impl_->forked()) {
    impl_.release();
    return;
  }
  // Stopped before impl_ is cleared: threads still inside push() or pull() read impl_ until they
  // leave, and stop() waits for that.
  impl_->stop();
  impl_.reset();
}

namespace {
RunImpl& live(const std::unique_ptr<RunImpl>& impl) {
  if (!impl) throw Error("this Run was moved from and no longer refers to a pipeline");
  return *impl;
}
}  // namespace

void Run::stop() {
  if (impl_ && !impl_->forked()) impl_->stop();
}
bool Run::push(const std::vector<Tensor>& inputs) { return push(make_sample(inputs)); }
bool Run::push(Sample sample) { return *live(impl_).push(sample, RunImpl::PushMode::Wait); }
bool Run::try_push(const std::vector<Tensor>& inputs) { return try_push(make_sample(inputs)); }
bool Run::try_push(Sample sample) { return *live(impl_).push(sample, RunImpl::PushMode::NoWait); }
std::optional<bool> Run::push_if_room(Sample& sample, int timeout_ms) {
  return live(impl_).push(sample, RunImpl::PushMode::IfRoom, deadline_after(std::max(0, timeout_ms)));
}
void Run::check(const Sample& sample) const { live(impl_).check(sample); }
void Run::set_callback(ResultCallback callback, int every, int max_delay_ms, const ReportThread* thread) {
  live(impl_).set_callback(std::move(callback), every, max_delay_ms, thread ? thread->impl_ : nullptr);
}
bool Run::wait_all(int timeout_ms) { return live(impl_).wait_all(timeout_ms); }
void Run::close_input() { live(impl_).close_input(); }
bool Run::stop_and_wait(int timeout_ms) { return live(impl_).stop_and_wait(timeout_ms); }
void Run::cancel() { live(impl_).cancel(); }
void Run::trace(const std::string& path) const { live(impl_).trace(path); }

std::optional<Sample> Run::pull(int timeout_ms) {
  PullResult r = live(impl_).pull(timeout_ms);
  if (r.status == PullStatus::Error) {
    const Sample& s = *r.sample;
    throw InferenceError("sample input_seq=" + std::to_string(s.input_seq) +
                         " frame_id=" + std::to_string(s.frame_id) + " failed: " + r.error);
  }
  if (r.status == PullStatus::Cancelled) {
    const Sample& s = *r.sample;
    throw CancelledError("sample input_seq=" + std::to_string(s.input_seq) +
                         " frame_id=" + std::to_string(s.frame_id) + " was cancelled by Run::cancel()");
  }
  return std::move(r.sample);
}

PullResult Run::pull_with_status(int timeout_ms) { return live(impl_).pull(timeout_ms); }
Sample Run::run(const std::vector<Tensor>& inputs, int timeout_ms) {
  return live(impl_).run_one(make_sample(inputs), timeout_ms);
}
Sample Run::run(Sample sample, int timeout_ms) { return live(impl_).run_one(std::move(sample), timeout_ms); }
const std::vector<TensorSpec>& Run::input_specs() const { return live(impl_).push_inputs; }
const std::vector<TensorSpec>& Run::output_specs() const { return live(impl_).outputs(); }
const RunOptions& Run::options() const { return live(impl_).options; }
std::size_t Run::capacity() const { return live(impl_).capacity(); }
RunStats Run::stats() const { return live(impl_).stats(); }
InputStats Run::input_stats() const { return live(impl_).input_stats(); }

}  // namespace ringflow

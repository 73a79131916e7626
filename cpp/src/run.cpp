// A Run's lifecycle and its front: building the stages, push() and admission's input ring,
// close/stop/cancel, stats(), and the Run handle. The middle is inference.cpp, the end delivery.cpp.
#include "ringflow/run.hpp"

#include <system_error>

#include "ringflow/errors.hpp"
#include "fork_guard.hpp"
#include "run_impl.hpp"
#include "testing_hooks.hpp"
#include "waiting.hpp"

namespace ringflow {

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

void (*g_input_claim_hook)() = nullptr;

}  // namespace

thread_local const RunImpl* RunImpl::t_in_drop_callback = nullptr;
thread_local const RunImpl* RunImpl::t_in_result_callback = nullptr;

ScopedWaitCheck::ScopedWaitCheck(std::function<void()> check)
    : check_(std::move(check)), previous_(t_wait_check) {
  t_wait_check = &check_;
}

ScopedWaitCheck::~ScopedWaitCheck() { t_wait_check = previous_; }

void testing::set_input_claim_hook(void (*hook)()) { g_input_claim_hook = hook; }

const std::function<void()>* wait_check() noexcept { return t_wait_check; }

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
  if (options.trace_samples > 0 && options.enable_metrics) {
    const std::size_t stages = before.size() + after.size() + (preprocess ? 1 : 0) + 1;
    trace_ = std::make_unique<TraceLog>(options.trace_samples, stages);
  }
  const StageContext context{this, &stopping_, &cancelling_, trace_.get(), options.enable_metrics};
  const auto runner = [&](const std::string& name, int threads, StageRunner::FunctionMaker make) {
    return std::make_unique<StageRunner>(name, threads, std::move(make), result_capacity_, options.ordered, context);
  };
  // Each thread of a user's stage calls its one function: with several threads it must be safe to
  // call concurrently, as OpenVINO's task executors require too.
  const auto user_runner = [&](Stage& stage) {
    auto shared = std::make_shared<Stage>(std::move(stage));
    return runner(shared->name(), shared->threads(), [shared] {
      return Stage::Function([shared](Sample& s) { shared->function()(s); });
    });
  };
  for (Stage& stage : before) pre_.push_back(user_runner(stage));
  if (preprocess) {
    pre_.push_back(runner("preprocess", std::max(1, model_->options.preprocess.threads),
                          [this] { return preprocess_function(); }));
  }
  if (trace_) {
    for (int w = 0; w < options.workers; ++w) {
      inference_lanes_.push_back(trace_->add_lane("inference #" + std::to_string(w)));
    }
  }
  for (Stage& stage : after) post_.push_back(user_runner(stage));
  if (!pre_.empty()) batch_input_ = std::make_unique<StageQueue>(result_capacity_, options.ordered);
}

// The built-in preprocessing, for one thread: frames of a size met before reuse their resize taps,
// and the model inputs it writes come from a pool instead of a fresh allocation per frame (for a
// model of dynamic size, a pool per input size, kept while frames keep that size).
Stage::Function RunImpl::preprocess_function() const {
  struct Scratch {
    Preprocessor::Taps taps;
    std::optional<Preprocessor> sized;  // for a model of dynamic size: the last frame size's
    std::shared_ptr<BufferPool> sized_pool;
    Shape sized_for;
  };
  auto scratch = std::make_shared<Scratch>();
  return [this, scratch](Sample& s) {
    // The frame: the one tensor a stage before this made (whatever its name), or the one named
    // like the model's input, as push() would take it.
    if (s.tensors.size() != 1) s.tensors = model_->inputs_in_model_order(s);
    const Tensor frame = s.tensors[0];
    const Preprocessor* pre = preprocessor_ ? &*preprocessor_ : nullptr;
    BufferPool* pool = preprocess_pool_.get();
    if (!pre) {
      if (!scratch->sized || scratch->sized_for != frame.shape()) {
        scratch->sized.emplace(model_->frame_preprocessor(frame));
        scratch->sized_for = frame.shape();
        const std::size_t bytes = element_count(scratch->sized->model_input().shape) * sizeof(float);
        if (!scratch->sized_pool || scratch->sized_pool->buffer_bytes() != bytes) {
          scratch->sized_pool = BufferPool::create(bytes, result_capacity_);
        }
      }
      pre = &*scratch->sized;
      pool = scratch->sized_pool.get();
    }
    pre->check_frame(frame);
    std::shared_ptr<const void> buffer = pool->acquire();
    void* data = const_cast<void*>(buffer.get());  // before the move below
    Tensor out = Tensor::borrow(DType::Float32, pre->model_input().shape, data, std::move(buffer));
    pre->apply(frame, out, scratch->taps);
    s.tensors.assign(1, std::move(out));
    s.names.assign(1, std::string());  // the model's one input, by position
  };
}

void RunImpl::start_threads() {
  // Each stage hands on to the next; the last before the model to the batcher's queue, the last
  // after it to delivery.
  const auto chain = [](std::vector<std::unique_ptr<StageRunner>>& stages, StageRunner::Sink last) {
    for (std::size_t i = 0; i < stages.size(); ++i) {
      StageRunner* next = i + 1 < stages.size() ? stages[i + 1].get() : nullptr;
      stages[i]->start(next ? StageRunner::Sink([next](Item&& item) { next->put(std::move(item)); }) : last);
    }
  };
  try {
    chain(pre_, [this](Item&& item) { batch_input_->put(std::move(item)); });
    chain(post_, [this](Item&& item) { deliver(std::move(item)); });
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

bool RunImpl::on_own_stage_thread() const { return stage_thread_owner() == this; }

void RunImpl::stop() {
  if (t_in_drop_callback == this || t_in_result_callback == this || on_own_stage_thread()) {
    throw Error("stop() called from inside one of this Run's own callbacks or stages; it would wait for itself");
  }
  std::unordered_set<std::shared_ptr<Submitted>> pending;
  {
    std::lock_guard<std::mutex> lock(stop_mutex_);
    if (stopped_) return;
    stop_locked();
    std::lock_guard<std::mutex> pending_lock(pending_mutex_);
    pending.swap(pending_);
    stopped_ = true;
  }
  // Submitted samples the stop discarded still get their result, so no submitter waits forever.
  // Outside the lock, and marked as inside a result callback: one that calls stop() again gets
  // an error instead of a deadlock.
  for (const std::shared_ptr<Submitted>& submitted : pending) {
    PullResult stopped{PullStatus::Cancelled, std::nullopt, "the Run was stopped before this sample finished"};
    // What it throws is dropped: nobody is left to raise it to, the Run is stopping.
    call_user(t_in_result_callback, [&] { submitted->done(stopped); });
  }
}

void RunImpl::stop_locked() {
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
  check_tensors(sample, push_inputs);
}

void RunImpl::check_tensors(const Sample& sample, const std::vector<TensorSpec>& specs) const {
  for (std::size_t i = 0; i < sample.tensors.size(); ++i) {
    const Shape* max = max_shapes_.empty() || max_shapes_[i].empty() ? nullptr : &max_shapes_[i];
    check_against_spec(sample.tensors[i], specs[i], "input", max);
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
  std::exception_ptr thrown = call_user(t_in_drop_callback, [&] { options.on_input_drop(dropped); });
  if (thrown && !callback_error) callback_error = thrown;
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

std::optional<bool> RunImpl::push(Sample& sample, PushMode mode, Clock::time_point deadline,
                                  std::shared_ptr<Submitted> submitted) {
  if (t_in_drop_callback == this) {
    throw Error("push() from inside this Run's own on_input_drop callback is refused: each push could "
                "drop another sample and call the callback again without end. Push from another thread, "
                "or into another Run");
  }
  Caller caller(*this);
  if (!submitted) {
    // Paired with start_submitting(): each stores its side, then reads the other's (seq_cst), so
    // a push and a first submit() racing cannot both go ahead.
    plain_pushes_.fetch_add(1, std::memory_order_seq_cst);
    if (submitting_.load(std::memory_order_seq_cst)) {
      throw Error("this Run delivers its results to the completions given to submit(), so push() would lose "
                  "them; use submit(), or another Run for push() and pull()");
    }
  }
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
  job.submitted = std::move(submitted);
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
        if (oldest.submitted) {
          PullResult evicted{PullStatus::Error, oldest.sample,
                             "evicted by the KeepLatest overflow policy: the input queue was full"};
          evicted.sample->tensors.clear();
          evicted.sample->names.clear();
          // As a result callback: a completion that stops or waits for this Run is refused.
          std::exception_ptr thrown =
              call_user(t_in_result_callback, [&] { finish_submitted(oldest.submitted, evicted); });
          if (thrown && !callback_error) callback_error = thrown;
        }
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

std::optional<bool> RunImpl::submit(Sample& sample, Completion& done, std::shared_ptr<const std::atomic<bool>> cancel,
                                    PushMode mode, Clock::time_point deadline) {
  if (!done) throw Error("submit() needs a completion to hand the result to");
  // Counted as a caller throughout, so stop() cannot swap pending_ (or free the Run) under us.
  Caller caller(*this);
  if (!submitting_.load(std::memory_order_acquire)) start_submitting();
  auto submitted = std::make_shared<Submitted>(Submitted{std::move(done), std::move(cancel)});
  const auto forget = [&] {
    std::lock_guard<std::mutex> lock(pending_mutex_);
    pending_.erase(submitted);
  };
  {
    std::lock_guard<std::mutex> lock(pending_mutex_);
    pending_.insert(submitted);
  }
  std::optional<bool> accepted;
  try {
    accepted = push(sample, mode, deadline, submitted);
  } catch (const CallbackError& e) {
    if (!e.accepted()) forget();
    throw;
  } catch (...) {
    forget();
    throw;
  }
  if (!accepted) {  // no room: handed back
    forget();
    done = std::move(submitted->done);
  } else if (!*accepted) {
    forget();
  }
  return accepted;
}

bool RunImpl::stop_and_wait(int timeout_ms) {
  if (t_in_result_callback == this || t_in_drop_callback == this || on_own_stage_thread()) {
    throw Error("stop_and_wait() called from inside one of this Run's own callbacks or stages; it would wait "
                "for itself");
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
  for (const auto& stage : pre_) s.stages.push_back(stage->stats(active_s));
  // Without stages before the model, "preprocess" is the wait for dispatch, as it always was.
  if (pre_.empty()) s.stages.push_back(preprocess_clock_.snapshot("preprocess", 1, active_s));
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
bool Run::submit(Sample sample, Completion done, std::shared_ptr<const std::atomic<bool>> cancel) {
  return *live(impl_).submit(sample, done, std::move(cancel), RunImpl::PushMode::Wait);
}
std::optional<bool> Run::submit_if_room(Sample& sample, Completion& done,
                                        std::shared_ptr<const std::atomic<bool>> cancel, int timeout_ms) {
  return live(impl_).submit(sample, done, std::move(cancel), RunImpl::PushMode::IfRoom,
                            deadline_after(std::max(0, timeout_ms)));
}
void Run::notify_when_pullable(std::function<void()> wake) { live(impl_).watch_results(std::move(wake)); }
void Run::notify_when_pushable(std::function<void()> wake) { live(impl_).watch_room(std::move(wake)); }
void Run::cancel() { live(impl_).cancel(); }
void Run::trace(const std::string& path) const { live(impl_).trace(path); }

std::optional<Sample> PullResult::take_sample() {
  if (status != PullStatus::Error && status != PullStatus::Cancelled) return std::move(sample);
  const std::string which = sample ? "sample input_seq=" + std::to_string(sample->input_seq) +
                                         " frame_id=" + std::to_string(sample->frame_id)
                                   : std::string("the sample");
  if (status == PullStatus::Error) throw InferenceError(which + " failed: " + error);
  throw CancelledError(which + " was cancelled by Run::cancel()");
}

std::optional<Sample> Run::pull(int timeout_ms) { return live(impl_).pull(timeout_ms).take_sample(); }

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

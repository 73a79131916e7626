// The end of a Run: results handed out by pull(), or to a callback on a report thread, and run().
#include "ringflow/errors.hpp"
#include "run_impl.hpp"
#include "waiting.hpp"

namespace ringflow {

void RunImpl::deliver(Item&& item) noexcept {
  if (item.status == PullStatus::Error) errors_.fetch_add(1, std::memory_order_relaxed);
  if (item.status == PullStatus::Cancelled) cancelled_.fetch_add(1, std::memory_order_relaxed);
  if (metrics()) item.queued = Clock::now();
  results_.put(std::move(item));  // wakes pullers (result_ready_)
  // Counted once it can be taken, so stop_and_wait() never returns before a pull could; and woken
  // again after counting, or a stop_and_wait() woken by the put could miss the count and park.
  ready_.fetch_add(1, std::memory_order_acq_rel);
  result_ready_.notify_all();
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
    throw Error(submitting_.load(std::memory_order_acquire)
                    ? "this Run hands its results to the completions given to submit(), so pull() has none"
                    : "this Run hands its results to the callback given to set_callback(), so pull() has none; "
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
  std::lock_guard<std::mutex> mode(mode_mutex_);
  if (caller.stopped()) throw ClosedError("set_callback() after stop(): this Run delivers nothing more");
  if (submitting_.load(std::memory_order_acquire)) {
    throw Error("set_callback() on a Run used with submit(): its results go to the submitters' completions");
  }
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

void RunImpl::start_submitting() {
  Caller caller(*this);
  std::lock_guard<std::mutex> mode(mode_mutex_);
  if (submitting_.load(std::memory_order_acquire)) return;
  if (caller.stopped()) throw ClosedError("submit() after stop(): this Run accepts no more samples");
  if (has_callback_.load(std::memory_order_acquire)) {
    throw Error("submit() on a Run with set_callback(): its results go to that callback; use another Run");
  }
  submitting_.store(true, std::memory_order_seq_cst);  // see push(): then read the other side
  if (plain_pushes_.load(std::memory_order_seq_cst) != 0) {
    submitting_.store(false, std::memory_order_seq_cst);
    throw Error("submit() on a Run that push() was used on: its results go to pull(); use one way per Run");
  }
  // The report thread takes the results in order and hands each to its completion (report()). A
  // submit() on another thread that already sees submitting_ may push before the lines below; its
  // result then waits in the results queue until the report thread subscribes (pull() refuses).
  delivery_ = std::make_unique<Delivery>();
  report_thread_ = std::make_shared<ReportThreadImpl>();
  has_callback_.store(true, std::memory_order_release);
  report_thread_->subscribe(this);
}

bool RunImpl::finish_submitted(const std::shared_ptr<Submitted>& submitted, PullResult& result) {
  {
    std::lock_guard<std::mutex> lock(pending_mutex_);
    if (pending_.erase(submitted) == 0) return false;  // stop() completed it
  }
  submitted->done(result);
  return true;
}

// On the report thread: one submitted sample's result to its completion. A result that finished
// after its submitter cancelled it is discarded: the completion gets Cancelled, as promised.
void RunImpl::complete(Item&& item) {
  const std::shared_ptr<Submitted> submitted = std::move(item.submitted);
  const bool discard = item.ok() && item.cancel_requested_of(*submitted);
  PullResult result = finish_take(std::move(item));
  if (discard) {
    result.status = PullStatus::Cancelled;
    result.sample->tensors.clear();
    result.sample->names.clear();
    cancelled_.fetch_add(1, std::memory_order_relaxed);
  }
  if (std::exception_ptr thrown = call_user(t_in_result_callback, [&] { finish_submitted(submitted, result); })) {
    callback_errors_.add(thrown);
  }
  release_samples(1);
}

bool RunImpl::wait_all(int timeout_ms) {
  if (t_in_result_callback == this || on_own_stage_thread()) {
    throw Error("wait_all() called from inside this Run's own result callback or stage; it would wait for itself");
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
      if (taken.submitted) {
        complete(std::move(taken));
        continue;
      }
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
  if (std::exception_ptr thrown = call_user(t_in_result_callback, [&] { d.callback(d.group); })) {
    callback_errors_.add(thrown);
  }
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

}  // namespace ringflow

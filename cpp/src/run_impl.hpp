// RunImpl: the pipeline behind a Run. See run.hpp for the picture.
#pragma once

#include <cxxabi.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include "buffer_pool.hpp"
#include "callback_errors.hpp"
#include "event_count.hpp"
#include "fork_guard.hpp"
#include "item.hpp"
#include "metrics.hpp"
#include "model_impl.hpp"
#include "preprocess.hpp"
#include "report_thread.hpp"
#include "ring_buffer.hpp"
#include "ringflow/run.hpp"
#include "ringflow/stage.hpp"
#include "stage_runner.hpp"
#include "trace.hpp"

namespace ringflow {

class RunImpl : private ReportThreadImpl::Subscriber {
 public:
  // `push_inputs` is what push() accepts: the model's inputs, or HWC uint8 frames when
  // preprocessing, with -1 for dynamic dimensions; empty with stages before the model (they take
  // anything). `max_shapes` bounds them (empty: no bound). `before` and `after` are the user's
  // stages around the model. Starts the engine's threads; throws Error if they cannot start, with
  // nothing left running.
  RunImpl(std::shared_ptr<const ModelImpl> model, RunOptions options, std::vector<TensorSpec> push_inputs,
          std::vector<Shape> max_shapes, std::vector<Stage> before = {}, std::vector<Stage> after = {});
  ~RunImpl();

  void stop();

  enum class PushMode { Wait, NoWait, IfRoom };
  // Wait and NoWait return the accepted flag. IfRoom waits for room until `deadline` and, where it
  // would wait longer, returns nullopt with `sample` as it was and nothing counted.
  std::optional<bool> push(Sample& sample, PushMode mode, Clock::time_point deadline = Clock::time_point::min(),
                           std::shared_ptr<Submitted> submitted = nullptr);
  // As push() (Wait or IfRoom), the result going to `done`; with IfRoom and no room, nullopt with
  // `sample` and `done` as they were.
  std::optional<bool> submit(Sample& sample, Completion& done, std::shared_ptr<const std::atomic<bool>> cancel,
                             PushMode mode, Clock::time_point deadline = Clock::time_point::min());
  void check(Sample sample) const;
  void close_input();
  bool stop_and_wait(int timeout_ms);
  void cancel();
  void trace(const std::string& path) const;
  void set_callback(ResultCallback callback, int every, int max_delay_ms,
                    std::shared_ptr<ReportThreadImpl> thread);
  bool wait_all(int timeout_ms);
  PullResult pull(int timeout_ms);
  // Run::notify_when_pullable() and notify_when_pushable().
  void watch_results(std::function<void()> wake) { result_ready_.watch(std::move(wake)); }
  void watch_room(std::function<void()> wake) { input_space_.watch(std::move(wake)); }
  Sample run_one(Sample sample, int timeout_ms);
  RunStats stats() const;
  InputStats input_stats() const;
  // With a callback, a group of up to `every` results has left the result slots but is not yet
  // delivered.
  std::size_t capacity() const {
    const std::size_t group = has_callback_.load(std::memory_order_acquire) ? delivery_->every : 0;
    return input_.capacity() + result_capacity_ + group;
  }
  // Made in a process this one was forked from: its threads are not here (fork_guard.hpp).
  bool forked() const;

  const RunOptions options;
  const std::vector<TensorSpec> push_inputs;
  const std::vector<TensorSpec>& outputs() const { return model_->outputs; }

 private:
  struct Batch {
    std::vector<Item> items;
  };
  // Pooled output buffers for one output, one pool per buffer size met (dynamic shapes meet
  // several). Found under a mutex: once per inference, never contended for long.
  struct OutputPools {
    std::mutex mutex;
    std::vector<std::pair<std::size_t, std::shared_ptr<BufferPool>>> by_bytes;
  };
  class Caller;
  // The Run whose on_input_drop (or result callback) this thread is inside, if any: a push into it
  // from there, or stopping it, is refused.
  static thread_local const RunImpl* t_in_drop_callback;
  static thread_local const RunImpl* t_in_result_callback;
  // Calls the user's code with `in_callback` (one of the two above) naming this Run, and returns
  // what it threw (null if nothing), for the caller to raise later or drop. A forced unwind (the
  // thread being ended by pthread_exit, as Python does at exit) goes through.
  template <typename Call>
  std::exception_ptr call_user(const RunImpl*& in_callback, Call&& call) {
    const RunImpl* outer = in_callback;
    in_callback = this;
    std::exception_ptr thrown;
    try {
      call();
    } catch (const abi::__forced_unwind&) {
      in_callback = outer;
      throw;
    } catch (...) {
      thrown = std::current_exception();
    }
    in_callback = outer;
    return thrown;
  }
  // set_callback(): the callback and the group being gathered for it. Touched only by the report
  // thread once set, apart from the immutable fields.
  struct Delivery {
    ResultCallback callback;
    std::size_t every = 1;
    int max_delay_ms = -1;
    std::vector<PullResult> group;
    Clock::time_point oldest;  // when the group's first result was taken
  };

  void start_threads();
  void add_stages(std::vector<Stage> before, std::vector<Stage> after);
  void validate(Sample& sample) const;
  void check_model_inputs(Sample& sample) const;
  void check_tensors(const Sample& sample, const std::vector<TensorSpec>& specs) const;
  bool on_own_stage_thread() const;
  Stage::Function preprocess_function() const;
  bool batchable(const Item& first, const Item& next) const;
  bool is_closed() const { return state_.load(std::memory_order_acquire) & 1; }
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }
  bool drained() const { return state_.load(std::memory_order_acquire) == 1; }
  void release_samples(std::uint64_t count);
  bool take(Item& item) { return results_.try_take(item); }
  PullResult finish_take(Item&& taken);
  Clock::time_point report() override;
  void deliver_group();
  void start_submitting();
  void stop_locked();  // stop()'s part under stop_mutex_
  // Hands a submitted sample's result to its completion, once: false if it was completed already.
  bool finish_submitted(const std::shared_ptr<Submitted>& submitted, PullResult& result);
  void complete(Item&& item);
  void report_drop(const Sample& sample, DropReason reason, std::exception_ptr& callback_error);

  bool take_credit(bool wait);
  void return_credit();
  bool admit(Item& item, Clock::time_point deadline, bool until_closed);
  bool next_item(Item& item, Clock::time_point deadline, bool until_closed);

  void admission_loop();
  void dispatch_loop();
  void dispatch(Batch& batch);
  void worker_loop(std::size_t worker);
  void infer(std::vector<Item>& items, std::size_t worker);
  std::vector<Tensor> run_model(const std::vector<Item>& items, std::size_t worker);
  Tensor output_tensor(std::size_t output, const Shape& shape);
  void fail(Item&& item, std::string error) noexcept;
  void after_inference(Item&& item) noexcept;
  void deliver(Item&& item) noexcept;
  bool metrics() const { return options.enable_metrics; }

  std::shared_ptr<const ModelImpl> model_;
  const std::vector<Shape> max_shapes_;
  const std::uint64_t generation_;
  std::shared_ptr<Ort::Session> session_;
  // Built once when the model's input size is fixed; otherwise one per frame size met, per
  // preprocess thread.
  std::optional<Preprocessor> preprocessor_;
  std::shared_ptr<BufferPool> preprocess_pool_;  // the fixed-size model inputs it writes
  const std::size_t result_capacity_;
  // With one worker, the dispatcher runs inference itself: one hop less.
  const bool dispatcher_infers_;
  bool user_stages_before_ = false;  // push() then takes anything; the model's inputs are checked later

  // Optional stages: stage_context_ is what they share with the Run. pre_ runs between admission
  // and batching (the user's stages, then the built-in preprocessing), post_ between inference and
  // delivery. With pre_, an admission thread numbers the samples and batch_input_ is the
  // dispatcher's queue.
  alignas(kCacheLine) std::atomic<bool> cancelling_{false};
  std::unique_ptr<TraceLog> trace_;
  std::vector<std::uint32_t> inference_lanes_;
  std::vector<std::unique_ptr<StageRunner>> pre_, post_;
  std::unique_ptr<StageQueue> batch_input_;
  std::uint64_t next_ordinal_ = 0;  // the admitting thread's

  RingBuffer<Item> input_;
  EventCount input_ready_;
  EventCount input_space_;

  RingBuffer<Batch> infer_queue_;
  EventCount infer_ready_;

  alignas(kCacheLine) std::atomic<std::int64_t> credits_;
  EventCount credit_freed_;

  // Results, in ordinal order when ordered: the end of the pipeline.
  StageQueue results_;
  EventCount& result_ready_;

  // End of stream in one word: bit 0 is "closed"; the rest counts, in steps of 2, the pushes in
  // progress plus the accepted samples not yet pulled or evicted (an accepted push hands its step
  // on to its sample). So the stream has ended exactly when state_ == 1. Every change is a
  // read-modify-write of this one atomic; RMWs of one atomic are totally ordered, so exactly one
  // of them produces 1, and the thread whose RMW did so wakes the pullers (release_samples,
  // close_input). No thread decides from a plain load of one variable after a store to another,
  // so there is no store-buffering pair to go wrong on weakly ordered CPUs.
  alignas(kCacheLine) std::atomic<std::uint64_t> state_{0};

  // Result callbacks (set_callback). has_callback_ is stored with release after delivery_ and
  // report_thread_ are set, so an engine thread that sees it true sees them.
  std::unique_ptr<Delivery> delivery_;
  std::shared_ptr<ReportThreadImpl> report_thread_;
  std::atomic<bool> has_callback_{false};
  // submit(): the Run delivers to each sample's completion instead (delivery_ then has no
  // callback). Every submitted sample not yet completed is in pending_, so stop() can complete
  // those it discards instead of leaving their submitters waiting.
  std::atomic<bool> submitting_{false};
  std::atomic<std::uint64_t> plain_pushes_{0};  // push() calls not from submit()
  std::mutex mode_mutex_;  // choosing set_callback() or submit()
  std::mutex pending_mutex_;
  std::unordered_set<std::shared_ptr<Submitted>> pending_;
  std::atomic<int> flush_waiters_{0};  // wait_all() calls: a partial group goes once nothing more is coming
  CallbackErrors callback_errors_;
  EventCount idle_;  // notified when no sample is outstanding and no push in progress

  // stop(): callers_ counts threads inside push/pull/run. A caller increments it, then reads
  // stopping_; stop() stores stopping_, then reads callers_. Both sides are seq_cst, so at least
  // one sees the other (the store-buffering pair is ordered): either the caller sees stopping_ and
  // leaves, or stop() waits for it.
  std::atomic<bool> stopping_{false};
  std::atomic<int> callers_{0};
  std::mutex stop_mutex_;
  bool stopped_ = false;

  // Counters.
  alignas(kCacheLine) std::atomic<std::uint64_t> pushes_{0};
  std::atomic<std::uint64_t> push_failures_{0};
  std::atomic<std::uint64_t> push_ns_{0};
  std::atomic<std::uint64_t> accepted_{0};
  std::atomic<std::uint64_t> evicted_{0};
  std::atomic<std::uint64_t> rejected_{0};
  std::atomic<std::uint64_t> fill_permille_sum_{0};
  std::atomic<std::uint64_t> fill_permille_max_{0};
  alignas(kCacheLine) std::atomic<std::uint64_t> ready_{0};
  std::atomic<std::uint64_t> pulled_{0};
  std::atomic<std::uint64_t> errors_{0};
  std::atomic<std::uint64_t> cancelled_{0};
  std::atomic<std::uint64_t> batches_{0};
  std::atomic<std::uint64_t> batched_samples_{0};
  std::atomic<std::int64_t> first_push_ns_{0};
  std::atomic<std::int64_t> last_pull_ns_{0};
  LatencyHistogram latency_;
  StageClock preprocess_clock_, inference_clock_, postprocess_clock_, reorder_clock_;

  // Per worker: ORT run options (to cancel in-flight runs) and grow-only scratch for stacked
  // batch inputs, one buffer per model input.
  std::vector<std::unique_ptr<Ort::RunOptions>> run_options_;
  std::vector<std::vector<Tensor>> batch_scratch_;
  std::vector<std::unique_ptr<OutputPools>> pools_;  // one per output, with OutputMemory::Pooled

  std::vector<std::thread> threads_;
  std::mutex run_one_mutex_;
  std::uint64_t abandoned_ = 0;  // run() calls interrupted after their sample went in
};

// Counts a thread into push/pull/run for stop() to wait on; see callers_ above.
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

}  // namespace ringflow

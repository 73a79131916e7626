// RunImpl: the pipeline behind a Run. See run.hpp for the picture.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "buffer_pool.hpp"
#include "metrics.hpp"
#include "model_impl.hpp"
#include "preprocess.hpp"
#include "ringflow/event_count.hpp"
#include "ringflow/ring_buffer.hpp"
#include "ringflow/run.hpp"

namespace ringflow {

class RunImpl {
 public:
  // `model_inputs` are the negotiated model input specs (all dimensions concrete), `push_inputs`
  // what push() accepts (frames when preprocessing), `outputs` the concrete output specs.
  RunImpl(std::shared_ptr<const ModelImpl> model, RunOptions options, std::vector<TensorSpec> push_inputs,
          std::vector<TensorSpec> model_inputs, std::vector<TensorSpec> outputs);
  ~RunImpl();

  enum class PushMode { Wait, NoWait, IfRoom };
  bool push(Sample sample, bool may_wait);
  // IfRoom: as NoWait, but where Block would wait it returns nullopt, leaving `sample` as it was
  // and counting nothing.
  std::optional<bool> push(Sample& sample, PushMode mode);
  void close_input();
  PullResult pull(int timeout_ms);
  Sample run_one(Sample sample, int timeout_ms);
  RunStats stats() const;
  InputStats input_stats() const;
  std::size_t capacity() const { return input_.capacity() + result_capacity_; }

  const RunOptions options;
  const std::vector<TensorSpec> push_inputs;
  const std::vector<TensorSpec> model_inputs;
  const std::vector<TensorSpec> outputs;

 private:
  struct Timeline {
    Clock::time_point pushed, dispatched, ready;
  };
  struct Job {
    Sample sample;
    Timeline times;
    std::uint64_t ordinal = 0;  // position in start order, dense, assigned by the dispatcher
  };
  struct Batch {
    std::vector<Job> jobs;
  };
  struct Result {
    Sample sample;
    std::string error;
    Timeline times;
    std::uint64_t ordinal = 0;
  };
  // Ordered results wait here, indexed by ordinal modulo the capacity. The dispatcher starts a
  // sample only with a free credit, so every started ordinal is within one capacity of the pull
  // cursor.
  //
  // Two turn counters make each slot a one-item handoff. A puller claims an ordinal with a CAS on
  // the cursor and only then moves the result out; a puller paused in between must not have its
  // slot overwritten by the ordinal one lap later, so a worker writes only once the slot has been
  // handed back (writable_ordinal).
  struct alignas(kCacheLine) ResultSlot {
    std::atomic<std::uint64_t> ready_ordinal{0};     // ordinal + 1 once the result is stored
    std::atomic<std::uint64_t> writable_ordinal{0};  // the ordinal this slot may be written for next
    Result result;
  };

  void validate(Sample& sample) const;
  bool is_closed() const { return state_.load(std::memory_order_acquire) & 1; }
  bool drained() const;
  void report_drop(const Sample& sample, DropReason reason, std::string& callback_error);

  bool take_credit(bool wait);
  void return_credit();
  bool next_input(Job& job, Clock::time_point deadline, bool until_closed);

  void dispatch_loop();
  void worker_loop(std::size_t worker);
  void infer(Batch& batch, std::size_t worker);
  Tensor output_tensor(std::size_t output, std::size_t batch_size);
  void fail(Job&& job, const std::string& error);
  void deliver(Result&& result);
  bool metrics() const { return options.enable_metrics; }

  std::shared_ptr<const ModelImpl> model_;
  std::shared_ptr<Ort::Session> session_;
  std::optional<Preprocessor> preprocessor_;
  // With one worker and nothing to preprocess, the dispatcher runs inference itself: one hop less.
  const bool dispatcher_infers_;
  const std::size_t result_capacity_;

  RingBuffer<Job> input_;
  EventCount input_ready_;
  EventCount input_space_;

  RingBuffer<Batch> infer_queue_;
  EventCount infer_ready_;

  alignas(kCacheLine) std::atomic<std::int64_t> credits_;
  EventCount credit_freed_;

  std::vector<ResultSlot> ordered_results_;
  RingBuffer<Result> unordered_results_;
  EventCount result_ready_;
  alignas(kCacheLine) std::atomic<std::uint64_t> next_pull_{0};

  // (pushes in progress << 1) | closed. End of stream is closed, no push in progress, and every
  // accepted sample pulled or evicted.
  alignas(kCacheLine) std::atomic<std::uint64_t> state_{0};
  std::atomic<bool> stopping_{false};

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
  std::atomic<std::uint64_t> batches_{0};
  std::atomic<std::uint64_t> batched_samples_{0};
  std::atomic<std::int64_t> first_push_ns_{0};
  std::atomic<std::int64_t> last_pull_ns_{0};
  LatencyHistogram latency_;
  StageClock preprocess_clock_, inference_clock_, postprocess_clock_, reorder_clock_;

  // Per worker: ORT run options (to cancel in-flight runs) and scratch for stacked batch inputs.
  std::vector<std::unique_ptr<Ort::RunOptions>> run_options_;
  std::vector<std::vector<Tensor>> batch_inputs_;
  // Pooled outputs: pools_[output][batch_size - 1].
  std::vector<std::vector<std::shared_ptr<BufferPool>>> pools_;

  std::vector<std::thread> threads_;
  std::mutex run_one_mutex_;
};

}  // namespace ringflow

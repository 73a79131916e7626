// RunImpl: the pipeline behind a Run. See run.hpp for the picture.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

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

  bool push(Sample sample, bool wait);
  void close_input();
  PullResult pull(int timeout_ms);
  Sample run_one(const std::vector<Tensor>& inputs, int timeout_ms);

  const RunOptions options;
  const std::vector<TensorSpec> push_inputs;
  const std::vector<TensorSpec> model_inputs;
  const std::vector<TensorSpec> outputs;

 private:
  struct Job {
    Sample sample;
  };

  // Where results wait to be pulled, indexed by input_seq modulo the capacity. Admission control
  // keeps every in-flight seq within one capacity of the pull cursor, so a slot is always free by
  // the time its next seq is written.
  struct alignas(kCacheLine) ResultSlot {
    std::atomic<std::uint64_t> ready_seq{0};  // input_seq + 1 once the result is stored
    Sample sample;
    std::string error;
  };

  void validate(Sample& sample) const;
  bool try_acquire_slot();
  void release_slot();
  bool is_closed() const;
  void enqueue(RingBuffer<Job>& ring, EventCount& ready, Job&& job);
  bool dequeue(RingBuffer<Job>& ring, EventCount& ready, Job& job);
  void deliver(Sample&& sample, std::string error);

  void preprocess_loop();
  void infer_loop(std::size_t worker);

  std::shared_ptr<const ModelImpl> model_;
  std::optional<Preprocessor> preprocessor_;

  RingBuffer<Job> preprocess_queue_;
  EventCount preprocess_ready_;
  RingBuffer<Job> infer_queue_;
  EventCount infer_ready_;

  std::vector<ResultSlot> results_;
  EventCount result_ready_;

  // Samples accepted and not yet pulled may not exceed queue_depth.
  alignas(kCacheLine) std::atomic<std::int64_t> free_slots_;
  EventCount slot_freed_;
  // (next input_seq << 1) | closed: one word, so no push can be accepted after close_input().
  alignas(kCacheLine) std::atomic<std::uint64_t> admitted_{0};
  alignas(kCacheLine) std::atomic<std::uint64_t> next_pull_{0};
  std::atomic<bool> stopping_{false};

  std::vector<std::unique_ptr<Ort::RunOptions>> run_options_;  // per worker, to cancel in-flight runs
  std::vector<std::thread> threads_;
  std::mutex run_one_mutex_;
};

}  // namespace ringflow

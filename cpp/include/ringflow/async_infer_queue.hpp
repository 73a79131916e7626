// AsyncInferQueue: OpenVINO's pool of inference requests ("jobs"), with its names, on a Run.
//
//   AsyncInferQueue queue(model);                      // jobs = 0: sized for this machine
//   queue.set_callback([](InferRequest& request, std::any& userdata) { ... });
//   for (...) queue.start_async(inputs, frame_id);     // waits only while every job is busy
//   queue.wait_all();
//
// Unlike OpenVINO's: callbacks may come in submission order (ordered = true); the caller may reuse
// its inputs as soon as start_async() returns (they are copied or shared, never read later from the
// caller's memory); a failed inference reaches the callback as request.error() instead of being
// raised on another thread; and an exception from a callback is raised by the next start_async()
// or wait_all() once, then cleared, rather than poisoning the queue.
#pragma once

#include <any>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ringflow/model.hpp"
#include "ringflow/sample.hpp"

namespace ringflow {

// One job of the queue. Its outputs stay readable until the job is started again.
class InferRequest {
 public:
  // The outputs in the model's order, or by the model's output names.
  const Tensor& get_output_tensor(std::size_t index = 0) const;
  const Tensor& get_tensor(const std::string& name) const;
  const Sample& results() const { return results_; }
  // From start_async() to the callback, in milliseconds.
  double latency_ms() const { return latency_ms_; }
  // Why this inference failed; empty if it succeeded (then the outputs are set).
  const std::string& error() const { return error_; }
  std::size_t id() const { return id_; }

 private:
  friend class AsyncInferQueueImpl;
  Sample results_;
  std::string error_;
  double latency_ms_ = 0;
  std::size_t id_ = 0;
};

class AsyncInferQueueImpl;

class AsyncInferQueue {
 public:
  using Callback = std::function<void(InferRequest& request, std::any& userdata)>;

  // `jobs` requests may be in flight at once. 0 picks eight per core. The queue runs one inference
  // per core at a time (one ONNX Runtime thread each, the fastest split measured on CPUs); the
  // other requests wait ready, so no core idles, and the results that finish while a callback
  // waits for its turn (in Python: for the GIL) come back together in one hand-off. On tiny-mlp,
  // two per core gave about a third of the throughput of eight (benchmarks/README.md).
  // `ordered`: callbacks in submission order (OpenVINO: completion order, which is the default).
  explicit AsyncInferQueue(const Model& model, int jobs = 0, bool ordered = false);
  // Waits for the requests in flight, as OpenVINO's does, then stops.
  ~AsyncInferQueue();
  AsyncInferQueue(AsyncInferQueue&&) noexcept;
  AsyncInferQueue& operator=(AsyncInferQueue&&) noexcept;

  // Called on a report thread, never an inference thread, once per finished request.
  void set_callback(Callback callback);
  // Starts an inference on an idle job, waiting while every job is busy. Throws the errors push()
  // throws for bad inputs, and CallbackError for callback exceptions since the last call.
  void start_async(Sample inputs, std::any userdata = {});
  void start_async(const std::vector<Tensor>& inputs, std::any userdata = {});
  // start_async() if a job is idle now, returning true; otherwise false, with `inputs` and
  // `userdata` as they were. Lets a caller holding a lock (the GIL) release it only to wait.
  bool try_start_async(Sample& inputs, std::any& userdata);
  // Throws what start_async() would throw for these inputs' shapes and dtypes, without starting.
  void check(const Sample& inputs) const;
  std::vector<std::string> input_names() const;  // the model's inputs, in order
  // Waits until every started request's callback has returned; false on timeout.
  bool wait_all(int timeout_ms = -1);
  bool is_ready() const;                // a job is idle: start_async() would not wait
  // Discards the requests in flight (their callbacks are not called) and stops; as Run::stop().
  void stop();
  // The job the next start_async() will take (it stays idle), waiting while every job is busy.
  std::size_t get_idle_request_id();
  std::size_t size() const;             // the number of jobs
  InferRequest& operator[](std::size_t id);
  // What the job's last start_async() was given; kept until the job starts again.
  const std::any& userdata(std::size_t id) const;

 private:
  std::unique_ptr<AsyncInferQueueImpl> impl_;
};

}  // namespace ringflow

#include "ringflow/async_infer_queue.hpp"

#include <cxxabi.h>

#include <algorithm>
#include <deque>
#include <mutex>
#include <thread>

#include "callback_errors.hpp"
#include "ringflow/errors.hpp"
#include "ringflow/graph.hpp"
#include "waiting.hpp"

namespace ringflow {

const Tensor& InferRequest::get_output_tensor(std::size_t index) const {
  if (index >= results_.tensors.size()) {
    throw Error("request " + std::to_string(id_) + " has " + std::to_string(results_.tensors.size()) +
                " outputs" + (error_.empty() ? "" : " (it failed: " + error_ + ")") + "; no output " +
                std::to_string(index));
  }
  return results_.tensors[index];
}

const Tensor& InferRequest::get_tensor(const std::string& name) const { return results_.at(name); }

namespace {

int cores() { return static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); }

}  // namespace

// Jobs are ids 0..jobs-1. An id is taken from the front of `idle_` by start_async(), travels
// through the Run as the sample's frame_id, and goes back to the end of `idle_` once its callback
// has returned, so at most `jobs` requests are in flight and each id's request and userdata belong
// to one inference at a time. `idle_` is a deque under a mutex rather than a ring: OpenVINO's
// get_idle_request_id() names the job the next start_async() will take, which needs a look at the
// front without taking it; and a start costs microseconds, so the lock is never contended long.
class AsyncInferQueueImpl {
 public:
  AsyncInferQueueImpl(const Model& model, int jobs, bool ordered)
      : jobs_(static_cast<std::size_t>(jobs > 0 ? jobs : 8 * cores())),
        requests_(jobs_),
        userdata_(jobs_),
        started_(jobs_),
        run_(build(model, jobs_, ordered)) {
    for (std::size_t id = 0; id < jobs_; ++id) {
      requests_[id].id_ = id;
      idle_.push_back(id);
    }
    // Every ready result at once, up to one per job: one hand-off (one GIL round trip in Python)
    // for as many requests as have finished.
    run_.set_callback([this](std::vector<PullResult>& results) { finished(results); },
                      static_cast<int>(jobs_), /*max_delay_ms=*/0);
  }

  ~AsyncInferQueueImpl() {
    try {
      run_.wait_all();  // returns at once after stop()
    } catch (const Error&) {
      // A callback's exception nobody asked for any more: the queue is going away.
    }
  }

  // The requests in flight are dropped with the Run; a start_async() waiting for a job, and every
  // later one, throws ClosedError.
  void stop() {
    stopped_.store(true, std::memory_order_release);
    idle_ready_.notify_all();
    run_.stop();
  }

  void set_callback(AsyncInferQueue::Callback callback) {
    std::lock_guard<std::mutex> lock(callback_mutex_);
    callback_ = std::make_shared<AsyncInferQueue::Callback>(std::move(callback));
  }

  void start_async(Sample inputs, std::any userdata) {
    errors_.raise("the AsyncInferQueue callback");
    run_.check(inputs);  // before taking a job, so bad inputs cost nothing
    start(take_idle(), std::move(inputs), std::move(userdata));
  }

  bool try_start_async(Sample& inputs, std::any& userdata) {
    errors_.raise("the AsyncInferQueue callback");
    if (stopped_.load(std::memory_order_acquire)) return false;  // start_async() says why
    run_.check(inputs);
    std::size_t id = 0;
    {
      std::lock_guard<std::mutex> lock(idle_mutex_);
      if (idle_.empty()) return false;
      id = idle_.front();
      idle_.pop_front();
    }
    start(id, std::move(inputs), std::move(userdata));
    return true;
  }

  bool wait_all(int timeout_ms) {
    const bool done = run_.wait_all(timeout_ms);
    errors_.raise("the AsyncInferQueue callback");
    return done;
  }

  // OpenVINO's flow control: true when a job is idle, so start_async() would not wait.
  bool is_ready() const {
    std::lock_guard<std::mutex> lock(idle_mutex_);
    return !idle_.empty();
  }
  void check(const Sample& inputs) const { run_.check(inputs); }
  std::vector<std::string> input_names() const {
    std::vector<std::string> names;
    for (const TensorSpec& spec : run_.input_specs()) names.push_back(spec.name);
    return names;
  }

  // The job the next start_async() takes, waiting while every job is busy; it stays idle.
  std::size_t get_idle_request_id() { return wait_for_idle(/*take=*/false); }

  std::size_t size() const { return jobs_; }
  InferRequest& request(std::size_t id) { return requests_.at(id); }
  const std::any& userdata(std::size_t id) const { return userdata_.at(id); }

 private:
  static Run build(const Model& model, std::size_t jobs, bool ordered) {
    RunOptions options;
    options.queue_depth = jobs;  // never full: at most `jobs` requests exist
    options.workers = static_cast<int>(std::min<std::size_t>(jobs, static_cast<std::size_t>(cores())));
    options.ordered = ordered;
    Graph graph;
    graph.add(model.graph());
    return graph.build(model.synthetic_inputs(), options);
  }

  void start(std::size_t id, Sample inputs, std::any userdata) {
    userdata_[id] = std::move(userdata);
    started_[id] = Clock::now();
    inputs.frame_id = static_cast<std::int64_t>(id);
    try {
      run_.push(std::move(inputs));
    } catch (...) {
      release(id);
      throw;
    }
  }

  std::size_t take_idle() { return wait_for_idle(/*take=*/true); }

  // The front idle job, taken or only looked at, waiting while every job is busy.
  std::size_t wait_for_idle(bool take) {
    std::size_t id = 0;
    bool found = false;
    wait_with_checks(idle_ready_,
                     [&] {
                       if (stopped_.load(std::memory_order_acquire)) return true;
                       std::lock_guard<std::mutex> lock(idle_mutex_);
                       if (idle_.empty()) return false;
                       id = idle_.front();
                       if (take) idle_.pop_front();
                       return found = true;
                     },
                     Clock::time_point::max());
    if (!found) throw ClosedError("this AsyncInferQueue was stopped; it starts no more requests");
    return id;
  }

  // The job's userdata stays until the job is started again, as OpenVINO's does.
  void release(std::size_t id) {
    {
      std::lock_guard<std::mutex> lock(idle_mutex_);
      idle_.push_back(id);
    }
    idle_ready_.notify_all();
  }

  // On the report thread.
  void finished(std::vector<PullResult>& results) {
    std::shared_ptr<AsyncInferQueue::Callback> callback;
    {
      std::lock_guard<std::mutex> lock(callback_mutex_);
      callback = callback_;
    }
    const Clock::time_point now = Clock::now();
    for (PullResult& r : results) {
      const auto id = static_cast<std::size_t>(r.sample->frame_id);
      InferRequest& request = requests_[id];
      request.results_ = std::move(*r.sample);
      request.error_ = std::move(r.error);
      request.latency_ms_ = std::chrono::duration<double, std::milli>(now - started_[id]).count();
      if (callback && *callback) {
        try {
          (*callback)(request, userdata_[id]);
        } catch (const abi::__forced_unwind&) {
          throw;  // the thread is being ended (pthread_exit, as Python does at exit): let it
        } catch (...) {
          errors_.add(std::current_exception());  // one request's failure, not the others'
        }
      }
      release(id);
    }
  }

  const std::size_t jobs_;
  std::vector<InferRequest> requests_;
  std::vector<std::any> userdata_;
  std::vector<Clock::time_point> started_;
  std::atomic<bool> stopped_{false};
  mutable std::mutex idle_mutex_;
  std::deque<std::size_t> idle_;
  EventCount idle_ready_;
  std::mutex callback_mutex_;
  std::shared_ptr<AsyncInferQueue::Callback> callback_;
  CallbackErrors errors_;
  Run run_;  // last: destroyed (and stopped) first, while everything its callback touches exists
};

AsyncInferQueue::AsyncInferQueue(const Model& model, int jobs, bool ordered)
    : impl_(std::make_unique<AsyncInferQueueImpl>(model, jobs, ordered)) {}
AsyncInferQueue::~AsyncInferQueue() = default;
AsyncInferQueue::AsyncInferQueue(AsyncInferQueue&&) noexcept = default;
AsyncInferQueue& AsyncInferQueue::operator=(AsyncInferQueue&&) noexcept = default;

namespace {
AsyncInferQueueImpl& live(const std::unique_ptr<AsyncInferQueueImpl>& impl) {
  if (!impl) throw Error("this AsyncInferQueue was moved from");
  return *impl;
}
}  // namespace

void AsyncInferQueue::set_callback(Callback callback) { live(impl_).set_callback(std::move(callback)); }
void AsyncInferQueue::start_async(Sample inputs, std::any userdata) {
  live(impl_).start_async(std::move(inputs), std::move(userdata));
}
void AsyncInferQueue::start_async(const std::vector<Tensor>& inputs, std::any userdata) {
  live(impl_).start_async(make_sample(inputs), std::move(userdata));
}
bool AsyncInferQueue::try_start_async(Sample& inputs, std::any& userdata) {
  return live(impl_).try_start_async(inputs, userdata);
}
bool AsyncInferQueue::wait_all(int timeout_ms) { return live(impl_).wait_all(timeout_ms); }
bool AsyncInferQueue::is_ready() const { return live(impl_).is_ready(); }
void AsyncInferQueue::stop() { live(impl_).stop(); }
void AsyncInferQueue::check(const Sample& inputs) const { live(impl_).check(inputs); }
std::vector<std::string> AsyncInferQueue::input_names() const { return live(impl_).input_names(); }
std::size_t AsyncInferQueue::get_idle_request_id() { return live(impl_).get_idle_request_id(); }
std::size_t AsyncInferQueue::size() const { return live(impl_).size(); }
InferRequest& AsyncInferQueue::operator[](std::size_t id) { return live(impl_).request(id); }
const std::any& AsyncInferQueue::userdata(std::size_t id) const { return live(impl_).userdata(id); }

}  // namespace ringflow

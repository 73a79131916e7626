#include "ringflow/model.hpp"

#include <sys/stat.h>

#include <condition_variable>
#include <algorithm>
#include <map>
#include <set>
#include <mutex>
#include <thread>

#include "model_impl.hpp"
#include "preprocess.hpp"
#include "ringflow/errors.hpp"
#include "ringflow/event_count.hpp"

namespace ringflow {
namespace {

std::vector<TensorSpec> read_specs(Ort::Session& session, bool inputs, const std::string& path) {
  Ort::AllocatorWithDefaultOptions allocator;
  const std::size_t count = inputs ? session.GetInputCount() : session.GetOutputCount();
  std::vector<TensorSpec> specs;
  for (std::size_t i = 0; i < count; ++i) {
    TensorSpec spec;
    spec.name = (inputs ? session.GetInputNameAllocated(i, allocator)
                        : session.GetOutputNameAllocated(i, allocator))
                    .get();
    Ort::TypeInfo type = inputs ? session.GetInputTypeInfo(i) : session.GetOutputTypeInfo(i);
    if (type.GetONNXType() != ONNX_TYPE_TENSOR) {
      throw ModelError("model '" + path + "': " + (inputs ? "input '" : "output '") + spec.name +
                       "' is not a tensor; ringflow runs tensor-in, tensor-out models");
    }
    auto info = type.GetTensorTypeAndShapeInfo();
    spec.dtype = ort::to_dtype(info.GetElementType(), "model '" + path + "' tensor '" + spec.name + "'");
    spec.shape = info.GetShape();
    specs.push_back(std::move(spec));
  }
  return specs;
}

GraphOptimizationLevel to_ort(GraphOptimization level) {
  switch (level) {
    case GraphOptimization::Disabled: return ORT_DISABLE_ALL;
    case GraphOptimization::Basic: return ORT_ENABLE_BASIC;
    case GraphOptimization::Extended: return ORT_ENABLE_EXTENDED;
    case GraphOptimization::All: return ORT_ENABLE_ALL;
  }
  return ORT_ENABLE_ALL;
}

Ort::SessionOptions make_session_options(const SessionOptions& o) {
  Ort::SessionOptions so;
  if (o.intra_op_threads > 0) so.SetIntraOpNumThreads(o.intra_op_threads);
  if (o.inter_op_threads > 0) so.SetInterOpNumThreads(o.inter_op_threads);
  so.SetGraphOptimizationLevel(to_ort(o.optimization));
  if (!o.execution_provider.empty() && o.execution_provider != "cpu" &&
      o.execution_provider != "CPUExecutionProvider") {
    try {
      so.AppendExecutionProvider(o.execution_provider, {});
    } catch (const Ort::Exception& e) {
      std::string available;
      for (const std::string& p : Ort::GetAvailableProviders()) available += " " + p;
      throw ModelError("execution provider '" + o.execution_provider + "' is not usable (" +
                       e.what() + "); this ONNX Runtime has:" + available);
    }
  }
  return so;
}

// Arms ORT's terminate flag on runs that pass their deadline. One thread serves every timed call.
class Watchdog {
 public:
  static Watchdog& instance() {
    static Watchdog* const w = new Watchdog();  // never destroyed: its thread runs until exit
    return *w;
  }

  std::uint64_t arm(Clock::time_point deadline, const Ort::RunOptions* run) {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::uint64_t id = next_id_++;
    armed_.emplace(id, Entry{deadline, run});
    cv_.notify_one();
    return id;
  }

  // Returns whether the deadline fired. Afterwards the watchdog no longer touches the RunOptions.
  bool disarm(std::uint64_t id) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (armed_.erase(id)) return false;
    return fired_.erase(id) > 0;
  }

 private:
  struct Entry {
    Clock::time_point deadline;
    const Ort::RunOptions* run;
  };

  Watchdog() { std::thread([this] { loop(); }).detach(); }

  void loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      auto next = Clock::time_point::max();
      const auto now = Clock::now();
      for (auto it = armed_.begin(); it != armed_.end();) {
        if (it->second.deadline <= now) {
          // SetTerminate only flips a flag the run polls, so it is safe from another thread.
          const_cast<Ort::RunOptions*>(it->second.run)->SetTerminate();
          fired_.insert(it->first);
          it = armed_.erase(it);
        } else {
          next = std::min(next, it->second.deadline);
          ++it;
        }
      }
      if (next == Clock::time_point::max()) {
        cv_.wait(lock);
      } else {
        cv_.wait_until(lock, next);
      }
    }
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  std::uint64_t next_id_ = 0;
  std::map<std::uint64_t, Entry> armed_;
  std::set<std::uint64_t> fired_;
};

}  // namespace

void check_against_spec(const Tensor& tensor, const TensorSpec& spec, const std::string& what) {
  const std::string expected = std::string(dtype_name(spec.dtype)) + " " + shape_to_string(spec.shape);
  if (tensor.dtype() != spec.dtype) {
    throw DTypeError(what + " '" + spec.name + "' is " + tensor.describe() + "; expected " + expected);
  }
  const Shape& s = tensor.shape();
  if (s.size() != spec.shape.size()) {
    throw ShapeError(what + " '" + spec.name + "' has rank " + std::to_string(s.size()) + " (" +
                     tensor.describe() + "); expected rank " + std::to_string(spec.shape.size()) +
                     " (" + expected + ")");
  }
  for (std::size_t d = 0; d < s.size(); ++d) {
    if (spec.shape[d] >= 0 ? s[d] != spec.shape[d] : s[d] < 1) {
      throw ShapeError(what + " '" + spec.name + "' is " + tensor.describe() + "; expected " +
                       expected + " (dimension " + std::to_string(d) + " differs)");
    }
  }
}

ModelImpl::ModelImpl(std::string model_path, Model::Options model_options)
    : path(std::move(model_path)), options(std::move(model_options)) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    throw ModelError("model file not found: '" + path + "'");
  }
  ort::env();
  OrtPrepackedWeightsContainer* container = nullptr;
  Ort::ThrowOnError(Ort::GetApi().CreatePrepackedWeightsContainer(&container));
  prepacked_.reset(container, [](OrtPrepackedWeightsContainer* c) {
    Ort::GetApi().ReleasePrepackedWeightsContainer(c);
  });
  session_ = open_session(options.session.intra_op_threads);
  inputs = read_specs(*session_, true, path);
  outputs = read_specs(*session_, false, path);
  for (const TensorSpec& s : inputs) input_names_.push_back(s.name.c_str());
  for (const TensorSpec& s : outputs) output_names_.push_back(s.name.c_str());
  if (options.preprocess.enabled()) {
    if (inputs.size() != 1) {
      throw ModelError("preprocess needs a model with one image input; '" + path + "' has " +
                       std::to_string(inputs.size()) + " inputs");
    }
    // Validates the options against the model now, rather than on the first frame.
    Preprocessor check(options.preprocess, preprocessed_input(inputs[0], options.preprocess.input_max_height,
                                                              options.preprocess.input_max_width));
  }
}

std::vector<Tensor> ModelImpl::inputs_in_model_order(const Sample& sample) const {
  std::string model_names;
  for (const TensorSpec& s : inputs) model_names += (model_names.empty() ? "" : ", ") + s.name;
  if (sample.tensors.size() != inputs.size()) {
    throw ShapeError("got " + std::to_string(sample.tensors.size()) + " input tensors; the model takes " +
                     std::to_string(inputs.size()) + " (" + model_names + ")");
  }
  const bool named = std::any_of(sample.names.begin(), sample.names.end(),
                                 [](const std::string& n) { return !n.empty(); });
  if (!named) return sample.tensors;
  std::vector<Tensor> ordered;
  for (const TensorSpec& spec : inputs) {
    const auto it = std::find(sample.names.begin(), sample.names.end(), spec.name);
    if (it == sample.names.end() || static_cast<std::size_t>(it - sample.names.begin()) >= sample.tensors.size()) {
      std::string given;
      for (const std::string& n : sample.names) given += (given.empty() ? "" : ", ") + n;
      throw ShapeError("the sample has no input named '" + spec.name + "'; the model's inputs are " +
                       model_names + ", the sample's are " + given);
    }
    ordered.push_back(sample.tensors[static_cast<std::size_t>(it - sample.names.begin())]);
  }
  return ordered;
}

std::shared_ptr<Ort::Session> ModelImpl::open_session(int intra_op_threads) const {
  SessionOptions session_options = options.session;
  session_options.intra_op_threads = intra_op_threads;
  try {
    // Declared before the session so the session, which refers to it, is destroyed first.
    auto container = prepacked_;
    auto* session = new Ort::Session(ort::env(), path.c_str(), make_session_options(session_options),
                                     container.get());
    return std::shared_ptr<Ort::Session>(session, [container](Ort::Session* s) { delete s; });
  } catch (const Ort::Exception& e) {
    throw ModelError("could not load model '" + path + "' (is it a valid ONNX file?): " + e.what());
  }
}

std::shared_ptr<Ort::Session> ModelImpl::session(int intra_op_threads) const {
  if (intra_op_threads <= 0 || intra_op_threads == options.session.intra_op_threads) return session_;
  std::lock_guard<std::mutex> lock(sessions_mutex_);
  std::shared_ptr<Ort::Session>& cached = sessions_by_threads_[intra_op_threads];
  if (!cached) cached = open_session(intra_op_threads);
  return cached;
}

void ModelImpl::infer(Ort::Session& session, const std::vector<Tensor>& in, std::vector<Tensor>& out,
                      const Ort::RunOptions& run_options) const {
  std::vector<Ort::Value> in_values;
  in_values.reserve(in.size());
  for (const Tensor& t : in) in_values.push_back(ort::as_value(t));
  try {
    if (!out.empty()) {
      std::vector<Ort::Value> out_values;
      out_values.reserve(out.size());
      for (const Tensor& t : out) out_values.push_back(ort::as_value(t));
      session.Run(run_options, input_names_.data(), in_values.data(), in_values.size(),
                  output_names_.data(), out_values.data(), out_values.size());
      return;
    }
    std::vector<Ort::Value> results = session.Run(run_options, input_names_.data(), in_values.data(),
                                                  in_values.size(), output_names_.data(),
                                                  output_names_.size());
    for (std::size_t i = 0; i < results.size(); ++i) {
      auto owner = std::make_shared<Ort::Value>(std::move(results[i]));
      auto info = owner->GetTensorTypeAndShapeInfo();
      void* data = owner->GetTensorMutableRawData();
      out.push_back(Tensor::borrow(outputs[i].dtype, info.GetShape(), data, owner));
    }
  } catch (const Ort::Exception& e) {
    throw InferenceError("ONNX Runtime failed on model '" + path + "': " + e.what());
  }
}

Model::Model(const std::string& path) : Model(path, Options()) {}

Model::Model(const std::string& path, Options options)
    : impl_(std::make_shared<const ModelImpl>(path, std::move(options))) {}

const std::vector<TensorSpec>& Model::input_specs() const { return impl_->inputs; }
const std::vector<TensorSpec>& Model::output_specs() const { return impl_->outputs; }
const Model::Options& Model::options() const { return impl_->options; }
const std::string& Model::path() const { return impl_->path; }

Sample Model::run(const std::vector<Tensor>& inputs, int timeout_ms) const {
  return run(make_sample(inputs), timeout_ms);
}

Sample Model::run(const Sample& sample, int timeout_ms) const {
  const std::vector<Tensor>& inputs = sample.tensors;
  std::vector<Tensor> model_inputs;
  if (impl_->options.preprocess.enabled()) {
    if (inputs.size() != 1) {
      throw ShapeError("Model::run with preprocess takes one frame; got " +
                       std::to_string(inputs.size()) + " tensors");
    }
    const Shape& frame = inputs[0].shape();
    const bool hwc = frame.size() == 3;  // anything else is rejected by check_frame() below
    Preprocessor pre(impl_->options.preprocess,
                     preprocessed_input(impl_->inputs[0], hwc ? frame[0] : 1, hwc ? frame[1] : 1));
    pre.check_frame(inputs[0]);
    model_inputs.push_back(pre.apply(inputs[0]));
  } else {
    model_inputs = impl_->inputs_in_model_order(sample);
    for (std::size_t i = 0; i < model_inputs.size(); ++i) {
      check_against_spec(model_inputs[i], impl_->inputs[i], "input");
    }
  }

  Ort::RunOptions run_options;
  std::vector<Tensor> outputs;
  if (timeout_ms < 0) {
    impl_->infer(model_inputs, outputs, run_options);
  } else {
    Watchdog& watchdog = Watchdog::instance();
    const std::uint64_t id = watchdog.arm(deadline_after(timeout_ms), &run_options);
    try {
      impl_->infer(model_inputs, outputs, run_options);
    } catch (const InferenceError&) {
      if (watchdog.disarm(id)) {
        throw TimeoutError("Model::run did not finish within timeout_ms=" + std::to_string(timeout_ms));
      }
      throw;
    }
    watchdog.disarm(id);
  }

  Sample result = make_sample(std::move(outputs));
  for (std::size_t i = 0; i < result.names.size(); ++i) result.names[i] = impl_->outputs[i].name;
  return result;
}

Model::Fragment Model::graph() const { return graph(RouteOptions()); }

Model::Fragment Model::graph(RouteOptions route) const { return Fragment{impl_, route}; }

}  // namespace ringflow

#include "ringflow/model.hpp"

#include <sys/stat.h>

#include <condition_variable>
#include <algorithm>
#include <map>
#include <set>
#include <mutex>
#include <thread>

#include "fork_guard.hpp"
#include "model_impl.hpp"
#include "preprocess.hpp"
#include "providers.hpp"
#include "ringflow/errors.hpp"
#include "event_count.hpp"

namespace ringflow {
namespace {

// The model's inputs or outputs, and per dimension the symbol ONNX names it by ("" if none).
std::vector<TensorSpec> read_specs(Ort::Session& session, bool inputs, const std::string& path,
                                   std::vector<std::vector<std::string>>& symbols) {
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
    std::vector<const char*> names(spec.shape.size(), nullptr);
    if (!names.empty()) info.GetSymbolicDimensions(names.data(), names.size());
    symbols.emplace_back();
    for (const char* n : names) symbols.back().emplace_back(n ? n : "");
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
  so.AddConfigEntry("session.intra_op.allow_spinning", o.allow_spinning ? "1" : "0");
  so.AddConfigEntry("session.inter_op.allow_spinning", o.allow_spinning ? "1" : "0");
  append_execution_provider(so, o);
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

void check_against_spec(const Tensor& tensor, const TensorSpec& spec, const std::string& what,
                        const Shape* max) {
  // The messages are built only when one is thrown: this runs on every push.
  const auto expected = [&] { return std::string(dtype_name(spec.dtype)) + " " + shape_to_string(spec.shape); };
  const auto is = [&] { return what + " '" + spec.name + "' is " + tensor.describe(); };
  if (tensor.dtype() != spec.dtype) throw DTypeError(is() + "; expected " + expected());
  const Shape& s = tensor.shape();
  if (s.size() != spec.shape.size()) {
    throw ShapeError(what + " '" + spec.name + "' has rank " + std::to_string(s.size()) + " (" +
                     tensor.describe() + "); expected rank " + std::to_string(spec.shape.size()) +
                     " (" + expected() + ")");
  }
  for (std::size_t d = 0; d < s.size(); ++d) {
    const auto dim = [d] { return "dimension " + std::to_string(d); };
    if (spec.shape[d] >= 0) {
      if (s[d] != spec.shape[d]) {
        throw ShapeError(is() + "; expected " + expected() + " (" + dim() + " must be " +
                         std::to_string(spec.shape[d]) + ")");
      }
    } else if (s[d] < 1) {
      throw ShapeError(is() + ": " + dim() + " has size 0, which ringflow does not accept; expected " +
                       expected() + ", where ? is any size from 1");
    } else if (max && (*max)[d] >= 0 && s[d] > (*max)[d]) {
      throw ShapeError(is() + ": " + dim() + " is " + std::to_string(s[d]) + ", above its bound " +
                       std::to_string((*max)[d]) + " (RunOptions.max_shape['" + spec.name +
                       "'] = " + shape_to_string(*max) + ")");
    }
  }
}

ModelImpl::ModelImpl(std::string model_path, Model::Options model_options)
    : path(std::move(model_path)), options(std::move(model_options)), generation_(fork_generation()) {
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
  std::vector<std::vector<std::string>> input_symbols, output_symbols;
  inputs = read_specs(*session_, true, path, input_symbols);
  outputs = read_specs(*session_, false, path, output_symbols);
  for (const std::vector<std::string>& dims : output_symbols) {
    output_dim_sources_.emplace_back();
    for (const std::string& symbol : dims) {
      std::pair<int, int> source{-1, -1};
      for (std::size_t i = 0; i < input_symbols.size() && source.first < 0 && !symbol.empty(); ++i) {
        for (std::size_t d = 0; d < input_symbols[i].size(); ++d) {
          if (input_symbols[i][d] == symbol && inputs[i].shape[d] < 0) {
            source = {static_cast<int>(i), static_cast<int>(d)};
            break;
          }
        }
      }
      output_dim_sources_.back().push_back(source);
    }
  }
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
  // Names are joined only for an error message: this runs on every push.
  const auto model_names = [this] {
    std::string names;
    for (const TensorSpec& s : inputs) names += (names.empty() ? "" : ", ") + s.name;
    return names;
  };
  if (sample.tensors.size() != inputs.size()) {
    throw ShapeError("got " + std::to_string(sample.tensors.size()) + " input tensors; the model takes " +
                     std::to_string(inputs.size()) + " (" + model_names() + ")");
  }
  const bool named = std::any_of(sample.names.begin(), sample.names.end(),
                                 [](const std::string& n) { return !n.empty(); });
  if (!named) return sample.tensors;
  std::vector<Tensor> ordered;
  ordered.reserve(inputs.size());
  for (const TensorSpec& spec : inputs) {
    const auto it = std::find(sample.names.begin(), sample.names.end(), spec.name);
    if (it == sample.names.end() || static_cast<std::size_t>(it - sample.names.begin()) >= sample.tensors.size()) {
      std::string given;
      for (const std::string& n : sample.names) given += (given.empty() ? "" : ", ") + n;
      throw ShapeError("the sample has no input named '" + spec.name + "'; the model's inputs are " +
                       model_names() + ", the sample's are " + given);
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
    const std::uint64_t generation = generation_;
    return std::shared_ptr<Ort::Session>(session, [container, generation](Ort::Session* s) {
      // In a forked child the session's thread pool threads are gone; joining them would hang.
      if (generation == fork_generation()) delete s;
    });
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

std::optional<Shape> ModelImpl::output_shape(std::size_t output, const std::vector<Tensor>& in) const {
  Shape shape = outputs[output].shape;
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] >= 0) continue;
    const auto [input, dim] = output_dim_sources_[output][d];
    if (input < 0) return std::nullopt;
    shape[d] = in[static_cast<std::size_t>(input)].shape()[static_cast<std::size_t>(dim)];
  }
  return shape;
}

void ModelImpl::infer(Ort::Session& session, const std::vector<Tensor>& in, std::vector<Tensor>& out,
                      const Ort::RunOptions& run_options) const {
  std::vector<Ort::Value> in_values;
  in_values.reserve(in.size());
  for (const Tensor& t : in) in_values.push_back(ort::as_value(t));
  if (out.empty()) out.resize(outputs.size());
  // Empty Values ask ORT to allocate that output.
  std::vector<Ort::Value> out_values;
  out_values.reserve(out.size());
  for (const Tensor& t : out) out_values.push_back(t.empty() ? Ort::Value(nullptr) : ort::as_value(t));
  try {
    session.Run(run_options, input_names_.data(), in_values.data(), in_values.size(), output_names_.data(),
                out_values.data(), out_values.size());
  } catch (const Ort::Exception& e) {
    throw InferenceError("ONNX Runtime failed on model '" + path + "': " + e.what());
  }
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (!out[i].empty()) continue;
    // Handed out without a copy: the Tensor keeps ORT's Value, and so its buffer, alive.
    auto owner = std::make_shared<Ort::Value>(std::move(out_values[i]));
    void* data = owner->GetTensorMutableRawData();
    out[i] = Tensor::borrow(outputs[i].dtype, owner->GetTensorTypeAndShapeInfo().GetShape(), data, owner);
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

std::vector<Tensor> ModelImpl::checked_inputs(const Sample& sample) const {
  if (!options.preprocess.enabled()) {
    std::vector<Tensor> ordered = inputs_in_model_order(sample);
    for (std::size_t i = 0; i < ordered.size(); ++i) check_against_spec(ordered[i], inputs[i], "input");
    return ordered;
  }
  if (sample.tensors.size() != 1) {
    throw ShapeError("a Model with preprocess takes one frame; got " + std::to_string(sample.tensors.size()) +
                     " tensors");
  }
  frame_preprocessor(sample.tensors[0]).check_frame(sample.tensors[0]);
  return sample.tensors;
}

Preprocessor ModelImpl::frame_preprocessor(const Tensor& frame) const {
  // A model with a fixed size takes every frame resized to it; a dynamic one, at the frame's size.
  const Shape& s = frame.shape();
  const bool hwc = s.size() == 3;  // anything else is rejected by check_frame()
  return Preprocessor(options.preprocess, preprocessed_input(inputs[0], hwc ? s[0] : 1, hwc ? s[1] : 1));
}

void Model::check(const Sample& inputs) const {
  check_not_forked(impl_->generation(), "this Model");
  impl_->checked_inputs(inputs);
}

Sample Model::run(const Sample& sample, int timeout_ms) const {
  check_not_forked(impl_->generation(), "this Model");
  std::vector<Tensor> model_inputs = impl_->checked_inputs(sample);
  if (impl_->options.preprocess.enabled()) model_inputs[0] = impl_->frame_preprocessor(model_inputs[0]).apply(model_inputs[0]);

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

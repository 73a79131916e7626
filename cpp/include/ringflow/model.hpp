// Model: one ONNX file loaded into one ONNX Runtime session.
//
// A Model is a cheap, copyable handle; every copy, every Run built from it and every thread using it
// share the one session (ONNX Runtime sessions are safe to run concurrently), so weights are held
// once however many workers or threads use them.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ringflow/sample.hpp"
#include "ringflow/tensor.hpp"

namespace ringflow {

enum class ColorFormat { RGB, BGR, GRAY };

// Turns HWC uint8 frames into the model's NCHW float input, so callers can push camera or decoder
// frames directly. Enabled by setting input_max_width/height/depth; otherwise inputs are passed to
// the model unchanged.
struct PreprocessOptions {
  ColorFormat input_format = ColorFormat::RGB;  // channel order of the frames you push
  ColorFormat model_format = ColorFormat::RGB;  // channel order the model was trained on
  int input_max_width = 0;
  int input_max_height = 0;
  int input_max_depth = 0;  // channels per frame: 3 for RGB/BGR, 1 for GRAY
  // Applied after scaling bytes to [0, 1]: (x / 255 - mean[c]) / stddev[c]. Empty means identity.
  struct Normalize {
    std::vector<float> mean;
    std::vector<float> stddev;
  } normalize;
  // Bilinear resize (pixel centres aligned, like OpenCV's INTER_LINEAR) to the model's H x W.
  bool resize = true;
  // Threads of the Run's preprocess stage: frames are converted in parallel, in order.
  int threads = 1;

  bool enabled() const { return input_max_width > 0 && input_max_height > 0 && input_max_depth > 0; }

  // RGB frames up to max_width x max_height, resized and normalized as torchvision's ImageNet models
  // expect (mean 0.485, 0.456, 0.406; stddev 0.229, 0.224, 0.225).
  static PreprocessOptions imagenet(int max_width = 224, int max_height = 224);
};

enum class GraphOptimization { Disabled, Basic, Extended, All };

struct SessionOptions {
  int intra_op_threads = 0;  // 0: ONNX Runtime's default (one per physical core)
  int inter_op_threads = 0;
  GraphOptimization optimization = GraphOptimization::All;
  // "cpu", "cuda", "tensorrt", "openvino", "dnnl", "rocm", "migraphx", "cann", "vitisai", "coreml",
  // "xnnpack", "qnn", "snpe", "webgpu", "azure", or ORT's own name ("CUDAExecutionProvider").
  // Nodes it cannot run fall back to the CPU provider. One that the loaded ONNX Runtime lacks is a
  // ModelError naming the providers it has.
  std::string execution_provider = "cpu";
  // Passed through to that provider, as ORT documents them (e.g. {"device_id", "1"} for CUDA).
  std::map<std::string, std::string> provider_options;
  // Whether ORT's intra- and inter-op pool threads spin between parallel sections instead of
  // sleeping. ORT spins by default; ringflow does not, because its own threads and the caller's
  // share the cores: on 2 cores a spinning pool thread halved an asyncio server's throughput on a
  // small model (tutorial 022), and sleeping cost ResNet-50 nothing measurable.
  bool allow_spinning = false;
};

class ModelImpl;

// What Model::benchmark() measured, on synthetic, deterministic inputs built from input_specs().
struct BenchmarkReport {
  int samples = 0;
  double latency_ms = 0;      // median of a warmed single-flight loop (one request at a time)
  double latency_p90_ms = 0;
  double fps = 0;             // async push/pull throughput at the best worker count
  int best_workers = 1;
  std::vector<std::pair<int, double>> fps_by_workers;

  std::string to_text() const;
  std::string to_json() const;
};

class Model {
 public:
  struct Options {
    PreprocessOptions preprocess;
    SessionOptions session;
  };

  // Which of the model's boundaries a Graph exposes to push() and pull().
  struct RouteOptions {
    bool include_input = true;
    bool include_output = true;
  };

  // A piece of a Graph: this model plus how it is routed.
  struct Fragment {
    std::shared_ptr<const ModelImpl> model;
    RouteOptions route;
  };

  // Throws ModelError if the file is missing or not a loadable ONNX model.
  explicit Model(const std::string& path);
  Model(const std::string& path, Options options);

  const std::vector<TensorSpec>& input_specs() const;
  const std::vector<TensorSpec>& output_specs() const;
  const Options& options() const;
  const std::string& path() const;

  // Runs one sample on the calling thread and returns the named outputs. Safe to call from many
  // threads at once. A non-negative `timeout_ms` aborts the inference with TimeoutError.
  Sample run(const std::vector<Tensor>& inputs, int timeout_ms = -1) const;
  // As above, with the sample's tensors matched to the model's inputs by name if it names them.
  Sample run(const Sample& inputs, int timeout_ms = -1) const;
  // Throws exactly what run() would throw for these inputs' shapes and dtypes, without running.
  void check(const Sample& inputs) const;

  // Measures latency and throughput with `samples` synthetic inputs per measurement: a warmed
  // single-flight loop for latency, then asynchronous Runs at 1..cores workers for throughput.
  BenchmarkReport benchmark(int samples = 64) const;
  // One deterministic input sample matching input_specs() (a frame when preprocessing); dynamic
  // dimensions become 1.
  std::vector<Tensor> synthetic_inputs(std::uint32_t seed = 0) const;

  Fragment graph() const;
  Fragment graph(RouteOptions route) const;

 private:
  friend class Graph;
  explicit Model(std::shared_ptr<const ModelImpl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const ModelImpl> impl_;
};

// Points ringflow at a specific libonnxruntime shared library. Call before loading any Model; the
// Python package does this for you with the library inside the installed `onnxruntime` wheel.
// Without it, ringflow tries $RINGFLOW_ONNXRUNTIME_LIB, then the library found at build time, then
// the system's libonnxruntime.so.1.
void set_onnxruntime_library(const std::string& path);
// The version string of the loaded ONNX Runtime (loads it if needed).
std::string onnxruntime_version();

}  // namespace ringflow

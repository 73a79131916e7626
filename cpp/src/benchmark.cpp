// Model::benchmark() and the synthetic inputs it runs on.
#include <algorithm>
#include <cstdio>
#include <sstream>
#include <thread>

#include "ringflow/errors.hpp"
#include "event_count.hpp"
#include "ringflow/graph.hpp"

namespace ringflow {
namespace {

// A small deterministic generator, so C++ and every run see the same inputs.
class Lcg {
 public:
  explicit Lcg(std::uint32_t seed) : state_(seed * 2654435761u + 1) {}
  std::uint32_t next() { return state_ = state_ * 1664525u + 1013904223u; }
  float unit() { return static_cast<float>(next() >> 8) / 16777216.0f; }

 private:
  std::uint32_t state_;
};

void fill(Tensor& t, Lcg& rng) {
  MutableMapping m = t.map_write();
  const std::size_t n = element_count(t.shape());
  switch (t.dtype()) {
    case DType::Float32: {
      auto* p = static_cast<float*>(m.data);
      for (std::size_t i = 0; i < n; ++i) p[i] = rng.unit() * 2 - 1;
      break;
    }
    case DType::Float64: {
      auto* p = static_cast<double*>(m.data);
      for (std::size_t i = 0; i < n; ++i) p[i] = rng.unit() * 2 - 1;
      break;
    }
    case DType::Int64: {
      auto* p = static_cast<std::int64_t*>(m.data);
      for (std::size_t i = 0; i < n; ++i) p[i] = rng.next() % 2;  // valid as ids, masks and indices
      break;
    }
    case DType::Int32: {
      auto* p = static_cast<std::int32_t*>(m.data);
      for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<std::int32_t>(rng.next() % 2);
      break;
    }
    default: {
      // Bytes suit uint8 frames; other small types get small values that are valid in any of them.
      auto* p = static_cast<std::uint8_t*>(m.data);
      const bool bytes = t.dtype() == DType::UInt8;
      for (std::size_t i = 0; i < m.size_bytes; ++i) p[i] = bytes ? rng.next() >> 24 : 0;
      break;
    }
  }
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

double throughput(const Model& model, const std::vector<Tensor>& inputs, int workers, int samples) {
  Graph graph;
  graph.add(model.graph());
  RunOptions options;
  options.workers = workers;
  options.queue_depth = static_cast<std::size_t>(2 * workers + 2);
  options.enable_metrics = false;
  Run run = graph.build(inputs, options);
  for (int i = 0; i < workers; ++i) run.run(inputs);  // warm every request path once
  const auto start = Clock::now();
  std::thread producer([&] {
    for (int i = 0; i < samples; ++i) run.push(inputs);
    run.close_input();
  });
  int pulled = 0;
  while (run.pull()) ++pulled;
  producer.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return pulled / seconds;
}

}  // namespace

std::vector<Tensor> Model::synthetic_inputs(std::uint32_t seed) const {
  Lcg rng(seed);
  std::vector<Tensor> inputs;
  const PreprocessOptions& pre = options().preprocess;
  if (pre.enabled()) {
    Tensor frame = Tensor::allocate(DType::UInt8, {pre.input_max_height, pre.input_max_width, pre.input_max_depth});
    fill(frame, rng);
    inputs.push_back(std::move(frame));
    return inputs;
  }
  for (const TensorSpec& spec : input_specs()) {
    Shape shape = spec.shape;
    for (std::int64_t& d : shape) d = d < 0 ? 1 : d;
    Tensor t = Tensor::allocate(spec.dtype, shape);
    fill(t, rng);
    inputs.push_back(std::move(t));
  }
  return inputs;
}

BenchmarkReport Model::benchmark(int samples) const {
  if (samples < 1) throw Error("Model::benchmark needs at least 1 sample");
  const std::vector<Tensor> inputs = synthetic_inputs();
  BenchmarkReport report;
  report.samples = samples;

  for (int i = 0; i < 3; ++i) run(inputs);  // warm-up: allocations, prepacking, caches
  std::vector<double> latencies;
  for (int i = 0; i < samples; ++i) {
    const auto start = Clock::now();
    run(inputs);
    latencies.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  }
  report.latency_ms = median(latencies);
  std::sort(latencies.begin(), latencies.end());
  report.latency_p90_ms = latencies[std::min(latencies.size() - 1, latencies.size() * 9 / 10)];

  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int workers = 1; workers <= cores; ++workers) {
    const double fps = throughput(*this, inputs, workers, samples);
    report.fps_by_workers.emplace_back(workers, fps);
    if (fps > report.fps) {
      report.fps = fps;
      report.best_workers = workers;
    }
  }
  return report;
}

std::string BenchmarkReport::to_text() const {
  char line[128];
  std::ostringstream out;
  std::snprintf(line, sizeof line, "samples:      %d\n", samples);
  out << line;
  std::snprintf(line, sizeof line, "latency:      median %.3f ms, p90 %.3f ms (single flight)\n", latency_ms,
                latency_p90_ms);
  out << line;
  for (const auto& [workers, fps_at] : fps_by_workers) {
    std::snprintf(line, sizeof line, "throughput:   %.1f fps with %d worker%s\n", fps_at, workers,
                  workers == 1 ? "" : "s");
    out << line;
  }
  std::snprintf(line, sizeof line, "best:         %.1f fps with %d worker%s\n", fps, best_workers,
                best_workers == 1 ? "" : "s");
  out << line;
  return out.str();
}

std::string BenchmarkReport::to_json() const {
  std::ostringstream out;
  out << "{\"samples\":" << samples << ",\"latency_ms\":" << latency_ms << ",\"latency_p90_ms\":" << latency_p90_ms
      << ",\"fps\":" << fps << ",\"best_workers\":" << best_workers << ",\"fps_by_workers\":{";
  for (std::size_t i = 0; i < fps_by_workers.size(); ++i) {
    out << (i ? "," : "") << "\"" << fps_by_workers[i].first << "\":" << fps_by_workers[i].second;
  }
  out << "}}";
  return out.str();
}

}  // namespace ringflow

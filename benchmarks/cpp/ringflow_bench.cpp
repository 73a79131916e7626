// ringflow_bench: ringflow's C++ contender for side-by-side runtime benchmarks.
//
// A harness runs it as a subprocess and reads one JSON line from stdout. Inputs are the model's
// deterministic synthetic inputs (Model::synthetic_inputs), so every contender sees the same data.
//
//   async  One producer thread pushes as fast as push() allows, the main thread pulls until Closed.
//          A warm-up phase runs first on the same Run, untimed, so the measured phase starts with
//          the pipeline's threads, ONNX Runtime's arenas and the output buffers already warm.
//   sync   Model::run in a loop, one request in flight.
//
// RunStats are cumulative over a Run's life and cannot be reset. Counts, averages and per-stage
// times are sums divided by counts, so the measured phase's values are exact differences of two
// snapshots. The percentiles come from a histogram that also holds the warm-up samples; the JSON's
// "warmup" field says how many.
#include <fstream>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"
#include "builtin_models.hpp"
#include "ringflow/ringflow.hpp"

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kUsage = R"(usage: ringflow_bench --model PATH|resnet50|tiny-mlp [options]

  --samples N       measured samples (default 2000)
  --seconds S       measure for S seconds instead of a fixed number of samples
  --warmup K        untimed samples before measuring (default 50)
  --mode M          async (push/pull through a Run, default) or sync (Model::run in a loop)
  --workers W       async: concurrent inference requests (default 1)
  --queue Q         async: input queue depth (default 64)
  --max-batch B     async: dynamic batching, up to B samples per inference (default 1)
  --max-delay-us D  async: wait up to D us for a batch to fill (default 0)
  --pooled          async: results borrow pooled output buffers instead of owning new ones

Prints one JSON line on stdout; errors go to stderr with exit status 1.
)";

// A pull that delivers nothing for this long means the pipeline is stuck; fail instead of hanging
// the harness. One sample of the slowest built-in model takes well under a second.
constexpr int kPullTimeoutMs = 60'000;

struct Config {
  std::string model;
  bool async = true;
  long long samples = 2000;
  std::optional<double> seconds;
  long long warmup = 50;
  ringflow::RunOptions run;
};

struct Latency {
  double avg = 0, p50 = 0, p90 = 0, p99 = 0;
};

struct Result {
  std::uint64_t samples = 0;
  double seconds = 0;
  Latency latency_ms;
  std::vector<ringflow::StageStats> stages;
};

Config parse(int argc, char** argv) {
  const bench::Flags flags(argc, argv,
                           {"--model", "--samples", "--seconds", "--warmup", "--mode", "--workers", "--queue",
                            "--max-batch", "--max-delay-us"},
                           {"--pooled"});
  Config c;
  c.model = flags.text("--model", "");
  if (c.model.empty()) throw std::invalid_argument("--model is required (a path, resnet50 or tiny-mlp)");
  const std::string mode = flags.text("--mode", "async");
  if (mode != "async" && mode != "sync") throw std::invalid_argument("--mode must be async or sync, got '" + mode + "'");
  c.async = mode == "async";
  c.samples = flags.integer("--samples", c.samples, 1);
  if (flags.has("--seconds")) c.seconds = flags.positive("--seconds", 0);
  c.warmup = flags.integer("--warmup", c.warmup, 0);
  c.run.workers = static_cast<int>(flags.integer("--workers", 1, 1));
  c.run.queue_depth = static_cast<std::size_t>(flags.integer("--queue", 64, 1));
  c.run.max_batch = static_cast<int>(flags.integer("--max-batch", 1, 1));
  c.run.max_delay_us = static_cast<int>(flags.integer("--max-delay-us", 0, 0));
  c.run.output_memory = flags.has("--pooled") ? ringflow::OutputMemory::Pooled : ringflow::OutputMemory::Owned;
  return c;
}

// A built-in model's name (its generator, ringflow.models, prints the cached path), or a path.
std::string resolve_model(const std::string& name) {
  return name == "resnet50" || name == "tiny-mlp" ? ringflow::support::builtin_model_path(name) : name;
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Whether the measured phase may start another sample: `done` samples so far, against either the
// sample count or the deadline.
class Budget {
 public:
  Budget(const Config& c, Clock::time_point start)
      : samples_(static_cast<std::uint64_t>(c.samples)),
        deadline_(c.seconds ? start + std::chrono::duration_cast<Clock::duration>(
                                          std::chrono::duration<double>(*c.seconds))
                            : Clock::time_point::max()) {}
  bool allows(std::uint64_t done) const {
    return deadline_ == Clock::time_point::max() ? done < samples_ : Clock::now() < deadline_;
  }

 private:
  std::uint64_t samples_;
  Clock::time_point deadline_;
};

// Runs `produce` on a thread of its own while `consume` runs on this one. The first failure, on
// either side, closes the Run's input so the other side cannot wait forever (a blocked push throws
// ClosedError, a pull sees Closed), and is the one rethrown: what follows it is only a consequence.
template <typename Produce, typename Consume>
void produce_and_consume(ringflow::Run& run, Produce produce, Consume consume) {
  std::mutex mutex;
  std::exception_ptr first_error;
  const auto fail = [&](std::exception_ptr error) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (!first_error) first_error = error;
    }
    run.close_input();
  };
  std::thread producer([&] {
    try {
      produce();
    } catch (...) {
      fail(std::current_exception());
    }
  });
  try {
    consume();
  } catch (...) {
    fail(std::current_exception());
  }
  producer.join();
  if (first_error) std::rethrow_exception(first_error);
}

// The next result: true when one arrived, false at the end of the stream. Throws for a failed
// sample and for a pipeline that has stopped delivering.
bool pull_one(ringflow::Run& run) {
  const ringflow::PullResult r = run.pull_with_status(kPullTimeoutMs);
  switch (r.status) {
    case ringflow::PullStatus::Ok: return true;
    case ringflow::PullStatus::Closed: return false;
    case ringflow::PullStatus::Error: throw ringflow::InferenceError("a sample failed: " + r.error);
    case ringflow::PullStatus::Timeout: break;
  }
  throw ringflow::TimeoutError("no result within " + std::to_string(kPullTimeoutMs / 1000) +
                               " s; the pipeline looks stuck");
}

// The Run's statistics once every pulled sample is in every stage's figures. Workers record a
// batch's inference and postprocess times just after delivering its results, so a snapshot taken
// as soon as the last result is pulled can miss the last batch. Waiting is bounded: a stage that
// lags longer than that is reported as it stands.
ringflow::RunStats settled_stats(const ringflow::Run& run) {
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(1);
  for (;;) {
    ringflow::RunStats s = run.stats();
    const bool settled = std::all_of(s.stages.begin(), s.stages.end(), [&](const ringflow::StageStats& stage) {
      return stage.samples == s.outputs_pulled;
    });
    if (settled || Clock::now() >= deadline) return s;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

// A stage's figures over the samples it handled between two snapshots of the same Run.
ringflow::StageStats stage_between(const ringflow::StageStats& before, const ringflow::StageStats& after) {
  ringflow::StageStats s;
  s.name = after.name;
  s.samples = after.samples - before.samples;
  if (s.samples) {
    const auto n = static_cast<double>(s.samples);
    s.avg_wait_ms = (after.avg_wait_ms * after.samples - before.avg_wait_ms * before.samples) / n;
    s.avg_compute_ms = (after.avg_compute_ms * after.samples - before.avg_compute_ms * before.samples) / n;
  }
  return s;
}

Result bench_async(const ringflow::Model& model, const std::vector<ringflow::Tensor>& inputs, const Config& c) {
  ringflow::Graph graph;
  graph.add(model.graph());
  ringflow::Run run = graph.build(inputs, c.run);

  // Warm-up: exactly `warmup` samples in and out, leaving the Run open and empty.
  produce_and_consume(
      run, [&] { for (long long i = 0; i < c.warmup; ++i) run.push(inputs); },
      [&] {
        for (long long i = 0; i < c.warmup; ++i) {
          if (!pull_one(run)) throw ringflow::Error("the Run closed during the warm-up");
        }
      });
  const ringflow::RunStats before = settled_stats(run);

  Result result;
  std::uint64_t pushed = 0;
  const Clock::time_point start = Clock::now();
  const Budget budget(c, start);
  produce_and_consume(
      run,
      [&] {
        for (; budget.allows(pushed); ++pushed) run.push(inputs);
        run.close_input();
      },
      [&] {
        while (pull_one(run)) ++result.samples;
      });
  result.seconds = seconds_since(start);
  // Block never drops, so anything but one result per push is a bug worth failing loudly for.
  if (result.samples != pushed) {
    throw ringflow::Error("pushed " + std::to_string(pushed) + " samples but pulled " +
                          std::to_string(result.samples));
  }

  const ringflow::RunStats after = settled_stats(run);
  const ringflow::LatencySummary& lb = before.latency;
  const ringflow::LatencySummary& la = after.latency;
  if (la.count > lb.count) {
    result.latency_ms.avg = (la.avg_ms * la.count - lb.avg_ms * lb.count) / static_cast<double>(la.count - lb.count);
  }
  result.latency_ms.p50 = la.p50_ms;
  result.latency_ms.p90 = la.p90_ms;
  result.latency_ms.p99 = la.p99_ms;
  for (std::size_t i = 0; i < after.stages.size(); ++i) {
    result.stages.push_back(stage_between(before.stages.at(i), after.stages[i]));
  }
  return result;
}

Result bench_sync(const ringflow::Model& model, const std::vector<ringflow::Tensor>& inputs, const Config& c) {
  for (long long i = 0; i < c.warmup; ++i) model.run(inputs);

  std::vector<double> latencies_ms;
  const Clock::time_point start = Clock::now();
  const Budget budget(c, start);
  for (std::uint64_t done = 0; budget.allows(done); ++done) {
    const Clock::time_point called = Clock::now();
    model.run(inputs);
    latencies_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - called).count());
  }
  Result result;
  result.seconds = seconds_since(start);
  result.samples = latencies_ms.size();
  if (latencies_ms.empty()) return result;

  double total_ms = 0;
  for (double ms : latencies_ms) total_ms += ms;
  std::sort(latencies_ms.begin(), latencies_ms.end());
  result.latency_ms = {total_ms / latencies_ms.size(), bench::quantile(latencies_ms, 0.50),
                       bench::quantile(latencies_ms, 0.90), bench::quantile(latencies_ms, 0.99)};
  // One request at a time never queues: every call is pure inference from the caller's view.
  ringflow::StageStats inference;
  inference.name = "inference";
  inference.samples = result.samples;
  inference.avg_compute_ms = result.latency_ms.avg;
  result.stages.push_back(inference);
  return result;
}

// VmHWM, this process's own peak. getrusage's ru_maxrss would also carry the launching process's
// peak across exec, so a harness holding 400 MB would make us look 400 MB heavier.
long peak_rss_kb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

std::string to_json(const Config& c, const Result& r) {
  using bench::json_number;
  std::ostringstream out;
  out << "{\"contender\":\"ringflow-cpp\",\"mode\":\"" << (c.async ? "async" : "sync") << "\""
      << ",\"samples\":" << r.samples << ",\"warmup\":" << c.warmup << ",\"seconds\":" << json_number(r.seconds)
      << ",\"fps\":" << json_number(r.seconds > 0 ? r.samples / r.seconds : 0)
      << ",\"latency_ms\":{\"avg\":" << json_number(r.latency_ms.avg) << ",\"p50\":" << json_number(r.latency_ms.p50)
      << ",\"p90\":" << json_number(r.latency_ms.p90) << ",\"p99\":" << json_number(r.latency_ms.p99) << "}"
      << ",\"stages\":[";
  for (std::size_t i = 0; i < r.stages.size(); ++i) {
    const ringflow::StageStats& s = r.stages[i];
    out << (i ? "," : "") << "{\"name\":\"" << s.name << "\",\"samples\":" << s.samples
        << ",\"avg_wait_ms\":" << json_number(s.avg_wait_ms) << ",\"avg_compute_ms\":" << json_number(s.avg_compute_ms)
        << "}";
  }
  out << "],\"peak_rss_kb\":" << peak_rss_kb() << "}";
  return out.str();
}

}  // namespace

int main(int argc, char** argv) {
  if (bench::asks_for_help(argc, argv)) {
    std::cout << kUsage;
    return 0;
  }
  try {
    const Config config = parse(argc, argv);
    const ringflow::Model model(resolve_model(config.model));
    const std::vector<ringflow::Tensor> inputs = model.synthetic_inputs();
    const Result result = config.async ? bench_async(model, inputs, config) : bench_sync(model, inputs, config);
    std::cout << to_json(config, result) << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "ringflow_bench: " << e.what() << "\n";
    return 1;
  }
}

// The inference core of tutorial 022's asyncio server, in C++: `concurrency` request handlers each
// submit one sample to a shared Run and wait for its completion, as the handlers of any C++ HTTP
// framework would; ringflow batches the concurrent requests. The same requests then go to the
// usual alternative: a pool of threads each calling the model synchronously (what
// loop.run_in_executor(None, session.run, ...) is in Python). Every answer is checked against a
// synchronous run of the model, and the lines printed are those of the Python version.
//
// Usage: tutorial_022_asyncio_server [--model <path.onnx>] [--requests <n>] [--concurrency <n>]
//                                    [--max-batch <n>] [--max-delay-us <us>]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <future>
#include <iostream>
#include <mutex>
#include <numeric>
#include <queue>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "ringflow/ringflow.hpp"
#include "tutorial.hpp"

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kTopK = 5;

struct Answer {
  int status = 0;
  std::vector<std::pair<std::int64_t, float>> top5;  // [class, score], best first
};

// Best first, ties to the lower class: what ringflow::TopK computes.
std::vector<std::pair<std::int64_t, float>> top5_of(const ringflow::Tensor& logits) {
  const ringflow::Mapping m = logits.map_read();
  const auto* p = static_cast<const float*>(m.data);
  std::vector<std::int64_t> order(m.size_bytes / sizeof(float));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) { return p[a] > p[b]; });
  std::vector<std::pair<std::int64_t, float>> best;
  for (std::size_t k = 0; k < order.size() && k < kTopK; ++k) best.emplace_back(order[k], p[order[k]]);
  return best;
}

bool same_answer(const Answer& got, const std::vector<std::pair<std::int64_t, float>>& expected) {
  if (got.status != 200 || got.top5.size() != expected.size()) return false;
  for (std::size_t k = 0; k < expected.size(); ++k) {
    if (got.top5[k].first != expected[k].first) return false;
    if (std::abs(got.top5[k].second - expected[k].second) > 1e-5f + 1e-4f * std::abs(expected[k].second)) return false;
  }
  return true;
}

// A fixed pool of threads running submitted jobs in order: asyncio's default executor.
class ThreadPool {
 public:
  explicit ThreadPool(unsigned threads) {
    for (unsigned i = 0; i < threads; ++i) {
      workers_.emplace_back([this] {
        for (;;) {
          std::function<void()> job;
          {
            std::unique_lock<std::mutex> lock(mutex_);
            ready_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
            if (jobs_.empty()) return;
            job = std::move(jobs_.front());
            jobs_.pop();
          }
          job();
        }
      });
    }
  }
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    ready_.notify_all();
    for (std::thread& t : workers_) t.join();
  }
  void post(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      jobs_.push(std::move(job));
    }
    ready_.notify_one();
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::queue<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

struct Load {
  std::vector<Answer> answers;
  std::vector<double> latencies_ms;
  double elapsed_s = 0;
};

// `concurrency` handlers serve the requests in turn; `handle` answers one.
Load serve(std::size_t requests, int concurrency, const std::function<Answer(std::size_t)>& handle) {
  Load load;
  load.answers.resize(requests);
  load.latencies_ms.resize(requests);
  std::atomic<std::size_t> next{0};
  const Clock::time_point start = Clock::now();
  std::vector<std::thread> handlers;
  for (int c = 0; c < concurrency; ++c) {
    handlers.emplace_back([&] {
      for (std::size_t i; (i = next.fetch_add(1)) < requests;) {
        const Clock::time_point begin = Clock::now();
        load.answers[i] = handle(i);
        load.latencies_ms[i] = std::chrono::duration<double, std::milli>(Clock::now() - begin).count();
      }
    });
  }
  for (std::thread& t : handlers) t.join();
  load.elapsed_s = std::chrono::duration<double>(Clock::now() - start).count();
  return load;
}

double percentile(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  const double rank = q / 100 * static_cast<double>(values.size() - 1);  // numpy's linear rule
  const auto lower = static_cast<std::size_t>(rank);
  const std::size_t upper = std::min(lower + 1, values.size() - 1);
  return values[lower] + (values[upper] - values[lower]) * (rank - static_cast<double>(lower));
}

}  // namespace

int main(int argc, char** argv) {
  return tutorial::run("022_asyncio_server", [&] {
    std::string model_path;
    if (!tutorial::get_arg(argc, argv, "--model", model_path)) model_path = tutorial::builtin_model("tiny-mlp");
    const int requests = tutorial::int_arg(argc, argv, "--requests", 500);
    const int concurrency = tutorial::int_arg(argc, argv, "--concurrency", 32);
    const int max_batch = tutorial::int_arg(argc, argv, "--max-batch", 8);
    const int max_delay_us = tutorial::int_arg(argc, argv, "--max-delay-us", 500);
    if (requests < 1) throw std::runtime_error("--requests must be at least 1, got " + std::to_string(requests));
    if (concurrency < 1) throw std::runtime_error("--concurrency must be at least 1, got " + std::to_string(concurrency));
    if (max_batch < 1) throw std::runtime_error("--max-batch must be at least 1, got " + std::to_string(max_batch));

    const ringflow::Model model(model_path);
    ringflow::TensorSpec spec = model.input_specs().at(0);
    for (std::int64_t& d : spec.shape) d = d < 0 ? 1 : d;
    if (spec.dtype != ringflow::DType::Float32) throw std::runtime_error("this tutorial needs a float32 input");

    // The requests, and the oracle's answer to each: the model run synchronously, top-5 taken as
    // TopK takes it.
    std::mt19937 rng(22);
    std::normal_distribution<float> normal;
    std::vector<ringflow::Tensor> inputs;
    std::vector<std::vector<std::pair<std::int64_t, float>>> expected;
    for (int i = 0; i < requests; ++i) {
      ringflow::Tensor x = ringflow::Tensor::empty(spec.dtype, spec.shape);
      float* p = x.mutable_data<float>();
      for (std::size_t k = 0; k < ringflow::element_count(spec.shape); ++k) p[k] = normal(rng);
      expected.push_back(top5_of(model.run({x}).tensors.at(0)));
      inputs.push_back(std::move(x));
    }
    const ringflow::Tensor bad = ringflow::Tensor::allocate(ringflow::DType::Float32, {1, 3});

    std::cout << "model=" << std::filesystem::path(model_path).stem().string() << " requests=" << requests
              << " concurrency=" << concurrency << "\n";
    double rps[2] = {0, 0};
    for (const std::string backend : {"ringflow", "executor"}) {
      Load load;
      std::uint64_t outputs_pulled = 0;
      int bad_status = 0;
      double avg_batch = 0;
      if (backend == "ringflow") {
        // One Run for every request: the model, then TopK on the engine's threads. Concurrent
        // requests are stacked into batches of up to max_batch.
        ringflow::RunOptions options;
        options.queue_depth = 256;
        options.max_batch = max_batch;
        options.max_delay_us = max_delay_us;
        ringflow::Run run = ringflow::Graph().add(model.graph()).add(ringflow::TopK(kTopK)).build(
            model.synthetic_inputs(0), options);
        load = serve(inputs.size(), concurrency, [&](std::size_t i) {
          std::promise<Answer> answered;
          run.submit(ringflow::make_sample({inputs[i]}), [&](ringflow::PullResult& result) {
            Answer answer{result.status == ringflow::PullStatus::Ok ? 200 : 500, {}};
            if (answer.status == 200) {
              const ringflow::Sample& s = *result.sample;
              const ringflow::Tensor& indices = s.tensors.at(0);
              const ringflow::Tensor& scores = s.tensors.at(1);
              for (int k = 0; k < kTopK; ++k) {
                answer.top5.emplace_back(indices.data<std::int64_t>()[k], scores.data<float>()[k]);
              }
            }
            answered.set_value(std::move(answer));  // on the Run's report thread
          });
          return answered.get_future().get();
        });
        const ringflow::RunStats stats = run.stats();
        outputs_pulled = stats.outputs_pulled;
        avg_batch = stats.avg_batch_size;
        try {  // the wrong shape: refused at once, nothing else lost
          run.submit(ringflow::make_sample({bad}), [](ringflow::PullResult&) {});
          bad_status = 200;
        } catch (const ringflow::ShapeError&) {
          bad_status = 400;
        }
      } else {
        ThreadPool pool(std::min(32u, std::max(1u, std::thread::hardware_concurrency()) + 4));
        std::atomic<std::uint64_t> served{0};
        load = serve(inputs.size(), concurrency, [&](std::size_t i) {
          std::promise<Answer> answered;
          pool.post([&] {
            Answer answer{200, top5_of(model.run({inputs[i]}).tensors.at(0))};
            served.fetch_add(1);  // counted before it is answered, as /stats would count it
            answered.set_value(std::move(answer));
          });
          return answered.get_future().get();
        });
        outputs_pulled = served.load();
        try {
          model.run({bad});
          bad_status = 200;
        } catch (const ringflow::ShapeError&) {
          bad_status = 400;
        }
      }
      int errors = 0;
      bool equal = true;
      for (std::size_t i = 0; i < inputs.size(); ++i) {
        errors += load.answers[i].status != 200;
        equal = equal && same_answer(load.answers[i], expected[i]);
      }
      rps[backend == "executor"] = static_cast<double>(inputs.size()) / load.elapsed_s;
      std::printf("%s answered=%zu equal_oracle=%s errors=%d\n", backend.c_str(), load.answers.size(),
                  equal ? "true" : "false", errors);
      std::printf("%s_rps=%.1f\n", backend.c_str(), rps[backend == "executor"]);
      std::printf("%s_p50_ms=%.2f\n", backend.c_str(), percentile(load.latencies_ms, 50));
      std::printf("%s_p99_ms=%.2f\n", backend.c_str(), percentile(load.latencies_ms, 99));
      if (backend == "ringflow") std::printf("ringflow_avg_batch=%.1f\n", avg_batch);
      std::printf("%s stats outputs_pulled=%llu\n", backend.c_str(), static_cast<unsigned long long>(outputs_pulled));
      std::printf("%s bad_request status=%d\n", backend.c_str(), bad_status);
      std::fflush(stdout);
      if (!equal || errors) throw std::runtime_error("the " + backend + " server's answers differ from the model's");
    }
    std::printf("speedup=%.2f\n", rps[0] / rps[1]);
    std::fflush(stdout);
  });
}

// Run::submit() on tiny-mlp: each sample's result reaches its own completion exactly once, from
// many submitting threads, batched; a cancel flag drops a sample; stop() completes what it
// discards; a Run serves either push()/pull() or submit(). Completions record what they see; the
// test CHECKs after the Run has delivered everything.
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "check.hpp"
#include "engine_models.hpp"
#include "hang_guard.hpp"
#include "ringflow/ringflow.hpp"
#include "tensors.hpp"

using namespace ringflow;

namespace {

// What the completions saw, by frame id.
struct Outcomes {
  explicit Outcomes(std::size_t n) : results(n), calls(n) {}
  std::mutex mutex;
  std::vector<PullResult> results;
  std::vector<int> calls;
  Completion completion(std::size_t i) {
    return [this, i](PullResult& r) {
      std::lock_guard<std::mutex> lock(mutex);
      results[i] = std::move(r);
      ++calls[i];
    };
  }
};

Sample tagged(int index) {
  Sample s = make_sample({mlp_input(index)});
  s.frame_id = index;
  return s;
}

Run mlp_run(RunOptions options) {
  return Graph().add(tiny_mlp().graph()).build(std::vector<Tensor>{mlp_input(0)}, options);
}

}  // namespace

TEST(submit_from_four_threads_delivers_each_result_to_its_completion_once) {
  constexpr int kSamples = 400;
  RunOptions options = depth_and_workers(16, 2);
  options.max_batch = 8;
  options.max_delay_us = 200;
  Run run = mlp_run(options);
  Outcomes outcomes(kSamples);
  HangGuard guard("submit from four threads", std::chrono::seconds(60));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kSamples; i += 4) run.submit(tagged(i), outcomes.completion(static_cast<std::size_t>(i)));
    });
  }
  for (std::thread& t : threads) t.join();
  CHECK(run.wait_all(30000));
  for (int i = 0; i < kSamples; ++i) {
    CHECK_EQ(outcomes.calls[i], 1);
    CHECK_EQ(outcomes.results[i].status, PullStatus::Ok);
    CHECK_EQ(outcomes.results[i].sample->frame_id, i);
    CHECK(same_outputs(*outcomes.results[i].sample, tiny_mlp().run({mlp_input(i)})));
  }
  CHECK(run.stats().avg_batch_size > 1.0);
}

// A stage before the model that holds every sample until released: what is behind it is queued.
struct Gate {
  std::atomic<bool> open{false};
  Stage stage() {
    return Stage("gate", [this](Sample&) {
      while (!open.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    });
  }
  // A tiny-mlp Run, 16 deep, behind this gate.
  Run run() {
    Graph graph;
    graph.add(stage()).add(tiny_mlp().graph());
    return graph.build(Sample(), depth_and_workers(16, 1));
  }
};

TEST(a_cancel_flag_drops_a_queued_sample_and_leaves_the_others) {
  Gate gate;
  Run run = gate.run();
  HangGuard guard("cancel flag", std::chrono::seconds(60));
  Outcomes outcomes(8);
  std::vector<std::shared_ptr<std::atomic<bool>>> flags;
  for (int i = 0; i < 8; ++i) {
    flags.push_back(std::make_shared<std::atomic<bool>>(false));
    run.submit(tagged(i), outcomes.completion(static_cast<std::size_t>(i)), flags.back());
  }
  flags[6]->store(true);  // sample 6 waits behind the gate: it is dropped before inference
  gate.open.store(true);
  CHECK(run.wait_all(30000));
  for (int i = 0; i < 8; ++i) {
    CHECK_EQ(outcomes.calls[i], 1);
    CHECK_EQ(outcomes.results[i].status, i == 6 ? PullStatus::Cancelled : PullStatus::Ok);
  }
  CHECK_EQ(run.stats().cancelled, 1u);
  CHECK_EQ(run.stats().batches, 7u);
}

TEST(stop_completes_every_submitted_sample_it_discards) {
  Gate gate;
  Run run = gate.run();
  HangGuard guard("stop with submitted samples", std::chrono::seconds(60));
  Outcomes outcomes(10);
  for (int i = 0; i < 10; ++i) run.submit(tagged(i), outcomes.completion(static_cast<std::size_t>(i)));
  std::thread opener([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    gate.open.store(true);  // lets the gate's thread see stop() and leave
  });
  run.stop();  // every sample is still queued or held at the gate
  opener.join();
  int cancelled = 0;
  for (int i = 0; i < 10; ++i) {
    CHECK_EQ(outcomes.calls[i], 1);
    cancelled += outcomes.results[i].status == PullStatus::Cancelled;
  }
  CHECK_EQ(cancelled, 10);
  CHECK_THROWS(run.submit(tagged(0), [](PullResult&) {}), ClosedError);
}

TEST(a_run_serves_either_pull_or_submit) {
  Run pulled = mlp_run(depth_and_workers(4, 1));
  pulled.push(tagged(0));
  CHECK_THROWS(pulled.submit(tagged(1), [](PullResult&) {}), Error);

  Run submitted = mlp_run(depth_and_workers(4, 1));
  submitted.submit(tagged(0), [](PullResult&) {});
  CHECK_THROWS(submitted.push(tagged(1)), Error);
  CHECK_THROWS(submitted.pull(0), Error);
  CHECK_THROWS(submitted.set_callback([](std::vector<PullResult>&) {}), Error);
  CHECK(submitted.wait_all(30000));
}

TEST(a_throwing_completion_is_raised_by_the_next_submit_and_loses_nothing) {
  Run run = mlp_run(depth_and_workers(4, 1));
  std::atomic<int> calls{0};
  run.submit(tagged(0), [&](PullResult&) {
    ++calls;
    throw std::runtime_error("completion failed");
  });
  CHECK_THROWS(run.wait_all(30000), CallbackError);
  run.submit(tagged(1), [&](PullResult&) { ++calls; });
  CHECK(run.wait_all(30000));
  CHECK_EQ(calls.load(), 2);
}

int main(int argc, char** argv) { return check::run_all(argc, argv); }

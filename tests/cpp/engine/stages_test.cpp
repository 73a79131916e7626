// Staged Runs (issue 9) on tiny-mlp: user stages before and after the model, their threads and
// order, a stage failing one sample, cancel(), stop_and_wait(), per-stage stats and the trace.
//
// The oracle is Model::run on the calling thread with the same stage functions applied by hand.
// Threads other than the test's own record what they observe; the test CHECKs after join().
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "check.hpp"
#include "engine_models.hpp"
#include "tensors.hpp"
#include "hang_guard.hpp"
#include "ringflow/ringflow.hpp"

using namespace ringflow;

namespace {

// x -> 0.5 * x + index / 64: what the pre stage does to a tiny-mlp input row.
void shift_input(Sample& s) {
  Tensor out = s.tensors.at(0).clone();
  float* v = out.mutable_data<float>();
  for (int k = 0; k < 64; ++k) v[k] = 0.5f * v[k] + static_cast<float>(k) / 64.0f;
  s.tensors[0] = std::move(out);
}

// Adds a "sum" tensor with the sum of the logits: what the post stage does.
void add_sum(Sample& s) {
  const Tensor& logits = s.at("logits");
  Tensor sum = Tensor::allocate(DType::Float32, {1});
  float total = 0;
  for (int k = 0; k < 10; ++k) total += logits.data<float>()[k];
  sum.mutable_data<float>()[0] = total;
  s.names.push_back("sum");
  s.tensors.push_back(std::move(sum));
}

// Sleeps a pseudo-random 0-300 us, different per sample, so threads of one stage finish out of order.
void jitter(const Sample& s) {
  std::this_thread::sleep_for(std::chrono::microseconds((s.frame_id * 7919) % 300));
}

Sample expected_for(int index) {
  Sample in = make_sample({mlp_input(index)});
  shift_input(in);
  Sample out = tiny_mlp().run(in);
  add_sum(out);
  return out;
}

// Records the frame ids a stage sees, in the order it sees them.
struct Seen {
  std::mutex mutex;
  std::vector<std::int64_t> frames;
  Stage stage(const std::string& name) {
    return Stage(name, [this](Sample& s) {
      std::lock_guard<std::mutex> lock(mutex);
      frames.push_back(s.frame_id);
    });
  }
};

Sample tagged(int index) {
  Sample s = make_sample({mlp_input(index)});
  s.frame_id = index;
  return s;
}

void staged_run_equals_the_oracle(int threads, int workers) {
  constexpr int kSamples = 200;
  Seen after_post;
  Graph graph;
  graph.add(Stage("shift", [](Sample& s) { jitter(s); shift_input(s); }, threads))
      .add(tiny_mlp().graph())
      .add(Stage("sum", [](Sample& s) { jitter(s); add_sum(s); }, threads))
      .add(after_post.stage("observe"));
  Run run = graph.build(std::vector<Tensor>{mlp_input(0)}, depth_and_workers(8, workers));
  CHECK(run.input_specs().empty());  // the first stage takes anything

  HangGuard guard("staged run", std::chrono::seconds(60));
  std::thread producer([&] {
    for (int i = 0; i < kSamples; ++i) run.push(tagged(i));
    run.close_input();
  });
  std::vector<Sample> pulled;
  while (std::optional<Sample> s = run.pull(30000)) pulled.push_back(std::move(*s));
  producer.join();

  CHECK_EQ(pulled.size(), static_cast<std::size_t>(kSamples));
  for (int i = 0; i < kSamples; ++i) {
    CHECK_EQ(pulled[i].frame_id, i);
    CHECK_EQ(pulled[i].input_seq, static_cast<std::uint64_t>(i));
    CHECK(same_outputs(pulled[i], expected_for(i)));
  }
  // A later stage sees the samples in push order even though the earlier ones ran them out of order.
  std::vector<std::int64_t> in_order(kSamples);
  for (int i = 0; i < kSamples; ++i) in_order[i] = i;
  CHECK_EQ(after_post.frames, in_order);

  const RunStats stats = run.stats();
  std::vector<std::string> names;
  for (const StageStats& s : stats.stages) names.push_back(s.name);
  CHECK_EQ(names, (std::vector<std::string>{"shift", "inference", "postprocess", "sum", "observe", "reorder"}));
  CHECK_EQ(stats.stages[0].samples, static_cast<std::uint64_t>(kSamples));
  CHECK_EQ(stats.stages[0].threads, threads);
  CHECK(stats.stages[0].busy_ms > 0);
  CHECK(stats.stages[0].occupancy > 0 && stats.stages[0].occupancy <= 1);
  CHECK_EQ(stats.stages[3].samples, static_cast<std::uint64_t>(kSamples));
}

}  // namespace

TEST(staged_run_with_one_thread_per_stage_equals_the_oracle_in_order) { staged_run_equals_the_oracle(1, 1); }
TEST(staged_run_with_two_threads_per_stage_equals_the_oracle_in_order) { staged_run_equals_the_oracle(2, 1); }
TEST(staged_run_with_three_threads_and_two_workers_equals_the_oracle_in_order) {
  staged_run_equals_the_oracle(3, 2);
}

TEST(unordered_staged_run_delivers_every_sample_once) {
  constexpr int kSamples = 300;
  RunOptions options = depth_and_workers(4, 2);
  options.ordered = false;
  Graph graph;
  graph.add(Stage("shift", [](Sample& s) { jitter(s); shift_input(s); }, 3)).add(tiny_mlp().graph());
  graph.add(Stage("sum", add_sum, 2));
  Run run = graph.build(std::vector<Tensor>{mlp_input(0)}, options);
  HangGuard guard("unordered staged run", std::chrono::seconds(60));
  std::thread producer([&] {
    for (int i = 0; i < kSamples; ++i) run.push(tagged(i));
    run.close_input();
  });
  std::vector<bool> seen(kSamples, false);
  int count = 0;
  while (std::optional<Sample> s = run.pull(30000)) {
    CHECK(!seen.at(static_cast<std::size_t>(s->frame_id)));
    seen[static_cast<std::size_t>(s->frame_id)] = true;
    CHECK(same_outputs(*s, expected_for(static_cast<int>(s->frame_id))));
    ++count;
  }
  producer.join();
  CHECK_EQ(count, kSamples);
}

TEST(a_stage_that_throws_fails_that_sample_only_and_names_the_stage) {
  Graph graph;
  graph.add(Stage("picky", [](Sample& s) {
         if (s.frame_id % 5 == 3) throw std::runtime_error("frame " + std::to_string(s.frame_id) + " is cursed");
       }, 2))
      .add(tiny_mlp().graph())
      .add(Stage("sum", add_sum));
  Run run = graph.build(std::vector<Tensor>{mlp_input(0)}, depth_and_workers(4, 1));
  HangGuard guard("failing stage", std::chrono::seconds(60));
  std::thread producer([&] {
    for (int i = 0; i < 40; ++i) run.push(tagged(i));
    run.close_input();
  });
  int ok = 0, failed = 0;
  for (int i = 0;; ++i) {
    const PullResult r = run.pull_with_status(30000);
    if (r.status == PullStatus::Closed) break;
    CHECK_EQ(r.sample->frame_id, i);
    if (i % 5 == 3) {
      CHECK_EQ(r.status, PullStatus::Error);
      CHECK_EQ(r.error, "stage 'picky' failed: frame " + std::to_string(i) + " is cursed");
      CHECK(r.sample->tensors.empty());
      ++failed;
    } else {
      CHECK_EQ(r.status, PullStatus::Ok);
      Sample in = make_sample({mlp_input(i)});
      Sample expected = tiny_mlp().run(in);
      add_sum(expected);
      CHECK(same_outputs(*r.sample, expected));
      ++ok;
    }
  }
  producer.join();
  CHECK_EQ(ok, 32);
  CHECK_EQ(failed, 8);
  CHECK_EQ(run.stats().errors, 8u);
}

TEST(a_stage_before_the_model_that_makes_a_wrong_shape_fails_that_sample_with_the_model_error) {
  Graph graph;
  graph.add(Stage("truncate", [](Sample& s) {
         if (s.frame_id == 1) s.tensors[0] = Tensor::allocate(DType::Float32, {1, 63});
       }))
      .add(tiny_mlp().graph());
  Run run = graph.build(std::vector<Tensor>{mlp_input(0)}, depth_and_workers(4, 1));
  for (int i = 0; i < 3; ++i) run.push(tagged(i));
  run.close_input();
  CHECK_EQ(run.pull_with_status(30000).status, PullStatus::Ok);
  const PullResult bad = run.pull_with_status(30000);
  CHECK_EQ(bad.status, PullStatus::Error);
  CHECK(bad.error.find("the model does not take") != std::string::npos);
  CHECK(bad.error.find("[1, 63]") != std::string::npos);
  CHECK_EQ(run.pull_with_status(30000).status, PullStatus::Ok);
  CHECK_EQ(run.pull_with_status(30000).status, PullStatus::Closed);
}

TEST(cancel_reports_every_sample_not_yet_run_as_cancelled) {
  // A slow stage holds samples back; cancel() while most of them are queued.
  constexpr int kSamples = 24;
  std::atomic<int> started{0};
  Graph graph;
  graph.add(Stage("slow", [&](Sample&) {
         started.fetch_add(1);
         std::this_thread::sleep_for(std::chrono::milliseconds(20));
       }))
      .add(tiny_mlp().graph());
  Run run = graph.build(std::vector<Tensor>{mlp_input(0)}, depth_and_workers(kSamples, 1));
  for (int i = 0; i < kSamples; ++i) CHECK(run.push(tagged(i)));
  while (started.load() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  run.cancel();
  CHECK_THROWS(run.push(tagged(99)), ClosedError);

  HangGuard guard("cancel", std::chrono::seconds(60));
  int ok = 0, cancelled = 0;
  std::int64_t expected_frame = 0;
  for (;;) {
    const PullResult r = run.pull_with_status(30000);
    if (r.status == PullStatus::Closed) break;
    CHECK_EQ(r.sample->frame_id, expected_frame++);  // order holds for cancelled samples too
    if (r.status == PullStatus::Ok) {
      CHECK_EQ(cancelled, 0);  // everything after the first cancelled sample is cancelled
      ++ok;
    } else {
      CHECK_EQ(r.status, PullStatus::Cancelled);
      ++cancelled;
    }
  }
  CHECK_EQ(ok + cancelled, kSamples);
  CHECK(cancelled >= kSamples / 2);
  const RunStats stats = run.stats();
  CHECK_EQ(stats.cancelled, static_cast<std::uint64_t>(cancelled));
  CHECK_EQ(stats.input.inputs_enqueued, static_cast<std::uint64_t>(kSamples));
}

TEST(pull_throws_cancelled_error_for_a_cancelled_sample) {
  Graph graph;
  graph.add(Stage("slow", [](Sample&) { std::this_thread::sleep_for(std::chrono::milliseconds(30)); }))
      .add(tiny_mlp().graph());
  Run run = graph.build(std::vector<Tensor>{mlp_input(0)}, depth_and_workers(8, 1));
  for (int i = 0; i < 4; ++i) run.push(tagged(i));
  run.cancel();
  bool threw = false;
  for (int i = 0; i < 4; ++i) {
    try {
      (void)run.pull(30000);
    } catch (const CancelledError& e) {
      threw = true;
      CHECK(std::string(e.what()).find("cancelled") != std::string::npos);
    }
  }
  CHECK(threw);
  CHECK(!run.pull(30000).has_value());
}

TEST(stop_and_wait_returns_once_every_sample_has_passed_every_stage) {
  constexpr int kSamples = 12;  // within capacity: every result can wait to be pulled
  std::atomic<int> post_calls{0};
  Graph graph;
  graph.add(Stage("slow", [](Sample&) { std::this_thread::sleep_for(std::chrono::milliseconds(5)); }, 2))
      .add(tiny_mlp().graph())
      .add(Stage("count", [&](Sample&) { post_calls.fetch_add(1); }));
  Run run = graph.build(std::vector<Tensor>{mlp_input(0)}, depth_and_workers(kSamples, 1));
  CHECK(run.capacity() >= static_cast<std::size_t>(kSamples));
  for (int i = 0; i < kSamples; ++i) CHECK(run.push(tagged(i)));
  CHECK(run.stop_and_wait(30000));
  CHECK_EQ(post_calls.load(), kSamples);
  CHECK_THROWS(run.push(tagged(0)), ClosedError);
  // Everything is there already: no pull has to wait.
  for (int i = 0; i < kSamples; ++i) {
    std::optional<Sample> s = run.pull(0);
    CHECK(s.has_value());
    CHECK_EQ(s->frame_id, i);
  }
  CHECK_EQ(run.pull_with_status(0).status, PullStatus::Closed);
}

TEST(stop_and_wait_with_a_puller_accounts_for_more_samples_than_capacity) {
  constexpr int kSamples = 100;
  Graph graph;
  graph.add(Stage("shift", shift_input, 2)).add(tiny_mlp().graph());
  Run run = graph.build(std::vector<Tensor>{mlp_input(0)}, depth_and_workers(4, 1));
  std::atomic<int> pulled{0};
  std::thread puller([&] {
    while (run.pull(30000)) pulled.fetch_add(1);
  });
  for (int i = 0; i < kSamples; ++i) run.push(tagged(i));
  CHECK(run.stop_and_wait(30000));
  puller.join();
  CHECK_EQ(pulled.load(), kSamples);
}

TEST(stop_and_wait_times_out_while_a_stage_is_busy) {
  std::atomic<bool> release{false};
  Graph graph;
  graph.add(Stage("gate", [&](Sample&) {
         while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
       }))
      .add(tiny_mlp().graph());
  Run run = graph.build(std::vector<Tensor>{mlp_input(0)}, depth_and_workers(4, 1));
  run.push(tagged(0));
  CHECK(!run.stop_and_wait(50));
  release.store(true);
  CHECK(run.stop_and_wait(30000));
  CHECK(run.pull(0).has_value());
}

TEST(trace_writes_chrome_json_with_a_lane_per_stage_thread) {
  Graph graph;
  graph.add(Stage("shift", shift_input, 2)).add(tiny_mlp().graph()).add(Stage("sum", add_sum));
  RunOptions options = depth_and_workers(64, 1);  // room for all 40: pulled only after the last push
  options.trace_samples = 16;
  Run run = graph.build(std::vector<Tensor>{mlp_input(0)}, options);
  for (int i = 0; i < 40; ++i) run.push(tagged(i));
  CHECK_EQ(drain_frames(run, 30000).size(), 40u);
  const std::string path = "/tmp/ringflow_stages_test_trace.json";
  run.trace(path);
  std::ifstream in(path);
  const std::string json((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const char* lane : {"shift #0", "shift #1", "inference #0", "sum #0"}) {
    CHECK(json.find(std::string("\"") + lane + "\"") != std::string::npos);
  }
  // 16 samples x 3 stages are kept: the newest spans only.
  std::size_t spans = 0;
  for (std::size_t at = 0; (at = json.find("\"ph\":\"X\"", at)) != std::string::npos; ++at) ++spans;
  CHECK_EQ(spans, 48u);
  CHECK(json.find("\"input_seq\":39") != std::string::npos);
  CHECK(json.find("\"input_seq\":0,") == std::string::npos);
  std::remove(path.c_str());

  options.trace_samples = 0;
  Run untraced = Graph().add(tiny_mlp().graph()).build(std::vector<Tensor>{mlp_input(0)}, options);
  CHECK_THROWS(untraced.trace(path), Error);
}

TEST(preprocessing_runs_as_its_own_stage_with_several_threads_in_order) {
  PreprocessOptions pre = PreprocessOptions::imagenet(256, 256);
  pre.threads = 2;
  Model model(builtin_models().resnet50, Model::Options{pre, {}});
  Run run = Graph().add(model.graph()).build(std::vector<Tensor>{gradient_frame(224, 224)}, depth_and_workers(4, 1));
  const std::vector<Tensor> frames{gradient_frame(224, 224), gradient_frame(100, 120), gradient_frame(256, 200),
                                   gradient_frame(224, 180), gradient_frame(64, 64)};
  HangGuard guard("two preprocess threads", std::chrono::seconds(120));
  for (std::size_t i = 0; i < frames.size(); ++i) {
    Sample s = make_sample({frames[i]});
    s.frame_id = static_cast<std::int64_t>(i);
    run.push(std::move(s));
  }
  run.close_input();
  for (std::size_t i = 0; i < frames.size(); ++i) {
    std::optional<Sample> r = run.pull(60000);
    CHECK(r.has_value());
    CHECK_EQ(r->frame_id, static_cast<std::int64_t>(i));
    CHECK(same_outputs(*r, model.run({frames[i]})));
  }
  const RunStats stats = run.stats();
  CHECK_EQ(stats.stages[0].name, std::string("preprocess"));
  CHECK_EQ(stats.stages[0].threads, 2);
  CHECK_EQ(stats.stages[0].samples, frames.size());
}

TEST(stage_rejects_bad_arguments) {
  CHECK_THROWS(Stage("x", nullptr), Error);
  CHECK_THROWS(Stage("x", [](Sample&) {}, 0), Error);
  CHECK_THROWS(Stage("", [](Sample&) {}), Error);
}

int main(int argc, char** argv) { return check::run_all(argc, argv); }

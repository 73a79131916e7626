// Run on tiny-mlp, whose inference takes microseconds, so these tests exercise the pipeline itself:
// ordering, admission control, close_input, input checks, timeouts and teardown.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engine_models.hpp"
#include "check.hpp"
#include "hang_guard.hpp"
#include "ringflow/ringflow.hpp"
#include "tensors.hpp"

using namespace ringflow;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// Far above any healthy wait on tiny-mlp; only there to turn a hang into a failure.
constexpr int kPullTimeoutMs = 2000;
constexpr std::chrono::seconds kHangLimit{10};

Run build_run(RunOptions options = {}) {
  return Graph().add(tiny_mlp().graph()).build(std::vector<Tensor>{mlp_input(0)}, options);
}

Sample numbered_sample(int index) {
  Sample sample = make_sample({mlp_input(index)});
  sample.stream_id = "camera-7";
  sample.frame_id = 1000 + index;
  sample.pts_ns = 40'000'000LL * index;
  return sample;
}

double elapsed_ms(Clock::time_point since) {
  return std::chrono::duration<double, std::milli>(Clock::now() - since).count();
}

// Pushes `count` numbered samples from a producer thread while the test thread pulls: every result
// must arrive, in push order, carrying its own metadata and its own input's output.
void check_push_order(RunOptions options, int count) {
  std::vector<Sample> expected;
  for (int i = 0; i < count; ++i) expected.push_back(tiny_mlp().run({mlp_input(i)}));
  Run run = build_run(options);

  HangGuard guard("pushing and pulling in order", kHangLimit);
  std::string producer_error;
  std::thread producer([&] {
    try {
      for (int i = 0; i < count; ++i) run.push(numbered_sample(i));
    } catch (const std::exception& e) {
      producer_error = e.what();
    }
    run.close_input();
  });
  std::vector<PullResult> results;
  while (results.size() < static_cast<std::size_t>(count)) {
    results.push_back(run.pull_with_status(kPullTimeoutMs));
    if (results.back().status != PullStatus::Ok) {
      run.close_input();  // release the producer, which may be waiting for room, to see the failure
      break;
    }
  }
  producer.join();
  CHECK_EQ(producer_error, "");

  CHECK_EQ(results.size(), static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) {
    const PullResult& r = results[i];
    CHECK_EQ(r.status, PullStatus::Ok);
    CHECK_EQ(r.sample->input_seq, static_cast<std::uint64_t>(i));
    CHECK_EQ(r.sample->frame_id, 1000 + i);
    CHECK_EQ(r.sample->pts_ns, 40'000'000LL * i);
    CHECK_EQ(r.sample->stream_id, "camera-7");
    CHECK(same_outputs(*r.sample, expected[i]));
  }
  // End of stream, reported at once even to a pull that would wait forever.
  CHECK_EQ(run.pull_with_status(-1).status, PullStatus::Closed);
  CHECK(!run.pull(-1).has_value());
}

// Fills a Run of `queue_depth` without pulling, so that every slot is taken.
// Pushes `count` samples without pulling; waits while the dispatcher moves them out of the input
// queue into result slots.
void fill(Run& run, int count) {
  HangGuard guard("filling a Run to its capacity", kHangLimit);
  for (int i = 0; i < count; ++i) CHECK(run.push({mlp_input(i)}));
}

}  // namespace

TEST(results_arrive_in_push_order) { check_push_order({}, 500); }
TEST(results_arrive_in_push_order_with_queue_depth_1) { check_push_order(depth_and_workers(1, 1), 200); }
TEST(results_arrive_in_push_order_with_queue_depth_2_and_2_workers) { check_push_order(depth_and_workers(2, 2), 500); }
TEST(results_arrive_in_push_order_with_queue_depth_2_and_3_workers) { check_push_order(depth_and_workers(2, 3), 500); }
TEST(results_arrive_in_push_order_with_3_workers) { check_push_order(depth_and_workers(8, 3), 500); }

// Pushers race for slots and sequence numbers; whatever order they win in, results come out in
// input_seq order and each carries the output of its own input.
TEST(results_from_concurrent_pushers_arrive_in_input_seq_order) {
  constexpr int kPerPusher = 250;
  std::vector<Sample> expected;
  for (int i = 0; i < 2 * kPerPusher; ++i) expected.push_back(tiny_mlp().run({mlp_input(i)}));
  Run run = build_run(depth_and_workers(4, 2));

  HangGuard guard("two pushers and a puller", kHangLimit);
  std::atomic<int> push_errors{0};
  std::vector<std::thread> pushers;
  for (int p = 0; p < 2; ++p) {
    pushers.emplace_back([&, p] {
      try {
        for (int i = p; i < 2 * kPerPusher; i += 2) run.push(numbered_sample(i));
      } catch (const std::exception&) {
        ++push_errors;
      }
    });
  }
  std::vector<PullResult> results;
  while (results.size() < 2u * kPerPusher) {
    results.push_back(run.pull_with_status(kPullTimeoutMs));
    if (results.back().status != PullStatus::Ok) {
      run.close_input();  // release pushers waiting for room, to see the failure
      break;
    }
  }
  for (std::thread& t : pushers) t.join();
  CHECK_EQ(push_errors.load(), 0);

  CHECK_EQ(results.size(), 2u * kPerPusher);
  for (std::size_t seq = 0; seq < results.size(); ++seq) {
    CHECK_EQ(results[seq].status, PullStatus::Ok);
    const Sample& result = *results[seq].sample;
    CHECK_EQ(result.input_seq, seq);
    const std::int64_t index = result.frame_id - 1000;
    CHECK(index >= 0 && index < 2 * kPerPusher);
    CHECK(same_outputs(result, expected[index]));
  }
}

TEST(run_specs_are_the_models_shapes_not_the_seeds) {
  Run run = build_run();
  CHECK_EQ(run.input_specs().size(), 1u);
  CHECK_EQ(run.input_specs()[0].name, "input");
  CHECK_EQ(run.input_specs()[0].shape, (Shape{-1, 64}));
  CHECK_EQ(run.output_specs().size(), 1u);
  CHECK_EQ(run.output_specs()[0].name, "logits");
  CHECK_EQ(run.output_specs()[0].shape, (Shape{-1, 10}));
}

TEST(capacity_is_two_queues_plus_a_batch_per_worker) {
  CHECK_EQ(build_run(depth_and_workers(3, 1)).capacity(), 3u + 3u + 1u);
  CHECK_EQ(build_run(depth_and_workers(4, 2)).capacity(), 4u + 4u + 2u);
}

TEST(try_push_refuses_while_capacity_samples_are_unpulled) {
  Run run = build_run(depth_and_workers(3, 1));
  const int capacity = static_cast<int>(run.capacity());
  fill(run, capacity);
  // Finished results still hold their slots until pulled, however long the workers have had.
  std::this_thread::sleep_for(20ms);
  CHECK(!run.try_push({mlp_input(capacity)}));
  const std::optional<Sample> first = run.pull(kPullTimeoutMs);
  CHECK(first.has_value());
  CHECK_EQ(first->input_seq, 0u);
  // One pull frees one result slot; the dispatcher moves a waiting sample into it, which frees room
  // in the input queue.
  HangGuard guard("a try_push after a pull", kHangLimit);
  while (!run.try_push({mlp_input(capacity)})) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(20ms);
  CHECK(!run.try_push({mlp_input(capacity + 1)}));
  for (std::uint64_t seq = 1; seq <= static_cast<std::uint64_t>(capacity); ++seq) {
    const std::optional<Sample> result = run.pull(kPullTimeoutMs);
    CHECK(result.has_value());
    CHECK_EQ(result->input_seq, seq);  // the refused pushes took no sequence number
  }
}

TEST(a_blocked_push_proceeds_once_a_result_is_pulled) {
  Run run = build_run(depth_and_workers(2, 1));
  const int capacity = static_cast<int>(run.capacity());
  fill(run, capacity);
  HangGuard guard("a push waiting for a free slot", kHangLimit);
  std::atomic<bool> pushed{false};
  std::thread pusher([&] {
    try {
      run.push({mlp_input(capacity)});
      pushed = true;
    } catch (const std::exception&) {
      // `pushed` stays false and the test fails below
    }
  });
  std::this_thread::sleep_for(50ms);
  const bool pushed_while_full = pushed;
  const std::optional<Sample> first = run.pull(kPullTimeoutMs);
  pusher.join();
  CHECK(!pushed_while_full);
  CHECK(pushed);
  CHECK(first.has_value());
  for (std::uint64_t seq = 1; seq <= static_cast<std::uint64_t>(capacity); ++seq) {
    const std::optional<Sample> result = run.pull(kPullTimeoutMs);
    CHECK(result.has_value());
    CHECK_EQ(result->input_seq, seq);
  }
}

TEST(push_after_close_input_throws_closed_error) {
  Run run = build_run();
  run.push({mlp_input(0)});
  run.close_input();
  CHECK_THROWS(run.push({mlp_input(1)}), ClosedError);
  CHECK_THROWS(run.try_push({mlp_input(1)}), ClosedError);
  // What was accepted before the close is still delivered.
  const PullResult accepted = run.pull_with_status(kPullTimeoutMs);
  CHECK_EQ(accepted.status, PullStatus::Ok);
  CHECK_EQ(run.pull_with_status(kPullTimeoutMs).status, PullStatus::Closed);
}

TEST(close_input_releases_a_push_blocked_on_a_full_queue) {
  Run run = build_run(depth_and_workers(2, 1));
  const int capacity = static_cast<int>(run.capacity());
  fill(run, capacity);
  HangGuard guard("a blocked push after close_input", kHangLimit);
  enum class Outcome { Blocked, Returned, ClosedError, OtherError };
  std::atomic<Outcome> outcome{Outcome::Blocked};
  std::thread pusher([&] {
    try {
      run.push({mlp_input(capacity)});
      outcome = Outcome::Returned;
    } catch (const ClosedError&) {
      outcome = Outcome::ClosedError;
    } catch (...) {
      outcome = Outcome::OtherError;
    }
  });
  std::this_thread::sleep_for(50ms);
  const Outcome before_close = outcome;
  run.close_input();
  pusher.join();
  CHECK_EQ(before_close, Outcome::Blocked);
  CHECK_EQ(outcome.load(), Outcome::ClosedError);
  // Everything accepted before the close is still delivered.
  for (int i = 0; i < capacity; ++i) CHECK_EQ(run.pull_with_status(kPullTimeoutMs).status, PullStatus::Ok);
  CHECK_EQ(run.pull_with_status(kPullTimeoutMs).status, PullStatus::Closed);
}

TEST(close_input_ends_a_pull_waiting_on_an_empty_run) {
  Run run = build_run();
  HangGuard guard("a pull waiting for end of stream", kHangLimit);
  PullStatus status = PullStatus::Ok;
  std::thread puller([&] { status = run.pull_with_status(-1).status; });
  std::this_thread::sleep_for(20ms);
  run.close_input();
  puller.join();
  CHECK_EQ(status, PullStatus::Closed);
}

TEST(mismatched_inputs_are_rejected_and_the_run_goes_on) {
  Run run = build_run();
  const Tensor flat = Tensor::allocate(DType::Float32, {64});
  CHECK_THROWS_WITH(run.push({flat}), ShapeError, "[?, 64]");
  const Tensor narrow = Tensor::allocate(DType::Float32, {1, 32});
  CHECK_THROWS_WITH(run.push({narrow}), ShapeError, "dimension 1 must be 64");
  const Tensor empty_batch = Tensor::allocate(DType::Float32, {0, 64});
  CHECK_THROWS_WITH(run.push({empty_batch}), ShapeError, "dimension 0 has size 0");
  const Tensor doubles = Tensor::allocate(DType::Float64, {1, 64});
  CHECK_THROWS_WITH(run.push({doubles}), DTypeError, "float32 [?, 64]");
  CHECK_THROWS_WITH(run.try_push({doubles}), DTypeError, "float32 [?, 64]");
  const std::vector<Tensor> two_inputs{mlp_input(0), mlp_input(1)};
  CHECK_THROWS(run.push(two_inputs), ShapeError);

  run.push({mlp_input(5)});
  const std::optional<Sample> result = run.pull(kPullTimeoutMs);
  CHECK(result.has_value());
  CHECK_EQ(result->input_seq, 0u);  // nothing rejected was enqueued
  CHECK(same_outputs(*result, tiny_mlp().run({mlp_input(5)})));
}

// run.hpp promises ShapeError or DTypeError for any sample that does not match the inputs.
TEST(a_sample_naming_an_unknown_input_is_a_shape_error) {
  Run run = build_run();
  Sample misnamed = make_sample({mlp_input(0)});
  misnamed.names = {"not_an_input"};
  CHECK_THROWS_WITH(run.push(misnamed), ShapeError, "not_an_input");
}

TEST(a_sample_naming_its_input_is_accepted) {
  Run run = build_run();
  Sample named = make_sample({mlp_input(2)});
  named.names = {"input"};
  run.push(named);
  const std::optional<Sample> result = run.pull(kPullTimeoutMs);
  CHECK(result.has_value());
  CHECK(same_outputs(*result, tiny_mlp().run({mlp_input(2)})));
}

TEST(pull_on_an_open_empty_run_times_out) {
  Run run = build_run();
  Clock::time_point start = Clock::now();
  CHECK_EQ(run.pull_with_status(50).status, PullStatus::Timeout);
  CHECK(elapsed_ms(start) >= 50.0);
  start = Clock::now();
  CHECK(!run.pull(50).has_value());
  CHECK(elapsed_ms(start) >= 50.0);
}

TEST(destroying_a_run_with_samples_in_flight_returns) {
  HangGuard guard("destroying busy Runs", kHangLimit);
  for (int workers : {1, 3}) {
    Run run = build_run(depth_and_workers(8, workers));
    fill(run, 8);
  }  // destroyed at once, most samples still queued or running
  {
    Run run = build_run(depth_and_workers(8, 2));
    fill(run, 8);
    std::this_thread::sleep_for(50ms);  // by now every result is done and waiting to be pulled
  }
}

TEST(run_on_an_idle_run_matches_model_run) {
  Run run = build_run();
  for (int i = 0; i < 5; ++i) {
    const Sample result = run.run({mlp_input(i)}, kPullTimeoutMs);
    CHECK_EQ(result.input_seq, static_cast<std::uint64_t>(i));
    CHECK(same_outputs(result, tiny_mlp().run({mlp_input(i)})));
  }
}

TEST(run_with_samples_in_flight_throws) {
  Run run = build_run();
  run.push({mlp_input(0)});
  CHECK_THROWS_WITH(run.run({mlp_input(1)}), Error, "idle");
  const std::optional<Sample> in_flight = run.pull(kPullTimeoutMs);
  CHECK(in_flight.has_value());
  CHECK_EQ(in_flight->input_seq, 0u);
  // Idle again: the refused run() enqueued nothing.
  CHECK_EQ(run.run({mlp_input(1)}, kPullTimeoutMs).input_seq, 1u);
}

int main(int argc, char** argv) { return check::run_all(argc, argv); }

TEST(push_if_room_hands_a_sample_back_uncounted_when_push_would_wait) {
  Run run = build_run(depth_and_workers(2, 1));
  fill(run, static_cast<int>(run.capacity()));
  std::this_thread::sleep_for(20ms);
  const std::uint64_t pushes_before = run.input_stats().pushes;
  Sample sample = make_sample({mlp_input(99)});
  sample.frame_id = 99;
  CHECK(!run.push_if_room(sample).has_value());
  CHECK_EQ(run.input_stats().pushes, pushes_before);
  CHECK_EQ(run.input_stats().push_failures, 0u);
  CHECK_EQ(sample.frame_id, 99);
  CHECK(same_bits(sample.tensors.at(0), mlp_input(99)));  // still the caller's sample, ready to push

  CHECK(run.pull(kPullTimeoutMs).has_value());
  HangGuard guard("push_if_room after a pull made room", kHangLimit);
  std::optional<bool> accepted;
  while (!(accepted = run.push_if_room(sample))) std::this_thread::sleep_for(1ms);
  CHECK(*accepted);
  CHECK_EQ(run.input_stats().pushes, pushes_before + 1);
}

// An event loop's wait, as ringflow's asyncio glue does it: ask to be woken, poll once more, and
// wait for the wake-up only if that found nothing. Each wake-up comes from the engine thread that
// made the change: a result delivered, room made by admission, end of stream.
TEST(notify_when_pullable_and_pushable_wake_a_waiter_that_never_blocks_in_the_run) {
  Run run = build_run(depth_and_workers(2, 1));
  struct Flag {
    std::mutex mutex;
    std::condition_variable cv;
    bool set = false;
    std::function<void()> waker() {
      return [this] {
        std::lock_guard<std::mutex> lock(mutex);
        set = true;
        cv.notify_all();
      };
    }
    bool wait() {
      std::unique_lock<std::mutex> lock(mutex);
      return cv.wait_for(lock, std::chrono::milliseconds(kPullTimeoutMs), [&] { return set; });
    }
  };
  HangGuard guard("waiting by notification", kHangLimit);

  Flag result;
  run.notify_when_pullable(result.waker());
  CHECK_EQ(run.pull_with_status(0).status, PullStatus::Timeout);
  CHECK(run.push({mlp_input(0)}));
  CHECK(result.wait());  // woken by the delivery of that result
  PullResult got = run.pull_with_status(0);
  for (int polls = 0; got.status == PullStatus::Timeout && polls < 1000; ++polls) got = run.pull_with_status(1);
  CHECK_EQ(got.status, PullStatus::Ok);

  fill(run, static_cast<int>(run.capacity()));
  std::this_thread::sleep_for(20ms);
  Sample waiting = make_sample({mlp_input(7)});
  CHECK(!run.push_if_room(waiting).has_value());  // full
  Flag room;
  run.notify_when_pushable(room.waker());
  CHECK(!run.push_if_room(waiting).has_value());  // still full after asking: wait for the wake-up
  CHECK(run.pull(kPullTimeoutMs).has_value());    // frees a result slot; admission makes room
  CHECK(room.wait());
  std::optional<bool> accepted;
  while (!(accepted = run.push_if_room(waiting))) std::this_thread::sleep_for(1ms);
  CHECK(*accepted);

  Flag end;
  run.close_input();
  while (run.pull(kPullTimeoutMs)) {
  }
  run.notify_when_pullable(end.waker());
  CHECK_EQ(run.pull_with_status(0).status, PullStatus::Closed);  // the poll after asking sees the end
  run.stop();  // and stop() fires whatever is still registered
  CHECK(end.wait());
}

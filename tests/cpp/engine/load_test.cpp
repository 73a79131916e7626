// A Run under load: many producers and consumers, overflow policies against a slow consumer, order
// with several workers, dynamic batching, pooled outputs, statistics, Model::benchmark and the
// option presets. Mostly on tiny-mlp, whose inference takes microseconds, so that the pipeline is
// what gets loaded; resnet50 only to show that batching agrees with unbatched inference on a
// real-size model with preprocessing.
//
// Threads other than the test's own record what they observe; the test CHECKs after join(), as
// check.hpp requires.
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <random>
#include <set>
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

namespace {

// Far above any healthy wait on tiny-mlp; only there to turn a hang into a failure.
constexpr int kPullTimeoutMs = 5000;
constexpr std::chrono::seconds kHangLimit{30};

const Model& resnet50_for_rgb_frames() {
  static const Model model = [] {
    Model::Options options;
    options.preprocess = PreprocessOptions::imagenet(224, 224);
    return Model(builtin_models().resnet50, options);
  }();
  return model;
}

Run build_tiny_run(const RunOptions& options) {
  return Graph().add(tiny_mlp().graph()).build(std::vector<Tensor>{mlp_input(0)}, options);
}

// A tiny-mlp row unique to each index below 47104. mlp_input() repeats every 23 indices, too few to
// tell thousands of results apart; element 0 is replaced by a value that cycles every 2048.
Tensor distinct_input(int index) {
  Tensor row = mlp_input(index);
  row.mutable_data<float>()[0] = static_cast<float>(index % 2048) / 1024.0f - 1.0f;
  return row;
}

Sample tagged(const Tensor& input, const std::string& stream_id, std::int64_t frame_id) {
  Sample sample = make_sample({input});
  sample.stream_id = stream_id;
  sample.frame_id = frame_id;
  return sample;
}

// Unbatched reference outputs, from Model::run on the calling thread.
// Pulls results into `pulled` until end of stream, pausing `pause` after each (a slow consumer).
// A pull that fails or times out closes the input, so the producer stops too, and is returned as
// the failure; an empty string means the stream ended cleanly.
std::string pull_until_closed(Run& run, std::vector<Sample>& pulled,
                              std::chrono::milliseconds pause = std::chrono::milliseconds(0)) {
  for (;;) {
    PullResult r = run.pull_with_status(kPullTimeoutMs);
    if (r.status == PullStatus::Closed) return "";
    if (r.status != PullStatus::Ok) {
      run.close_input();
      return std::string(pull_status_name(r.status)) + ": " + r.error;
    }
    pulled.push_back(std::move(*r.sample));
    if (pause.count() > 0) std::this_thread::sleep_for(pause);
  }
}

std::vector<Sample> model_outputs(int count) {
  std::vector<Sample> outputs;
  for (int i = 0; i < count; ++i) outputs.push_back(tiny_mlp().run({distinct_input(i)}));
  return outputs;
}

// How many different output byte strings `outputs` holds: a result that matches its reference only
// identifies its input if no two references are the same.
std::size_t distinct_outputs(const std::vector<Sample>& outputs) {
  std::set<std::string> seen;
  for (const Sample& s : outputs) {
    const Mapping m = s.tensors.at(0).map_read();
    seen.insert(std::string(static_cast<const char*>(m.data), m.size_bytes));
  }
  return seen.size();
}

// Largest absolute difference between two float32 tensors of one shape; infinity if they differ in
// dtype or shape.
double max_abs_difference(const Tensor& a, const Tensor& b) {
  if (a.dtype() != DType::Float32 || b.dtype() != DType::Float32 || a.shape() != b.shape()) return INFINITY;
  const std::size_t n = element_count(a.shape());
  double worst = 0;
  for (std::size_t i = 0; i < n; ++i) {
    worst = std::max(worst, std::fabs(static_cast<double>(a.data<float>()[i]) - b.data<float>()[i]));
  }
  return worst;
}

std::string bytes_of(const Tensor& t) {
  const Mapping m = t.map_read();
  return std::string(static_cast<const char*>(m.data), m.size_bytes);
}

const void* data_pointer(const Sample& s) { return s.tensors.at(0).map_read().data; }

// Polls until the pipeline has delivered `results` results (pulled or not).
void wait_until_ready(const Run& run, std::uint64_t results) {
  HangGuard guard("waiting for " + std::to_string(results) + " results to be ready", kHangLimit);
  while (run.stats().outputs_ready < results) std::this_thread::sleep_for(200us);
}

// ---- a minimal JSON syntax check (RFC 8259 grammar, no semantics) ------------------------------

class JsonSyntax {
 public:
  static bool valid(const std::string& text) {
    JsonSyntax p{text};
    p.space();
    if (!p.value()) return false;
    p.space();
    return p.at_ == text.size();
  }

 private:
  explicit JsonSyntax(const std::string& text) : s_(text) {}
  bool more() const { return at_ < s_.size(); }
  char peek() const { return more() ? s_[at_] : '\0'; }
  bool eat(char c) {
    if (peek() != c) return false;
    ++at_;
    return true;
  }
  void space() {
    while (more() && (peek() == ' ' || peek() == '\n' || peek() == '\t' || peek() == '\r')) ++at_;
  }
  bool literal(const char* word) {
    const std::string w(word);
    if (s_.compare(at_, w.size(), w) != 0) return false;
    at_ += w.size();
    return true;
  }
  bool digits() {
    const std::size_t start = at_;
    while (more() && peek() >= '0' && peek() <= '9') ++at_;
    return at_ > start;
  }
  bool number() {
    eat('-');
    if (!eat('0') && !digits()) return false;
    if (eat('.') && !digits()) return false;
    if (peek() == 'e' || peek() == 'E') {
      ++at_;
      if (!eat('+')) eat('-');
      if (!digits()) return false;
    }
    return true;
  }
  bool string() {
    if (!eat('"')) return false;
    while (more() && peek() != '"') {
      if (static_cast<unsigned char>(peek()) < 0x20) return false;
      if (eat('\\') && !more()) return false;
      ++at_;
    }
    return eat('"');
  }
  template <typename Element>
  bool sequence(char open, char close, Element element) {
    if (!eat(open)) return false;
    space();
    if (eat(close)) return true;
    for (;;) {
      space();
      if (!element()) return false;
      space();
      if (eat(close)) return true;
      if (!eat(',')) return false;
    }
  }
  bool value() {
    switch (peek()) {
      case '{':
        return sequence('{', '}', [this] {
          if (!string()) return false;
          space();
          if (!eat(':')) return false;
          space();
          return value();
        });
      case '[': return sequence('[', ']', [this] { return value(); });
      case '"': return string();
      case 't': return literal("true");
      case 'f': return literal("false");
      case 'n': return literal("null");
      default: return number();
    }
  }

  const std::string& s_;
  std::size_t at_ = 0;
};

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST(the_json_syntax_check_rejects_what_it_should) {
  // The stats and benchmark tests rely on this check, so it must be able to fail.
  CHECK(JsonSyntax::valid(R"({"a":[1,-2.5e3,{"b":"c\"d"}],"e":true,"f":null})"));
  CHECK(!JsonSyntax::valid(R"({"a":1,})"));
  CHECK(!JsonSyntax::valid(R"({"a":nan})"));
  CHECK(!JsonSyntax::valid(R"({"a":inf})"));
  CHECK(!JsonSyntax::valid(R"({"a":1)"));
  CHECK(!JsonSyntax::valid(R"({"a" 1})"));
  CHECK(!JsonSyntax::valid(R"({"a":1}})"));
}

// ---- 1. soak: four producers, two consumers, 100,000 samples ------------------------------------

namespace {

// How PreemptionInjector pauses threads: every `period` one target, picked at random, is
// paused for `pause`.
struct Preemption {
  std::chrono::microseconds period;
  std::chrono::microseconds pause;
};

// Sends SIGUSR1 to the target threads; the handler sleeps. A target is thus descheduled at an
// arbitrary instruction, as an unlucky preemption would do, but many thousands of times a second:
// a race whose window is a few instructions wide, which ordinary scheduling hits once in many runs,
// shows up within seconds. Only the test's own threads are targeted, never the Run's or ONNX
// Runtime's; the waits they make in pull() re-check their condition after a signal.
class PreemptionInjector {
 public:
  PreemptionInjector(std::vector<pthread_t> targets, Preemption preemption) : targets_(std::move(targets)) {
    pause_ns_ = static_cast<long>(std::chrono::nanoseconds(preemption.pause).count());
    struct sigaction action {};
    action.sa_handler = &pause_here;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    sigaction(SIGUSR1, &action, &previous_);
    thread_ = std::thread([this, period = preemption.period] {
      std::mt19937 pick(12345);
      while (!stop_.load()) {
        pthread_kill(targets_[pick() % targets_.size()], SIGUSR1);
        ++signals_;
        std::this_thread::sleep_for(period);
      }
    });
  }
  // Call before joining any target: a joined thread's id may be reused.
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  ~PreemptionInjector() {
    stop();
    // A signal sent just before stop() may still be pending; let it land before the previous
    // action (by default: terminate) is back.
    std::this_thread::sleep_for(5ms);
    sigaction(SIGUSR1, &previous_, nullptr);
  }
  std::uint64_t signals() const { return signals_.load(); }

 private:
  static void pause_here(int) {
    const int saved_errno = errno;
    const timespec pause{0, pause_ns_.load()};
    nanosleep(&pause, nullptr);
    errno = saved_errno;
  }

  static inline std::atomic<long> pause_ns_{0};  // lock-free, so safe to read in the handler
  std::vector<pthread_t> targets_;
  struct sigaction previous_ {};
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> signals_{0};
  std::thread thread_;
};

// What a consumer saw of one result.
struct Delivery {
  std::uint64_t input_seq;
  std::int64_t frame_id;
  bool stream_matches;   // stream_id names the producer encoded in frame_id
  bool payload_matches;  // the output is Model::run's for that frame's input
};

// Consumer threads record what went wrong instead of CHECKing (only the test thread may).
struct ConsumerLog {
  std::vector<Delivery> deliveries;
  std::string failure;
};

// Pulls until end of stream. A result must carry the output of the input its frame_id names.
// `payload_of(frame_id)` says which reference output that is.
template <typename PayloadOf>
void consume(Run& run, ConsumerLog& log, const std::vector<Sample>& references, PayloadOf payload_of,
             std::int64_t frames_per_stream) {
  for (;;) {
    PullResult r = run.pull_with_status(kPullTimeoutMs);
    if (r.status == PullStatus::Closed) return;
    if (r.status != PullStatus::Ok) {
      log.failure = std::string("pull returned ") + pull_status_name(r.status) + ": " + r.error;
      run.close_input();  // release producers waiting for room, so the test ends and reports this
      return;
    }
    const Sample& s = *r.sample;
    const std::int64_t frame = s.frame_id;
    Delivery d{s.input_seq, frame, false, false};
    if (frame >= 0) {
      d.stream_matches = s.stream_id == "producer-" + std::to_string(frame / frames_per_stream);
      d.payload_matches = same_outputs(s, references[payload_of(frame)]);
    }
    log.deliveries.push_back(d);
  }
}

// Producers push `per_producer` samples each, consumers pull until Closed. Checks every sample
// arrives exactly once, carrying its own output and metadata, and (ordered) in push order.
void soak(int producers, int per_producer, int consumers, RunOptions options,
          std::optional<Preemption> preempt_consumers = std::nullopt) {
  constexpr int kPayloads = 97;  // inputs cycle through these; frame f carries input f % kPayloads
  const std::int64_t total = std::int64_t{producers} * per_producer;
  std::vector<Tensor> inputs;
  for (int i = 0; i < kPayloads; ++i) inputs.push_back(distinct_input(i));
  const std::vector<Sample> references = model_outputs(kPayloads);
  const auto payload_of = [](std::int64_t frame) { return static_cast<std::size_t>(frame % kPayloads); };

  Run run = build_tiny_run(options);
  std::vector<std::string> producer_failures(producers);
  std::vector<ConsumerLog> logs(consumers);
  std::uint64_t preemption_signals = 0;
  std::atomic<int> consumers_done{0};
  {
    HangGuard guard("a soak of " + std::to_string(total) + " samples", std::chrono::seconds(60));
    std::vector<std::thread> producer_threads;
    for (int p = 0; p < producers; ++p) {
      producer_threads.emplace_back([&, p] {
        const std::string stream = "producer-" + std::to_string(p);
        try {
          for (int i = 0; i < per_producer; ++i) {
            const std::int64_t frame = std::int64_t{p} * per_producer + i;
            if (!run.push(tagged(inputs[payload_of(frame)], stream, frame))) {
              producer_failures[p] = "a Block push returned false at frame " + std::to_string(frame);
              return;
            }
          }
        } catch (const std::exception& e) {
          producer_failures[p] = e.what();
        }
      });
    }
    std::vector<std::thread> consumer_threads;
    for (int c = 0; c < consumers; ++c) {
      consumer_threads.emplace_back([&, c] {
        consume(run, logs[c], references, payload_of, per_producer);
        ++consumers_done;
      });
    }
    std::optional<PreemptionInjector> injector;
    if (preempt_consumers) {
      std::vector<pthread_t> targets;
      for (std::thread& t : consumer_threads) targets.push_back(t.native_handle());
      injector.emplace(std::move(targets), *preempt_consumers);
    }
    for (std::thread& t : producer_threads) t.join();
    run.close_input();
    if (injector) {
      // Keep preempting until every consumer has finished, then stop before the joins.
      while (consumers_done.load() < consumers) std::this_thread::sleep_for(1ms);
      injector->stop();
      preemption_signals = injector->signals();
    }
    for (std::thread& t : consumer_threads) t.join();
  }
  if (preempt_consumers) CHECK(preemption_signals > 100);  // or the consumers were hardly preempted

  for (const std::string& failure : producer_failures) CHECK_EQ(failure, "");
  for (const ConsumerLog& log : logs) CHECK_EQ(log.failure, "");

  // Exactly once, by frame and by input_seq (Block drops nothing, so tickets are dense).
  std::vector<int> frame_deliveries(total, 0);
  std::vector<int> seq_deliveries(total, 0);
  std::vector<std::uint64_t> seq_of_frame(total, 0);
  std::int64_t unknown = 0, wrong_stream = 0, wrong_payload = 0, seq_not_increasing = 0;
  for (const ConsumerLog& log : logs) {
    for (std::size_t k = 0; k < log.deliveries.size(); ++k) {
      const Delivery& d = log.deliveries[k];
      if (d.frame_id < 0 || d.frame_id >= total || d.input_seq >= static_cast<std::uint64_t>(total)) {
        ++unknown;
        continue;
      }
      ++frame_deliveries[d.frame_id];
      ++seq_deliveries[d.input_seq];
      seq_of_frame[d.frame_id] = d.input_seq;
      wrong_stream += !d.stream_matches;
      wrong_payload += !d.payload_matches;
      if (k > 0 && d.input_seq <= log.deliveries[k - 1].input_seq) ++seq_not_increasing;
    }
  }
  const auto never_delivered = std::count(frame_deliveries.begin(), frame_deliveries.end(), 0);
  const auto delivered_twice_or_more = std::count_if(frame_deliveries.begin(), frame_deliveries.end(),
                                                     [](int n) { return n > 1; });
  CHECK_EQ(unknown, 0);
  CHECK_EQ(wrong_payload, 0);  // includes results without tensors
  CHECK_EQ(wrong_stream, 0);
  CHECK_EQ(never_delivered, 0);
  CHECK_EQ(delivered_twice_or_more, 0);
  CHECK_EQ(std::count(seq_deliveries.begin(), seq_deliveries.end(), 1), total);

  // Every producer's samples were ticketed in its push order, ordered or not.
  std::int64_t producer_order_broken = 0;
  for (int p = 0; p < producers; ++p) {
    for (int i = 1; i < per_producer; ++i) {
      const std::int64_t frame = std::int64_t{p} * per_producer + i;
      producer_order_broken += seq_of_frame[frame] <= seq_of_frame[frame - 1];
    }
  }
  CHECK_EQ(producer_order_broken, 0);
  // Ordered: the Run hands out results in input_seq order, so each consumer's share is increasing,
  // and with it each producer's frames as that consumer saw them.
  if (options.ordered) CHECK_EQ(seq_not_increasing, 0);

  const RunStats stats = run.stats();
  CHECK_EQ(stats.input.pushes, static_cast<std::uint64_t>(total));
  CHECK_EQ(stats.input.push_failures, 0u);
  CHECK_EQ(stats.input.inputs_enqueued, static_cast<std::uint64_t>(total));
  CHECK_EQ(stats.input.inputs_dropped, 0u);
  CHECK_EQ(stats.outputs_ready, static_cast<std::uint64_t>(total));
  CHECK_EQ(stats.outputs_pulled, static_cast<std::uint64_t>(total));
  CHECK_EQ(stats.errors, 0u);
}

RunOptions soak_options(int workers, bool ordered) {
  RunOptions options = depth_and_workers(64, workers);
  options.ordered = ordered;
  return options;
}

}  // namespace

TEST(soak_100k_samples_four_producers_two_consumers) { soak(4, 25000, 2, soak_options(1, true)); }
TEST(soak_100k_samples_with_two_ordered_workers) { soak(4, 25000, 2, soak_options(2, true)); }
// Completion order: exactly once and per-producer tickets still hold; consumers may see any order.
TEST(soak_100k_samples_with_two_unordered_workers) { soak(4, 25000, 2, soak_options(2, false)); }

namespace {

// One consumer at a time, picked at random, paused for 20 us: long enough for the others to pull
// ahead and for the dispatcher to start the next samples. The injector asks for a pause every 5 us;
// sleep granularity makes that some tens of microseconds in practice.
constexpr Preemption kConsumerPreemption{5us, 20us};

// Tests that may crash the process run in a child process (this binary again, told which test by
// this environment variable), so a crash fails that one test with the child's output and the rest
// of the suite still runs.
constexpr const char* kChildTestVariable = "RINGFLOW_LOAD_TEST_CHILD";

struct ChildTest {
  const char* name;
  void (*body)();
};

// In the ordered results stage a consumer first claims an ordinal (the CAS on next_pull_), then
// moves the result out of its slot. A consumer paused in between must still get its own result,
// whatever the others pull meanwhile. Two result slots (queue_depth 1, one worker), so a slot is
// reused every other sample. A round of 40,000 samples found a race in that window about 60% of
// the time (on 2 cores), so rounds go on for 8 s: a race that wide is then found in nearly every
// run, and a correct Run costs the suite a bounded time.
void ordered_soak_with_preempted_consumers() {
  const auto start = std::chrono::steady_clock::now();
  do {
    soak(2, 20000, 4, depth_and_workers(1, 1), kConsumerPreemption);
  } while (std::chrono::steady_clock::now() - start < 8s);
}

// Unordered results leave through a RingBuffer, whose pop moves the value out before it hands the
// slot back: the same preemption must be harmless there. Also shows that the injector alone does
// not break a Run.
void unordered_soak_with_preempted_consumers() {
  RunOptions options = depth_and_workers(1, 1);
  options.ordered = false;
  soak(2, 10000, 4, options, kConsumerPreemption);
}

const std::vector<ChildTest>& child_tests() {
  static const std::vector<ChildTest> tests{
      {"ordered_soak_with_preempted_consumers", &ordered_soak_with_preempted_consumers},
      {"unordered_soak_with_preempted_consumers", &unordered_soak_with_preempted_consumers},
  };
  return tests;
}

// Runs the child test `name` in a child process and fails, with the child's output, unless it
// exits with status 0.
void check_in_child_process(const std::string& name) {
  char self[4096];
  const ssize_t length = readlink("/proc/self/exe", self, sizeof self - 1);
  CHECK(length > 0);
  self[length] = '\0';
  const std::string command = std::string(kChildTestVariable) + "=" + name + " " + ringflow::support::shell_quote(self) + " 2>&1";
  HangGuard guard("child test " + name, std::chrono::seconds(120));
  FILE* pipe = popen(command.c_str(), "r");
  CHECK(pipe != nullptr);
  std::string output;
  char buffer[4096];
  for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) output.append(buffer, n);
  const int status = pclose(pipe);
  while (!output.empty() && output.back() == '\n') output.pop_back();
  if (status != 0) {
    // popen() runs the child through /bin/sh, which reports a child killed by signal N as 128 + N.
    const int signal = WIFSIGNALED(status)             ? WTERMSIG(status)
                       : WEXITSTATUS(status) > 128 ? WEXITSTATUS(status) - 128
                                                   : 0;
    const std::string how = signal ? "was killed by signal " + std::to_string(signal) + " (" + strsignal(signal) + ")"
                                   : "exited with status " + std::to_string(WEXITSTATUS(status));
    check::fail(__FILE__, __LINE__, "child test " + name + " " + how + "; it printed: " + output);
  }
}

// The child's side: runs one child test, prints what failed, and exits nonzero if it did.
int run_child_test(const std::string& name) {
  for (const ChildTest& test : child_tests()) {
    if (name != test.name) continue;
    try {
      test.body();
      return 0;
    } catch (const std::exception& e) {
      std::printf("%s\n", e.what());
      return 1;
    }
  }
  std::printf("no child test named %s\n", name.c_str());
  return 1;
}

}  // namespace

TEST(ordered_results_survive_consumers_preempted_at_random_points) {
  check_in_child_process("ordered_soak_with_preempted_consumers");
}
TEST(unordered_results_survive_consumers_preempted_at_random_points) {
  check_in_child_process("unordered_soak_with_preempted_consumers");
}

// ---- 2. overflow policies against a slow consumer ----------------------------------------------

namespace {

// Every DroppedInput the callback saw, in call order.
struct DropLog {
  std::mutex mutex;
  std::vector<DroppedInput> drops;
  void record(const DroppedInput& d) {
    std::lock_guard<std::mutex> lock(mutex);
    drops.push_back(d);
  }
};

// Polls run.stats() from its own thread while the Run works and keeps the largest occupancy seen.
// Counters in one snapshot are read an instant apart, ready before pulled and enqueued before
// pulled, so a later-read pulled count can only make these differences smaller, never larger:
// a bound exceeded here was exceeded in the Run.
class OccupancySampler {
 public:
  explicit OccupancySampler(const Run& run)
      : thread_([this, &run] {
          while (!stop_.load()) {
            const RunStats s = run.stats();
            const auto pulled = static_cast<std::int64_t>(s.outputs_pulled);
            max_unpulled_results_ = std::max(max_unpulled_results_, static_cast<std::int64_t>(s.outputs_ready) - pulled);
            max_in_flight_ = std::max(max_in_flight_, static_cast<std::int64_t>(s.input.inputs_enqueued) - pulled);
            ++snapshots_;
            std::this_thread::sleep_for(100us);
          }
        }) {}
  ~OccupancySampler() { stop(); }

  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // Read after stop().
  std::int64_t max_unpulled_results() const { return max_unpulled_results_; }
  std::int64_t max_in_flight() const { return max_in_flight_; }
  std::uint64_t snapshots() const { return snapshots_; }

 private:
  std::atomic<bool> stop_{false};
  std::int64_t max_unpulled_results_ = 0;
  std::int64_t max_in_flight_ = 0;
  std::uint64_t snapshots_ = 0;
  std::thread thread_;  // last: it starts running before the constructor body
};

constexpr int kPolicyPushes = 40;
constexpr std::int64_t kFirstFrame = 100;  // frame ids differ from input_seqs, so neither passes for the other

// One producer pushes kPolicyPushes samples 1 ms apart; the consumer sleeps 5 ms after each pull,
// so the Run fills up and the policy has to act. Checks the drop arithmetic and the bounds.
void check_policy_under_slow_consumer(OverflowPolicy policy, std::size_t queue_depth, int workers) {
  DropLog drop_log;
  RunOptions options = depth_and_workers(queue_depth, workers);
  options.overflow_policy = policy;
  options.on_input_drop = [&drop_log](const DroppedInput& d) { drop_log.record(d); };
  Run run = build_tiny_run(options);
  const std::int64_t result_slots =
      static_cast<std::int64_t>(queue_depth) + std::int64_t{workers} * options.max_batch;
  CHECK_EQ(run.capacity(), queue_depth + static_cast<std::size_t>(result_slots));

  std::vector<int> push_returned(kPolicyPushes, -1);  // 1 accepted, 0 refused, -1 threw
  std::string producer_failure;
  std::vector<Sample> pulled;
  std::string consumer_failure;
  OccupancySampler sampler(run);
  {
    HangGuard guard("a slow consumer behind a fast producer", kHangLimit);
    std::thread producer([&] {
      try {
        for (int i = 0; i < kPolicyPushes; ++i) {
          push_returned[i] = run.push(tagged(distinct_input(i), "camera", kFirstFrame + i)) ? 1 : 0;
          std::this_thread::sleep_for(1ms);
        }
      } catch (const std::exception& e) {
        producer_failure = e.what();
      }
      run.close_input();
    });
    consumer_failure = pull_until_closed(run, pulled, 5ms);
    producer.join();
  }
  sampler.stop();
  CHECK_EQ(producer_failure, "");
  CHECK_EQ(consumer_failure, "");

  const RunStats stats = run.stats();
  const InputStats& in = stats.input;
  const std::vector<DroppedInput>& drops = drop_log.drops;
  CHECK_EQ(in.pushes, static_cast<std::uint64_t>(kPolicyPushes));
  CHECK_EQ(in.inputs_enqueued + in.inputs_dropped, static_cast<std::uint64_t>(kPolicyPushes));
  CHECK_EQ(drops.size(), in.inputs_dropped);
  CHECK_EQ(stats.outputs_pulled, in.inputs_enqueued);
  CHECK_EQ(pulled.size(), in.inputs_enqueued);
  CHECK_EQ(stats.errors, 0u);
  if (policy == OverflowPolicy::Block) {
    CHECK_EQ(in.inputs_dropped, 0u);
  } else {
    CHECK(in.inputs_dropped > 0);  // otherwise the consumer was not slow enough to test the policy
  }

  // Whatever survived came out once each, in push order, with its own output.
  for (std::size_t k = 0; k < pulled.size(); ++k) {
    const std::int64_t index = pulled[k].frame_id - kFirstFrame;
    CHECK(index >= 0 && index < kPolicyPushes);
    if (k > 0) CHECK(pulled[k].frame_id > pulled[k - 1].frame_id);
    CHECK(same_outputs(pulled[k], tiny_mlp().run({distinct_input(static_cast<int>(index))})));
  }

  if (policy == OverflowPolicy::DropIncoming) {
    // Rejected samples got no input_seq: the survivors are numbered 0, 1, 2, ... with no gap.
    for (std::size_t k = 0; k < pulled.size(); ++k) CHECK_EQ(pulled[k].input_seq, k);
    // The callback named exactly the pushes that returned false.
    std::vector<std::int64_t> refused, reported, delivered;
    for (int i = 0; i < kPolicyPushes; ++i) {
      CHECK(push_returned[i] != -1);
      if (push_returned[i] == 0) refused.push_back(kFirstFrame + i);
    }
    for (const DroppedInput& d : drops) {
      CHECK_EQ(d.reason, DropReason::QueueFull);
      CHECK_EQ(d.stream_id, "camera");
      reported.push_back(d.frame_id);
    }
    CHECK_EQ(reported, refused);
    CHECK_EQ(in.push_failures, refused.size());
    for (const Sample& s : pulled) delivered.push_back(s.frame_id);
    std::vector<std::int64_t> all = delivered;
    all.insert(all.end(), refused.begin(), refused.end());
    std::sort(all.begin(), all.end());
    for (int i = 0; i < kPolicyPushes; ++i) CHECK_EQ(all[i], kFirstFrame + i);
  } else {
    // KeepLatest and Block accept every push, so input_seq i is push i.
    for (int i = 0; i < kPolicyPushes; ++i) CHECK_EQ(push_returned[i], 1);
    CHECK_EQ(in.push_failures, 0u);
    // Evictions take the oldest waiting sample first; evicted and delivered seqs split 0..N-1.
    std::vector<int> seq_seen(kPolicyPushes, 0);
    for (std::size_t k = 0; k < drops.size(); ++k) {
      const DroppedInput& d = drops[k];
      CHECK_EQ(d.reason, DropReason::Evicted);
      CHECK_EQ(d.stream_id, "camera");
      CHECK_EQ(d.frame_id, kFirstFrame + static_cast<std::int64_t>(d.input_seq));
      if (k > 0) CHECK(d.input_seq > drops[k - 1].input_seq);
      CHECK(d.input_seq < static_cast<std::uint64_t>(kPolicyPushes));
      ++seq_seen[d.input_seq];
    }
    for (const Sample& s : pulled) {
      CHECK_EQ(s.frame_id, kFirstFrame + static_cast<std::int64_t>(s.input_seq));
      ++seq_seen[s.input_seq];
    }
    CHECK_EQ(std::count(seq_seen.begin(), seq_seen.end(), 1), kPolicyPushes);
    // The newest sample is never the one evicted.
    CHECK_EQ(pulled.back().frame_id, kFirstFrame + kPolicyPushes - 1);
  }

  // No queue ever exceeded its depth.
  CHECK(in.max_queue_fill > 0.0);
  CHECK(in.max_queue_fill <= 1.0);
  CHECK(sampler.snapshots() > 20);
  CHECK(sampler.max_unpulled_results() <= result_slots);
  CHECK(sampler.max_in_flight() <= static_cast<std::int64_t>(run.capacity()));
  // And the bounds were reached, so the two checks above were tested: the consumer sleeps 5 ms per
  // pull, ample time for the dispatcher to fill every result slot.
  CHECK_EQ(sampler.max_unpulled_results(), result_slots);
}

}  // namespace

TEST(keep_latest_under_a_slow_consumer_with_queue_depth_2) {
  check_policy_under_slow_consumer(OverflowPolicy::KeepLatest, 2, 1);
}
TEST(keep_latest_under_a_slow_consumer_with_queue_depth_3) {
  check_policy_under_slow_consumer(OverflowPolicy::KeepLatest, 3, 1);
}
TEST(keep_latest_under_a_slow_consumer_with_queue_depth_4_and_2_workers) {
  check_policy_under_slow_consumer(OverflowPolicy::KeepLatest, 4, 2);
}
TEST(drop_incoming_under_a_slow_consumer_with_queue_depth_2) {
  check_policy_under_slow_consumer(OverflowPolicy::DropIncoming, 2, 1);
}
TEST(drop_incoming_under_a_slow_consumer_with_queue_depth_3) {
  check_policy_under_slow_consumer(OverflowPolicy::DropIncoming, 3, 1);
}
TEST(drop_incoming_under_a_slow_consumer_with_queue_depth_4_and_2_workers) {
  check_policy_under_slow_consumer(OverflowPolicy::DropIncoming, 4, 2);
}
TEST(block_under_a_slow_consumer_drops_nothing) {
  check_policy_under_slow_consumer(OverflowPolicy::Block, 2, 1);
}

namespace {

// Fills a one-worker Run so that its next push overflows: one sample at a time until every result
// slot is taken (the dispatcher has no credit left and starts nothing more), then queue_depth more
// to fill the input queue. Frames kFirstFrame + 0 .. capacity - 1, input_seq 0 .. capacity - 1.
void fill_to_overflow(Run& run) {
  const std::size_t result_slots = run.capacity() - run.options().queue_depth;
  for (std::size_t i = 0; i < run.capacity(); ++i) {
    CHECK(run.push(tagged(distinct_input(static_cast<int>(i)), "camera", kFirstFrame + static_cast<std::int64_t>(i))));
    if (i < result_slots) wait_until_ready(run, i + 1);
  }
}

struct ThrowingCallback {
  std::vector<DroppedInput> seen;
  void operator()(const DroppedInput& d) {
    seen.push_back(d);
    throw std::runtime_error("camera feed went away");
  }
};

}  // namespace

TEST(keep_latest_callback_that_throws_after_the_sample_was_accepted) {
  auto callback = std::make_shared<ThrowingCallback>();
  RunOptions options = depth_and_workers(2, 1);
  options.overflow_policy = OverflowPolicy::KeepLatest;
  options.on_input_drop = [callback](const DroppedInput& d) { (*callback)(d); };
  Run run = build_tiny_run(options);
  fill_to_overflow(run);
  const std::int64_t capacity = static_cast<std::int64_t>(run.capacity());
  const std::int64_t result_slots = capacity - 2;
  const std::int64_t latest = kFirstFrame + capacity;

  // This push evicts the oldest waiting sample (input_seq result_slots), the callback throws, and
  // push still completes: the new sample is accepted.
  CHECK_THROWS_WITH(run.push(tagged(distinct_input(0), "camera", latest)), CallbackError,
                    "this sample was accepted");
  CHECK_EQ(callback->seen.size(), 1u);
  CHECK_EQ(callback->seen[0].reason, DropReason::Evicted);
  CHECK_EQ(callback->seen[0].input_seq, static_cast<std::uint64_t>(result_slots));
  CHECK_EQ(callback->seen[0].frame_id, kFirstFrame + result_slots);
  InputStats in = run.input_stats();
  CHECK_EQ(in.inputs_enqueued, static_cast<std::uint64_t>(capacity));
  CHECK_EQ(in.inputs_dropped, 1u);

  // Nothing else was lost: everything but the evicted sample comes out, the latest last.
  std::vector<std::int64_t> expected;
  for (std::int64_t i = 0; i < capacity; ++i) {
    if (i != result_slots) expected.push_back(kFirstFrame + i);
  }
  expected.push_back(latest);
  CHECK_EQ(drain_frames(run, kPullTimeoutMs), expected);
  CHECK_EQ(run.stats().outputs_pulled, static_cast<std::uint64_t>(capacity));
}

TEST(drop_incoming_callback_that_throws_after_the_sample_was_rejected) {
  auto callback = std::make_shared<ThrowingCallback>();
  RunOptions options = depth_and_workers(3, 1);
  options.overflow_policy = OverflowPolicy::DropIncoming;
  options.on_input_drop = [callback](const DroppedInput& d) { (*callback)(d); };
  Run run = build_tiny_run(options);
  fill_to_overflow(run);
  const std::int64_t capacity = static_cast<std::int64_t>(run.capacity());

  CHECK_THROWS_WITH(run.push(tagged(distinct_input(0), "camera", kFirstFrame + capacity)), CallbackError,
                    "this sample was not accepted");
  CHECK_EQ(callback->seen.size(), 1u);
  CHECK_EQ(callback->seen[0].reason, DropReason::QueueFull);
  CHECK_EQ(callback->seen[0].frame_id, kFirstFrame + capacity);
  const InputStats in = run.input_stats();
  CHECK_EQ(in.inputs_enqueued, static_cast<std::uint64_t>(capacity));
  CHECK_EQ(in.inputs_dropped, 1u);
  CHECK_EQ(in.push_failures, 1u);

  std::vector<std::int64_t> expected;
  for (std::int64_t i = 0; i < capacity; ++i) expected.push_back(kFirstFrame + i);
  CHECK_EQ(drain_frames(run, kPullTimeoutMs), expected);
}

// ---- 3. order with several workers --------------------------------------------------------------

namespace {

// Pushes `count` distinct samples from a producer thread while the test thread pulls.
std::vector<Sample> push_and_pull(Run& run, int count) {
  std::string producer_failure;
  std::vector<Sample> pulled;
  std::string consumer_failure;
  {
    HangGuard guard("pushing and pulling " + std::to_string(count) + " samples", kHangLimit);
    std::thread producer([&] {
      try {
        for (int i = 0; i < count; ++i) run.push(tagged(distinct_input(i), "s", i));
      } catch (const std::exception& e) {
        producer_failure = e.what();
      }
      run.close_input();
    });
    consumer_failure = pull_until_closed(run, pulled);
    producer.join();
  }
  CHECK_EQ(producer_failure, "");
  CHECK_EQ(consumer_failure, "");
  CHECK_EQ(pulled.size(), static_cast<std::size_t>(count));
  return pulled;
}

constexpr int kOrderSamples = 2000;

const std::vector<Sample>& order_references() {
  static const std::vector<Sample> references = model_outputs(kOrderSamples);
  return references;
}

void check_ordered_workers(int workers) {
  const std::vector<Sample>& references = order_references();
  // Otherwise a result matching its reference would not show it belongs to that input.
  CHECK_EQ(distinct_outputs(references), references.size());
  RunOptions options = depth_and_workers(8, workers);
  Run run = build_tiny_run(options);
  const std::vector<Sample> pulled = push_and_pull(run, kOrderSamples);
  for (int i = 0; i < kOrderSamples; ++i) {
    CHECK_EQ(pulled[i].input_seq, static_cast<std::uint64_t>(i));
    CHECK_EQ(pulled[i].frame_id, i);
    CHECK(same_outputs(pulled[i], references[i]));
  }
}

void check_unordered_workers(int workers) {
  const std::vector<Sample>& references = order_references();
  CHECK_EQ(distinct_outputs(references), references.size());
  RunOptions options = depth_and_workers(8, workers);
  options.ordered = false;
  Run run = build_tiny_run(options);
  const std::vector<Sample> pulled = push_and_pull(run, kOrderSamples);
  std::vector<int> deliveries(kOrderSamples, 0);
  for (const Sample& s : pulled) {
    CHECK(s.frame_id >= 0 && s.frame_id < kOrderSamples);
    // One producer: input_seq is the push index, whatever order the results finish in.
    CHECK_EQ(s.input_seq, static_cast<std::uint64_t>(s.frame_id));
    CHECK(same_outputs(s, references[s.frame_id]));
    ++deliveries[s.frame_id];
  }
  CHECK_EQ(std::count(deliveries.begin(), deliveries.end(), 1), kOrderSamples);
}

}  // namespace

TEST(two_ordered_workers_deliver_in_push_order_bit_identical) { check_ordered_workers(2); }
TEST(three_ordered_workers_deliver_in_push_order_bit_identical) { check_ordered_workers(3); }
TEST(two_unordered_workers_deliver_each_result_once_bit_identical) { check_unordered_workers(2); }
TEST(three_unordered_workers_deliver_each_result_once_bit_identical) { check_unordered_workers(3); }

// ---- 4. dynamic batching ------------------------------------------------------------------------

namespace {

// Not a multiple of 8 or 32, so the last batch is a partial one.
constexpr int kBatchSamples = 250;

// Pushes every sample before pulling any, into a queue deep enough to hold them all, so that the
// dispatcher always finds samples waiting and batches form. Each result must equal the unbatched
// Model::run output for its input (batched GEMMs may round differently, hence the tolerance).
void check_batched(int max_batch, int max_delay_us, int workers, OutputMemory memory) {
  const std::vector<Sample>& references = order_references();
  RunOptions options = depth_and_workers(kBatchSamples, workers);
  options.max_batch = max_batch;
  options.max_delay_us = max_delay_us;
  options.output_memory = memory;
  Run run = build_tiny_run(options);
  CHECK(run.capacity() >= static_cast<std::size_t>(kBatchSamples));  // so no push below waits

  std::vector<Sample> pulled;
  {
    HangGuard guard("a batched run", kHangLimit);
    for (int i = 0; i < kBatchSamples; ++i) CHECK(run.push(tagged(distinct_input(i), "s", i)));
    for (int i = 0; i < kBatchSamples; ++i) {
      std::optional<Sample> r = run.pull(kPullTimeoutMs);
      CHECK(r.has_value());
      pulled.push_back(std::move(*r));
    }
  }
  for (int i = 0; i < kBatchSamples; ++i) {
    const Sample& s = pulled[i];
    CHECK_EQ(s.input_seq, static_cast<std::uint64_t>(i));
    CHECK_EQ(s.frame_id, i);
    CHECK_EQ(s.names, references[i].names);
    CHECK_EQ(s.tensors.size(), 1u);
    CHECK_EQ(s.tensors[0].shape(), (Shape{1, 10}));
    const double difference = max_abs_difference(s.tensors[0], references[i].tensors[0]);
    if (!(difference <= 1e-5)) {
      check::fail(__FILE__, __LINE__, "result " + std::to_string(i) + " differs from Model::run by " +
                                          std::to_string(difference));
    }
  }

  const RunStats stats = run.stats();
  CHECK_EQ(stats.outputs_pulled, static_cast<std::uint64_t>(kBatchSamples));
  CHECK(stats.batches >= 1);
  CHECK(std::fabs(stats.batches * stats.avg_batch_size - kBatchSamples) < 1e-6);
  CHECK(stats.avg_batch_size <= max_batch);
  // With time to gather and 250 samples waiting, inference calls must have taken several at once.
  if (max_delay_us > 0) CHECK(stats.avg_batch_size > 1.0);
}

}  // namespace

TEST(batches_of_8_with_500us_delay_match_unbatched_results) { check_batched(8, 500, 1, OutputMemory::Owned); }
TEST(batches_of_8_with_no_delay_match_unbatched_results) { check_batched(8, 0, 1, OutputMemory::Owned); }
TEST(batches_of_32_with_500us_delay_match_unbatched_results) { check_batched(32, 500, 1, OutputMemory::Owned); }
TEST(batches_of_32_with_no_delay_match_unbatched_results) { check_batched(32, 0, 1, OutputMemory::Owned); }
TEST(batches_of_8_on_2_workers_match_unbatched_results) { check_batched(8, 500, 2, OutputMemory::Owned); }
TEST(batches_of_8_on_2_workers_with_no_delay_match_unbatched_results) { check_batched(8, 0, 2, OutputMemory::Owned); }
TEST(batches_of_32_on_2_workers_match_unbatched_results) { check_batched(32, 500, 2, OutputMemory::Owned); }
TEST(batches_of_32_on_2_workers_with_no_delay_match_unbatched_results) { check_batched(32, 0, 2, OutputMemory::Owned); }
TEST(pooled_batches_of_8_match_unbatched_results) { check_batched(8, 500, 1, OutputMemory::Pooled); }
TEST(pooled_batches_of_32_on_2_workers_match_unbatched_results) { check_batched(32, 500, 2, OutputMemory::Pooled); }

namespace {

// A temporary ONNX model whose input and output are fixed at batch 1: y = relu(x), x float32 [1, 4].
// Written by the same Python (and onnx package) that generates the built-in models.
class StaticBatchModelFile {
 public:
  StaticBatchModelFile()
      : path_((std::filesystem::temp_directory_path() /
               ("ringflow-test-" + std::to_string(::getpid()) + "-static-batch.onnx"))
                  .string()) {
    const std::string script =
        "import sys, onnx\n"
        "from onnx import helper, TensorProto\n"
        "x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 4])\n"
        "y = helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 4])\n"
        "graph = helper.make_graph([helper.make_node('Relu', ['x'], ['y'])], 'static_batch', [x], [y])\n"
        "model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])\n"
        "model.ir_version = 8\n"
        "onnx.save(model, sys.argv[1])\n";
    const std::string command =
        ringflow::support::shell_quote(RINGFLOW_PYTHON) + " -c " + ringflow::support::shell_quote(script) + " " +
        ringflow::support::shell_quote(path_);
    if (std::system(command.c_str()) != 0) throw std::runtime_error("could not write a model with: " + command);
  }
  ~StaticBatchModelFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace

TEST(max_batch_on_a_model_without_a_dynamic_batch_dimension_is_a_shape_error) {
  const StaticBatchModelFile file;
  const Model model(file.path());
  CHECK_EQ(model.input_specs()[0].shape, (Shape{1, 4}));
  const std::vector<Tensor> seed{Tensor::allocate(DType::Float32, {1, 4})};
  RunOptions options;
  options.max_batch = 2;
  CHECK_THROWS_WITH(Graph().add(model.graph()).build(seed, options), ShapeError, "dynamic batch dimension");
  // The same model runs unbatched, so the error is about batching and not the model.
  options.max_batch = 1;
  Run run = Graph().add(model.graph()).build(seed, options);
  run.push(seed);
  CHECK(run.pull(kPullTimeoutMs).has_value());
}

// resnet50 frames of several sizes, preprocessed by the dispatcher and inferred in batches of up to
// 4: each result equals Model::run on its frame alone.
TEST(resnet50_batches_of_4_with_preprocessing_match_unbatched_results) {
  const Model& model = resnet50_for_rgb_frames();
  const std::vector<Tensor> frames{gradient_frame(224, 224), gradient_frame(100, 120), gradient_frame(150, 200),
                                   gradient_frame(224, 180), gradient_frame(64, 64),   gradient_frame(200, 100)};
  RunOptions options = depth_and_workers(8, 1);
  options.max_batch = 4;
  options.max_delay_us = 200000;  // ample time for all frames to be pushed, so a batch of 4 forms
  Run run = Graph().add(model.graph()).build(std::vector<Tensor>{frames[0]}, options);

  std::vector<Sample> pulled;
  {
    HangGuard guard("batched resnet50", std::chrono::seconds(60));
    for (std::size_t i = 0; i < frames.size(); ++i) CHECK(run.push(tagged(frames[i], "cam", static_cast<std::int64_t>(i))));
    for (std::size_t i = 0; i < frames.size(); ++i) {
      std::optional<Sample> r = run.pull(60000);
      CHECK(r.has_value());
      pulled.push_back(std::move(*r));
    }
  }
  std::vector<Sample> references;
  for (const Tensor& frame : frames) references.push_back(model.run({frame}));
  for (std::size_t i = 0; i < frames.size(); ++i) {
    CHECK_EQ(pulled[i].frame_id, static_cast<std::int64_t>(i));
    CHECK_EQ(pulled[i].tensors.at(0).shape(), (Shape{1, 1000}));
    const double difference = max_abs_difference(pulled[i].tensors[0], references[i].tensors[0]);
    if (!(difference <= 1e-4)) {
      check::fail(__FILE__, __LINE__, "frame " + std::to_string(i) + " differs from Model::run by " +
                                          std::to_string(difference));
    }
  }
  // The frames give clearly different outputs, so agreement within 1e-4 identifies each.
  CHECK(max_abs_difference(references[0].tensors[0], references[1].tensors[0]) > 1e-2);
  const RunStats stats = run.stats();
  CHECK(stats.avg_batch_size > 1.0);
  CHECK(std::fabs(stats.batches * stats.avg_batch_size - static_cast<double>(frames.size())) < 1e-6);
}

// ---- 5. pooled outputs --------------------------------------------------------------------------

namespace {

// Holds the first result of a Pooled Run while 500 more go through, each released as soon as it is
// pulled. The held result must keep its bytes and its buffer; the released ones must share a few.
void check_pooled_reuse(int max_batch, int max_delay_us) {
  constexpr int kMore = 500;
  RunOptions options = depth_and_workers(4, 1);
  options.output_memory = OutputMemory::Pooled;
  options.max_batch = max_batch;
  options.max_delay_us = max_delay_us;
  Run run = build_tiny_run(options);

  // With batching, hold a result from the middle of a batch: its buffer is shared with siblings that
  // are released at once.
  const int held_index = max_batch > 1 ? 3 : 0;
  std::optional<Sample> held;
  {
    HangGuard guard("pulling the result to hold", kHangLimit);
    for (int i = 0; i <= held_index; ++i) CHECK(run.push(tagged(distinct_input(i), "s", i)));
    for (int i = 0; i <= held_index; ++i) {
      std::optional<Sample> r = run.pull(kPullTimeoutMs);
      CHECK(r.has_value());
      if (i == held_index) held = std::move(r);
    }
  }
  const std::string held_bytes = bytes_of(held->tensors[0]);
  const void* held_pointer = data_pointer(*held);
  CHECK_EQ(held_bytes, bytes_of(tiny_mlp().run({distinct_input(held_index)}).tensors[0]));

  // Released results: their data pointers, seen while each was alive.
  std::set<const void*> released_pointers;
  int held_pointer_reused = 0;
  int wrong_results = 0;
  std::string producer_failure;
  {
    HangGuard guard("pushing and pulling past a held pooled result", kHangLimit);
    std::thread producer([&] {
      try {
        for (int i = 1; i <= kMore; ++i) run.push(tagged(distinct_input(held_index + i), "s", held_index + i));
      } catch (const std::exception& e) {
        producer_failure = e.what();
      }
    });
    for (int i = 1; i <= kMore; ++i) {
      const std::optional<Sample> r = run.pull(kPullTimeoutMs);
      if (!r) {
        run.close_input();  // release the producer; the pulled count below reports the shortfall
        break;
      }
      const void* pointer = data_pointer(*r);
      released_pointers.insert(pointer);
      held_pointer_reused += pointer == held_pointer;
      // Spot-check contents too: a buffer handed out twice would show another sample's numbers.
      if (i % 50 == 0) wrong_results += !same_outputs(*r, tiny_mlp().run({distinct_input(held_index + i)}));
    }  // each result is released here, before the next pull
    producer.join();
  }
  CHECK_EQ(producer_failure, "");
  CHECK_EQ(run.stats().outputs_pulled, static_cast<std::uint64_t>(held_index + 1 + kMore));
  CHECK_EQ(wrong_results, 0);
  CHECK_EQ(bytes_of(held->tensors[0]), held_bytes);
  CHECK_EQ(data_pointer(*held), held_pointer);
  CHECK_EQ(held_pointer_reused, 0);
  CHECK(!released_pointers.empty());
  // Released buffers go back to the pool and come out again: a handful serve all 500 samples. At
  // most one per result slot is in use, plus the one the consumer is looking at. With batching there
  // is a pool per batch size, and which sizes occur depends on scheduling, so no such bound holds.
  if (max_batch == 1) CHECK(released_pointers.size() <= run.capacity() + 2);
}

}  // namespace

TEST(a_held_pooled_result_is_never_reused_and_released_buffers_are) { check_pooled_reuse(1, 0); }
TEST(a_held_pooled_result_from_a_batch_is_never_reused) { check_pooled_reuse(8, 500); }

// ---- 6. statistics ------------------------------------------------------------------------------

namespace {

constexpr int kStatsSamples = 1000;

const StageStats* find_stage(const RunStats& stats, const std::string& name) {
  for (const StageStats& s : stats.stages) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

// After a drained run of kStatsSamples, every counter is exact.
void check_exact_counters(const RunStats& stats) {
  const auto n = static_cast<std::uint64_t>(kStatsSamples);
  CHECK_EQ(stats.input.pushes, n);
  CHECK_EQ(stats.input.push_failures, 0u);
  CHECK_EQ(stats.input.inputs_enqueued, n);
  CHECK_EQ(stats.input.inputs_dropped, 0u);
  CHECK_EQ(stats.outputs_ready, n);
  CHECK_EQ(stats.outputs_pulled, n);
  CHECK_EQ(stats.errors, 0u);
  CHECK(stats.batches >= 1);
  CHECK(std::fabs(stats.batches * stats.avg_batch_size - static_cast<double>(n)) < 1e-6);
  CHECK(stats.input.avg_push_us > 0);
  CHECK(stats.input.max_queue_fill > 0 && stats.input.max_queue_fill <= 1.0);
  CHECK(stats.input.avg_queue_fill <= stats.input.max_queue_fill);
  CHECK(stats.elapsed_s > 0);
  CHECK(stats.throughput_fps > 0);
}

RunStats drained_run_stats(RunOptions options) {
  Run run = build_tiny_run(options);
  push_and_pull(run, kStatsSamples);
  CHECK_EQ(run.pull_with_status(kPullTimeoutMs).status, PullStatus::Closed);
  return run.stats();
}

}  // namespace

TEST(stats_after_a_drained_run_are_exact_and_consistent) {
  const RunStats stats = drained_run_stats(depth_and_workers(8, 1));
  check_exact_counters(stats);

  const LatencySummary& latency = stats.latency;
  CHECK_EQ(latency.count, stats.outputs_pulled);
  CHECK(latency.min_ms > 0);
  CHECK(latency.min_ms <= latency.p50_ms);
  CHECK(latency.p50_ms <= latency.p90_ms);
  CHECK(latency.p90_ms <= latency.p99_ms);
  CHECK(latency.p99_ms <= latency.max_ms);
  CHECK(latency.avg_ms >= latency.min_ms && latency.avg_ms <= latency.max_ms);

  std::vector<std::string> names;
  for (const StageStats& s : stats.stages) names.push_back(s.name);
  CHECK_EQ(names, (std::vector<std::string>{"preprocess", "inference", "postprocess", "reorder"}));
  for (const StageStats& s : stats.stages) {
    CHECK_EQ(s.samples, stats.outputs_pulled);
    CHECK(s.avg_wait_ms >= 0 && s.avg_compute_ms >= 0);
  }
  CHECK(find_stage(stats, "inference")->avg_compute_ms > 0);
}

TEST(stats_of_a_batched_run_with_2_workers_count_every_sample_once) {
  RunOptions options = depth_and_workers(16, 2);
  options.max_batch = 8;
  options.max_delay_us = 200;
  const RunStats stats = drained_run_stats(options);
  check_exact_counters(stats);
  CHECK_EQ(stats.latency.count, stats.outputs_pulled);
  for (const StageStats& s : stats.stages) CHECK_EQ(s.samples, stats.outputs_pulled);
}

TEST(stats_without_metrics_keep_exact_counters_and_no_timings) {
  RunOptions options = depth_and_workers(8, 1);
  options.enable_metrics = false;
  const RunStats stats = drained_run_stats(options);
  check_exact_counters(stats);
  CHECK_EQ(stats.latency.count, 0u);
  for (const StageStats& s : stats.stages) CHECK_EQ(s.samples, 0u);
}

TEST(stats_render_as_json_and_text) {
  const RunStats stats = drained_run_stats(depth_and_workers(8, 1));
  const std::string json = stats.to_json();
  CHECK(!json.empty() && json.front() == '{' && json.back() == '}');
  CHECK(JsonSyntax::valid(json));
  for (const char* key : {"\"input\":{", "\"pushes\":1000", "\"push_failures\":0", "\"inputs_enqueued\":1000",
                          "\"inputs_dropped\":0", "\"outputs_ready\":1000", "\"outputs_pulled\":1000",
                          "\"errors\":0", "\"batches\":", "\"avg_batch_size\":", "\"latency_ms\":{\"count\":1000",
                          "\"p50\":", "\"p90\":", "\"p99\":", "\"stages\":[", "\"name\":\"preprocess\"",
                          "\"name\":\"reorder\"", "\"elapsed_s\":", "\"throughput_fps\":"}) {
    if (!contains(json, key)) check::fail(__FILE__, __LINE__, std::string("to_json() lacks ") + key + ": " + json);
  }
  const std::string text = stats.to_text();
  CHECK(contains(text, "pushes=1000"));
  CHECK(contains(text, "pulled=1000"));
  CHECK(contains(text, "count=1000"));
  CHECK(contains(text, "stage:    inference samples=1000"));
  // A Run that has seen nothing renders valid JSON too (no NaN from dividing by zero).
  CHECK(JsonSyntax::valid(build_tiny_run({}).stats().to_json()));
}

// ---- 7. Model::benchmark and synthetic inputs --------------------------------------------------

TEST(benchmark_reports_latency_and_throughput_per_worker_count) {
  const BenchmarkReport report = tiny_mlp().benchmark(200);
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  CHECK_EQ(report.samples, 200);
  CHECK(report.latency_ms > 0);
  CHECK(report.latency_p90_ms >= report.latency_ms);
  CHECK(report.fps > 0);
  CHECK(report.best_workers >= 1 && report.best_workers <= cores);
  CHECK_EQ(report.fps_by_workers.size(), static_cast<std::size_t>(cores));
  double best = 0;
  int best_workers = 0;
  for (std::size_t i = 0; i < report.fps_by_workers.size(); ++i) {
    CHECK_EQ(report.fps_by_workers[i].first, static_cast<int>(i) + 1);
    CHECK(report.fps_by_workers[i].second > 0);
    if (report.fps_by_workers[i].second > best) {
      best = report.fps_by_workers[i].second;
      best_workers = report.fps_by_workers[i].first;
    }
  }
  // The headline figures are the best of the sweep.
  CHECK_EQ(report.fps, best);
  CHECK_EQ(report.best_workers, best_workers);
  CHECK(JsonSyntax::valid(report.to_json()));
  CHECK(contains(report.to_text(), "best:"));
}

TEST(synthetic_inputs_are_deterministic_and_match_the_input_specs) {
  const Model& model = tiny_mlp();
  const std::vector<Tensor> a = model.synthetic_inputs(7);
  const std::vector<Tensor> again = model.synthetic_inputs(7);
  const std::vector<Tensor> other = model.synthetic_inputs(8);
  CHECK_EQ(a.size(), model.input_specs().size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    const TensorSpec& spec = model.input_specs()[i];
    CHECK_EQ(a[i].dtype(), spec.dtype);
    Shape expected = spec.shape;
    for (std::int64_t& d : expected) d = d < 0 ? 1 : d;  // dynamic dimensions become 1
    CHECK_EQ(a[i].shape(), expected);
    CHECK_EQ(bytes_of(a[i]), bytes_of(again[i]));
    CHECK(bytes_of(a[i]) != bytes_of(other[i]));
  }
  // They run, on the model and on a Run negotiated from them.
  CHECK_EQ(model.run(a).tensors.at(0).shape(), (Shape{1, 10}));
  // A preprocessing model takes a frame: uint8 [max_height, max_width, depth].
  const std::vector<Tensor> frame = resnet50_for_rgb_frames().synthetic_inputs(7);
  CHECK_EQ(frame.size(), 1u);
  CHECK_EQ(frame[0].dtype(), DType::UInt8);
  CHECK_EQ(frame[0].shape(), (Shape{224, 224, 3}));
  CHECK_EQ(bytes_of(frame[0]), bytes_of(resnet50_for_rgb_frames().synthetic_inputs(7)[0]));
  CHECK(bytes_of(frame[0]) != bytes_of(resnet50_for_rgb_frames().synthetic_inputs(8)[0]));
}

// ---- 8. presets ---------------------------------------------------------------------------------

TEST(presets_trade_latency_against_completeness) {
  const RunOptions realtime = RunOptions::Realtime();
  const RunOptions balanced = RunOptions::Balanced();
  const RunOptions reliable = RunOptions::Reliable();
  CHECK_EQ(realtime.overflow_policy, OverflowPolicy::KeepLatest);
  CHECK_EQ(balanced.overflow_policy, OverflowPolicy::Block);
  CHECK_EQ(reliable.overflow_policy, OverflowPolicy::Block);
  CHECK(realtime.queue_depth < balanced.queue_depth);
  CHECK(reliable.queue_depth > balanced.queue_depth);
  // Balanced is the default.
  CHECK_EQ(balanced.queue_depth, RunOptions().queue_depth);
  CHECK_EQ(balanced.overflow_policy, RunOptions().overflow_policy);
}

// Realtime never makes a push wait: with nobody pulling, pushes go on being accepted while the
// oldest waiting frames are dropped, and the newest frame always survives.
TEST(a_realtime_run_accepts_every_push_and_keeps_the_newest_frame) {
  Run run = build_tiny_run(RunOptions::Realtime());
  constexpr int kPushes = 50;
  {
    HangGuard guard("pushing into a Realtime run nobody pulls", kHangLimit);
    for (int i = 0; i < kPushes; ++i) CHECK(run.push(tagged(distinct_input(i), "live", i)));
  }
  const InputStats in = run.input_stats();
  CHECK_EQ(in.inputs_enqueued + in.inputs_dropped, static_cast<std::uint64_t>(kPushes));
  CHECK(in.inputs_enqueued <= run.capacity());
  CHECK(in.inputs_dropped >= kPushes - run.capacity());
  const std::vector<std::int64_t> frames = drain_frames(run, kPullTimeoutMs);
  CHECK_EQ(frames.size(), in.inputs_enqueued);
  CHECK_EQ(frames.back(), kPushes - 1);
  for (std::size_t k = 1; k < frames.size(); ++k) CHECK(frames[k] > frames[k - 1]);
}

int main(int argc, char** argv) {
  if (const char* child = std::getenv(kChildTestVariable)) return run_child_test(child);
  return check::run_all(argc, argv);
}

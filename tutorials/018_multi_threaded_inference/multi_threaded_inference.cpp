// Many threads, one model: every thread runs inference on its own frames through one shared Model
// (one set of weights, one ONNX Runtime session, which is safe to call concurrently). Results are
// reported in the order each thread's inputs were given, and checked against a single-threaded run.
//
// Usage: tutorial_018_multi_threaded_inference [--model <path.onnx>] [--threads 3] [--frames 4]
#include <iostream>
#include <sstream>
#include <thread>
#include <vector>

#include "ringflow/ringflow.hpp"
#include "tutorial.hpp"

namespace {

// Thread t's k-th frame: a grey level of its own, so every thread has different inputs.
std::uint8_t level_for(int thread, int frame) { return static_cast<std::uint8_t>((25 + 70 * thread + 13 * frame) % 256); }

}  // namespace

int main(int argc, char** argv) {
  return tutorial::run("018_multi_threaded_inference", [&] {
    std::string model_path;
    if (!tutorial::get_arg(argc, argv, "--model", model_path)) model_path = tutorial::builtin_model("resnet50");
    const int threads = tutorial::int_arg(argc, argv, "--threads", 3);
    const int frames = tutorial::int_arg(argc, argv, "--frames", 4);

    ringflow::Model::Options options;
    options.preprocess = ringflow::PreprocessOptions::imagenet();
    const ringflow::Model model(model_path, options);

    std::vector<std::vector<int>> top1(threads, std::vector<int>(frames));
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        for (int k = 0; k < frames; ++k) top1[t][k] = tutorial::top1(model.run({tutorial::gray_frame(224, level_for(t, k))}));
      });
    }
    for (std::thread& th : pool) th.join();

    bool match = true;
    for (int t = 0; t < threads; ++t) {
      std::ostringstream line;
      line << "thread=" << t << " frames=" << frames << " top1=";
      for (int k = 0; k < frames; ++k) {
        line << (k ? "," : "") << top1[t][k];
        match &= top1[t][k] == tutorial::top1(model.run({tutorial::gray_frame(224, level_for(t, k))}));
      }
      std::cout << line.str() << "\n";
    }
    std::cout << "match_single_threaded=" << (match ? "true" : "false") << "\n";
    if (!match) throw std::runtime_error("concurrent results differ from single-threaded ones");
  });
}

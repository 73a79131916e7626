// Benchmark a model: single-flight latency, then async throughput at each worker count, on
// deterministic synthetic inputs built from the model's input specs.
//
// Usage: tutorial_003_benchmark_your_model [--model <path.onnx>] [--samples <count>]
#include <cstdio>
#include <iostream>

#include "ringflow/ringflow.hpp"
#include "tutorial.hpp"

int main(int argc, char** argv) {
  return tutorial::run("003_benchmark_your_model", [&] {
    std::string model_path;
    if (!tutorial::get_arg(argc, argv, "--model", model_path)) model_path = tutorial::builtin_model("resnet50");
    const int samples = tutorial::int_arg(argc, argv, "--samples", 16);

    ringflow::Model model(model_path);
    const ringflow::BenchmarkReport report = model.benchmark(samples);

    std::cout << report.to_text();
    std::printf("report_latency_ms=%.3f\n", report.latency_ms);
    std::printf("report_fps=%.1f\n", report.fps);
  });
}

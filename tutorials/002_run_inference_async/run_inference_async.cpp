// Asynchronous push/pull: a producer thread pushes N frames and closes the input; the main thread
// pulls results as they come.
//
// Usage: tutorial_002_run_inference_async [--model <path.onnx>] [--image <path>] [--n <count>]
#include <atomic>
#include <exception>
#include <iostream>
#include <thread>

#include "ringflow/ringflow.hpp"
#include "tutorial.hpp"

int main(int argc, char** argv) {
  return tutorial::run("002_run_inference_async", [&] {
    std::string model_path, image;
    if (!tutorial::get_arg(argc, argv, "--model", model_path)) model_path = tutorial::builtin_model("resnet50");
    tutorial::get_arg(argc, argv, "--image", image);
    const int n = tutorial::int_arg(argc, argv, "--n", 4);
    const ringflow::Tensor frame = image.empty() ? tutorial::gray_frame(224, 99) : tutorial::load_rgb(image);

    ringflow::Model::Options options;
    options.preprocess = ringflow::PreprocessOptions::imagenet(
        std::max<int>(224, static_cast<int>(frame.shape()[1])),
        std::max<int>(224, static_cast<int>(frame.shape()[0])));
    ringflow::Model model(model_path, options);

    // Expose the model's input and output so the Run can be pushed to and pulled from.
    ringflow::Model::RouteOptions route;
    route.include_input = true;
    route.include_output = true;
    ringflow::Graph graph;
    graph.add(model.graph(route));
    // The seed frame fixes the shapes the Run negotiates and warms the model up.
    ringflow::Run run = graph.build({frame});

    std::atomic<int> pushed{0};
    std::exception_ptr producer_error;
    std::thread producer([&] {
      try {
        for (int i = 0; i < n; ++i) {
          run.push({frame});  // waits while the Run is full
          pushed.fetch_add(1, std::memory_order_relaxed);
        }
      } catch (...) {
        producer_error = std::current_exception();
      }
      run.close_input();  // results already pushed still arrive
    });

    int pulled = 0;
    for (;;) {
      ringflow::PullResult result = run.pull_with_status(/*timeout_ms=*/2000);
      if (result.status == ringflow::PullStatus::Closed) break;     // end of stream
      if (result.status == ringflow::PullStatus::Timeout) continue;  // still computing
      if (result.status == ringflow::PullStatus::Error) throw ringflow::InferenceError(result.error);
      std::cout << "top1=" << tutorial::top1(*result.sample) << "\n";
      ++pulled;
    }
    producer.join();
    if (producer_error) std::rethrow_exception(producer_error);

    std::cout << "pushed=" << pushed.load() << " pulled=" << pulled << "\n";
    if (pulled != n) {
      throw std::runtime_error("pulled=" + std::to_string(pulled) + " != pushed=" + std::to_string(n));
    }
  });
}

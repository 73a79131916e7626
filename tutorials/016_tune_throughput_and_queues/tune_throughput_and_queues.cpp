// Queue depth and overflow policy under a burst: try_push faster than the model can keep up, then
// close the input, drain, and read what the Run measured.
//
// Usage: tutorial_016_tune_throughput_and_queues [--model <path.onnx>] [--iters 32] [--queue 4]
//                                                [--drop block|latest|incoming]
#include <cstdio>
#include <iostream>
#include <thread>

#include "ringflow/ringflow.hpp"
#include "tutorial.hpp"

int main(int argc, char** argv) {
  return tutorial::run("016_tune_throughput_and_queues", [&] {
    std::string model_path, drop = "block";
    if (!tutorial::get_arg(argc, argv, "--model", model_path)) model_path = tutorial::builtin_model("resnet50");
    tutorial::get_arg(argc, argv, "--drop", drop);
    const int iters = tutorial::int_arg(argc, argv, "--iters", 32);
    const int queue = tutorial::int_arg(argc, argv, "--queue", 4);

    ringflow::RunOptions options;
    options.queue_depth = static_cast<std::size_t>(queue);
    if (drop == "block") {
      options.overflow_policy = ringflow::OverflowPolicy::Block;
    } else if (drop == "latest") {
      options.overflow_policy = ringflow::OverflowPolicy::KeepLatest;
    } else if (drop == "incoming") {
      options.overflow_policy = ringflow::OverflowPolicy::DropIncoming;
    } else {
      throw std::runtime_error("--drop must be block, latest or incoming; got '" + drop + "'");
    }

    ringflow::Model::Options model_options;
    model_options.preprocess = ringflow::PreprocessOptions::imagenet();
    ringflow::Model model(model_path, model_options);
    ringflow::Graph graph;
    graph.add(model.graph());
    const ringflow::Tensor frame = tutorial::gray_frame(224, 99);
    ringflow::Run run = graph.build({frame}, options);

    // A consumer drains results while the burst runs, so Block has somewhere to make room.
    std::thread consumer([&] {
      while (run.pull_with_status(/*timeout_ms=*/5000).status != ringflow::PullStatus::Closed) {
      }
    });
    // The burst: try_push never waits. Under Block a full queue makes it return false, and we fall
    // back to push(), which waits for room; the other policies drop instead, and count it.
    for (int i = 0; i < iters; ++i) {
      ringflow::Sample sample = ringflow::make_sample({frame});
      sample.frame_id = i;
      if (!run.try_push(sample) && options.overflow_policy == ringflow::OverflowPolicy::Block) {
        run.push(sample);
      }
    }
    run.close_input();
    consumer.join();

    const ringflow::RunStats stats = run.stats();
    std::cout << "inputs_enqueued=" << stats.input.inputs_enqueued << "\n";
    std::cout << "inputs_dropped=" << stats.input.inputs_dropped << "\n";
    std::cout << "outputs_pulled=" << stats.outputs_pulled << "\n";
    std::printf("avg_latency_ms=%.3f\n", stats.latency.avg_ms);
    std::printf("avg_push_us=%.3f\n", stats.input.avg_push_us);

    if (stats.input.inputs_enqueued + stats.input.inputs_dropped != static_cast<std::uint64_t>(iters)) {
      throw std::runtime_error("enqueued + dropped != pushed");
    }
    if (stats.outputs_pulled != stats.input.inputs_enqueued) throw std::runtime_error("pulled != enqueued");
  });
}

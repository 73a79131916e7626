// A production-shaped pipeline: a camera thread pushes frames with their stream id, frame id and
// timestamp; a consumer thread pulls results; shutdown closes the input and drains every result
// before the Run is destroyed. Queue depth 8, Block (nothing dropped), Owned outputs.
//
// Usage: tutorial_017_production_pipeline [--model <path.onnx>] [--frames 24]
#include <atomic>
#include <exception>
#include <iostream>
#include <map>
#include <thread>
#include <vector>

#include "ringflow/ringflow.hpp"
#include "tutorial.hpp"

int main(int argc, char** argv) {
  return tutorial::run("017_production_pipeline", [&] {
    std::string model_path;
    if (!tutorial::get_arg(argc, argv, "--model", model_path)) model_path = tutorial::builtin_model("resnet50");
    const int frames = tutorial::int_arg(argc, argv, "--frames", 24);

    ringflow::Model::Options model_options;
    model_options.preprocess = ringflow::PreprocessOptions::imagenet();
    ringflow::Model model(model_path, model_options);

    ringflow::RunOptions options;
    options.queue_depth = 8;
    options.overflow_policy = ringflow::OverflowPolicy::Block;
    options.output_memory = ringflow::OutputMemory::Owned;
    ringflow::Graph graph;
    graph.add(model.graph());
    // A "scene" of four grey levels, repeating: each level must always get the same class.
    const std::vector<std::uint8_t> levels = {20, 99, 160, 230};
    ringflow::Run run = graph.build({tutorial::gray_frame(224, levels[0])}, options);

    std::exception_ptr camera_error;
    std::thread camera([&] {
      try {
        for (int i = 0; i < frames; ++i) {
          ringflow::Sample sample = ringflow::make_sample({tutorial::gray_frame(224, levels[i % levels.size()])});
          sample.stream_id = "cam0";
          sample.frame_id = i;
          sample.pts_ns = static_cast<std::int64_t>(i) * 33'333'333;  // 30 fps
          run.push(std::move(sample));
        }
      } catch (...) {
        camera_error = std::current_exception();
      }
      run.close_input();  // shutdown: no more frames, but every accepted one is still delivered
    });

    std::map<int, int> top1_by_level;
    int results = 0, errors = 0, out_of_order = 0, inconsistent = 0;
    std::int64_t last_frame = -1;
    std::thread consumer([&] {
      for (;;) {
        ringflow::PullResult r = run.pull_with_status(/*timeout_ms=*/1000);
        if (r.status == ringflow::PullStatus::Closed) break;
        if (r.status == ringflow::PullStatus::Timeout) continue;
        if (r.status == ringflow::PullStatus::Error) {
          std::cerr << "frame " << r.sample->frame_id << " failed: " << r.error << "\n";
          ++errors;
          continue;
        }
        const ringflow::Sample& out = *r.sample;
        if (out.frame_id <= last_frame || out.stream_id != "cam0") ++out_of_order;
        last_frame = out.frame_id;
        const int level = levels[static_cast<std::size_t>(out.frame_id) % levels.size()];
        const int top1 = tutorial::top1(out);
        auto [it, inserted] = top1_by_level.emplace(level, top1);
        if (!inserted && it->second != top1) ++inconsistent;
        ++results;
      }
    });
    camera.join();
    consumer.join();
    if (camera_error) std::rethrow_exception(camera_error);

    const ringflow::RunStats stats = run.stats();
    std::cout << "frames_pushed=" << frames << "\n";
    std::cout << "results=" << results << "\n";
    std::cout << "errors=" << errors << "\n";
    std::cout << "dropped=" << stats.input.inputs_dropped << "\n";
    std::cout << "in_order=" << (out_of_order == 0 ? "true" : "false") << "\n";
    for (const auto& [level, top1] : top1_by_level) std::cout << "level=" << level << " top1=" << top1 << "\n";
    if (results != frames || errors || out_of_order || inconsistent || stats.input.inputs_dropped) {
      throw std::runtime_error("the pipeline lost, reordered or mixed up results");
    }
  });
}

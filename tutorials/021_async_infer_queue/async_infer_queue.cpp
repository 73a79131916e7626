// OpenVINO's AsyncInferQueue loop on ringflow: N frames go to start_async() with their userdata
// (frame id, start time); a callback per finished request computes the top-1 class and the running
// FPS. ordered = true delivers the callbacks in submission order, so every run prints the same lines.
//
// Usage: tutorial_021_async_infer_queue [--model <path.onnx>] [--n <count>]
#include <algorithm>
#include <any>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <map>
#include <stdexcept>
#include <vector>

#include "ringflow/ringflow.hpp"
#include "tutorial.hpp"

namespace {

using Clock = std::chrono::steady_clock;

// The userdata each frame travels with, as the notebook's (frame, start_time) tuple.
struct FrameInfo {
  int frame_id;
  Clock::time_point start_time;
};

int argmax(const ringflow::Tensor& logits) {
  const ringflow::Mapping m = logits.map_read();
  const auto* p = static_cast<const float*>(m.data);
  return static_cast<int>(std::max_element(p, p + m.size_bytes / sizeof(float)) - p);
}

}  // namespace

int main(int argc, char** argv) {
  return tutorial::run("021_async_infer_queue", [&] {
    std::string model_path;
    if (!tutorial::get_arg(argc, argv, "--model", model_path)) model_path = tutorial::builtin_model("resnet50");
    const int n = tutorial::int_arg(argc, argv, "--n", 16);
    if (n < 0) throw std::runtime_error("--n must be at least 0, got " + std::to_string(n));

    ringflow::Model::Options model_options;
    model_options.preprocess = ringflow::PreprocessOptions::imagenet();
    ringflow::Model model(model_path, model_options);

    // jobs = 0: two requests per core. ordered = true: callbacks in submission order.
    ringflow::AsyncInferQueue queue(model, /*jobs=*/0, /*ordered=*/true);

    // A "scene" of four grey levels, repeating: each level must always get the same class.
    const std::vector<std::uint8_t> levels = {20, 99, 160, 230};
    // The callback runs on the queue's report thread, one request at a time. The main thread reads
    // these only after wait_all(), once the last callback has returned.
    int completed = 0, failed = 0, out_of_order = 0, inconsistent = 0;
    double fps = 0;
    std::map<int, int> top1_by_level;
    queue.set_callback([&](ringflow::InferRequest& request, std::any& userdata) {
      const auto& [frame_id, start_time] = std::any_cast<const FrameInfo&>(userdata);
      if (frame_id != completed + failed) ++out_of_order;
      if (!request.error().empty()) {
        std::cerr << "frame " << frame_id << " failed: " << request.error() << "\n";
        ++failed;
        return;
      }
      ++completed;
      fps = completed / std::chrono::duration<double>(Clock::now() - start_time).count();
      const int top1 = argmax(request.get_output_tensor(0));
      const int level = levels[static_cast<std::size_t>(frame_id) % levels.size()];
      if (top1_by_level.emplace(level, top1).first->second != top1) ++inconsistent;
      std::cout << "frame=" << frame_id << " top1=" << top1 << "\n";
    });

    const Clock::time_point start_time = Clock::now();
    for (int i = 0; i < n; ++i) {
      const ringflow::Tensor frame = tutorial::gray_frame(224, levels[static_cast<std::size_t>(i) % levels.size()]);
      queue.start_async({frame}, FrameInfo{i, start_time});  // waits only while every job is busy
    }
    queue.wait_all();

    std::printf("fps=%.1f\n", fps);  // measured: CTest compares only its key
    std::cout << "completed=" << completed << " in_order=" << (out_of_order == 0 ? "true" : "false") << "\n";
    if (completed != n || failed || out_of_order || inconsistent) {
      throw std::runtime_error("the queue lost, reordered or mixed up results");
    }
  });
}

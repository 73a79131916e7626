// Results by callback, AscendCL style: the main thread pushes N frames and never pulls; every K
// results reach a callback on the Run's report thread, together and in push order. Outputs are
// Pooled: the buffers a callback does not keep go back to the pool when it returns.
//
// Usage: tutorial_020_callbacks_every_n [--model <path.onnx>] [--n <count>] [--every <k>]
#include <cstdint>
#include <iostream>
#include <set>
#include <stdexcept>
#include <vector>

#include "ringflow/ringflow.hpp"
#include "tutorial.hpp"

int main(int argc, char** argv) {
  return tutorial::run("020_callbacks_every_n", [&] {
    std::string model_path;
    if (!tutorial::get_arg(argc, argv, "--model", model_path)) model_path = tutorial::builtin_model("resnet50");
    const int n = tutorial::int_arg(argc, argv, "--n", 20);
    const int every = tutorial::int_arg(argc, argv, "--every", 4);
    if (n < 0) throw std::runtime_error("--n must be at least 0, got " + std::to_string(n));
    if (every < 1) throw std::runtime_error("--every must be at least 1, got " + std::to_string(every));

    ringflow::Model::Options model_options;
    model_options.preprocess = ringflow::PreprocessOptions::imagenet();
    ringflow::Model model(model_path, model_options);

    // Pooled: results borrow their buffers from a pool instead of allocating one per frame.
    ringflow::RunOptions options;
    options.output_memory = ringflow::OutputMemory::Pooled;
    ringflow::Graph graph;
    graph.add(model.graph());
    const ringflow::Tensor frame = tutorial::gray_frame(224, 99);
    ringflow::Run run = graph.build({frame}, options);

    // The callback runs on the report thread, one group at a time, so it needs no lock of its own.
    // The main thread reads these counters only after wait_all(), once the last callback returned.
    int groups = 0, results = 0, failed = 0, out_of_order = 0;
    std::uint64_t next_seq = 0;
    std::set<int> classes;
    run.set_callback(
        [&](std::vector<ringflow::PullResult>& group) {
          std::cout << "callback group=" << groups << " size=" << group.size()
                    << " first_seq=" << group.front().sample->input_seq << "\n";
          for (const ringflow::PullResult& r : group) {
            if (r.sample->input_seq != next_seq++) ++out_of_order;
            if (r.status == ringflow::PullStatus::Error) {
              std::cerr << "sample " << r.sample->input_seq << " failed: " << r.error << "\n";
              ++failed;
              continue;
            }
            classes.insert(tutorial::top1(*r.sample));  // reads the pooled output in place
          }
          ++groups;
          results += static_cast<int>(group.size());
          // Returning hands the group's output buffers back to the pool.
        },
        every);

    for (int i = 0; i < n; ++i) run.push({frame});  // waits while the Run is full; never pulls
    run.close_input();
    run.wait_all();  // every callback has returned, the last partial group included

    std::cout << "callbacks=" << groups << " results=" << results << "\n";
    if (results != n || failed || out_of_order || classes.size() > 1) {
      throw std::runtime_error("the callbacks lost, reordered or mixed up results");
    }
  });
}

// Stage: a step of your own in a Graph, on threads of its own.
//
//   graph.add(Stage("decode", decode, 2)).add(model.graph()).add(TopK(5)).add(Stage("draw", draw));
//
// A stage's function gets each sample and may replace, add or remove its tensors; the metadata
// (stream_id, frame_id, pts_ns, input_seq) stays as it was. Each stage has its own input ring and
// `threads` threads. When the Run is ordered, a stage with several threads still hands samples on
// in push order, so the next stage sees them in that order.
//
// If the function throws, that sample alone fails: it arrives at pull() (or the callback) as an
// Error naming the stage, and the Run goes on. Later stages pass a failed sample on untouched.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "ringflow/sample.hpp"

namespace ringflow {

class Stage {
 public:
  using Function = std::function<void(Sample& sample)>;

  // Throws Error for an empty function or threads < 1.
  Stage(std::string name, Function function, int threads = 1);

  const std::string& name() const { return name_; }
  int threads() const { return threads_; }
  const Function& function() const { return function_; }

 private:
  std::string name_;
  Function function_;
  int threads_;
};

}  // namespace ringflow

// Graph: what a Run executes, as a chain of steps in the order added: your stages (stage.hpp), one
// model fragment, then postprocessing (postprocess.hpp) and more of your stages. Then build() a Run.
#pragma once

#include <vector>

#include "ringflow/model.hpp"
#include "ringflow/run.hpp"
#include "ringflow/stage.hpp"

namespace ringflow {

class Graph {
 public:
  Graph& add(Model::Fragment fragment);
  Graph& add(Stage stage);

  // Checks `seed_inputs` (one representative sample) as a push would be checked, runs the model on
  // it once, so a model that cannot run fails here rather than on the first sample, allocates the
  // pipeline and starts its threads. With stages before the model, push() takes whatever the first
  // stage takes: the seed is not used (it may be empty), and the model is warmed up on synthetic
  // inputs.
  Run build(const std::vector<Tensor>& seed_inputs, const RunOptions& options = {}) const;
  // As above, with the seed's tensors matched to the model's inputs by name if it names them.
  Run build(const Sample& seed, const RunOptions& options = {}) const;

 private:
  std::vector<Model::Fragment> fragments_;
  std::vector<Stage> before_, after_;  // around the one model fragment
};

}  // namespace ringflow

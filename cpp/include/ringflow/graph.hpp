// Graph: what a Run executes. Add model fragments, then build() a Run.
#pragma once

#include <vector>

#include "ringflow/model.hpp"
#include "ringflow/run.hpp"

namespace ringflow {

class Graph {
 public:
  Graph& add(Model::Fragment fragment);

  // Negotiates concrete shapes from `seed_inputs` (one representative sample: resolves dynamic
  // dimensions and frame sizes), checks the model runs on it, allocates the pipeline and starts its
  // workers. Every later push must match the negotiated shapes.
  Run build(const std::vector<Tensor>& seed_inputs, const RunOptions& options = {}) const;
  // As above, with the seed's tensors matched to the model's inputs by name if it names them.
  Run build(const Sample& seed, const RunOptions& options = {}) const;

 private:
  std::vector<Model::Fragment> fragments_;
};

}  // namespace ringflow

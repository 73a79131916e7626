// Sample: what flows through a Run. One or more named tensors plus the metadata that identifies
// them, so a result can always be traced back to the input it came from.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ringflow/tensor.hpp"

namespace ringflow {

struct Sample {
  // Inputs may leave names empty: they are then matched to the model's inputs by position.
  std::vector<std::string> names;
  std::vector<Tensor> tensors;

  std::string stream_id;
  std::int64_t frame_id = -1;
  std::int64_t pts_ns = -1;
  // Assigned by the Run when the sample is accepted: 0, 1, 2, ... in push order.
  std::uint64_t input_seq = 0;

  // Throws ringflow::Error if there is no tensor of that name.
  const Tensor& at(const std::string& name) const;
};

// A Sample holding `tensors` positionally.
Sample make_sample(std::vector<Tensor> tensors);

// The sample's tensors. With `require_nonempty`, throws ringflow::Error if there are none.
const std::vector<Tensor>& tensors_from_sample(const Sample& sample, bool require_nonempty = false);

}  // namespace ringflow

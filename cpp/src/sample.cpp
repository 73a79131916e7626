#include "ringflow/sample.hpp"

#include "ringflow/errors.hpp"

namespace ringflow {

const Tensor& Sample::at(const std::string& name) const {
  for (std::size_t i = 0; i < names.size() && i < tensors.size(); ++i) {
    if (names[i] == name) return tensors[i];
  }
  std::string known;
  for (const std::string& n : names) known += (known.empty() ? "" : ", ") + n;
  throw Error("sample has no tensor named '" + name + "'; it has: " + known);
}

Sample make_sample(std::vector<Tensor> tensors) {
  Sample s;
  s.names.resize(tensors.size());
  s.tensors = std::move(tensors);
  return s;
}

const std::vector<Tensor>& tensors_from_sample(const Sample& sample, bool require_nonempty) {
  if (require_nonempty && sample.tensors.empty()) {
    throw Error("sample " + std::to_string(sample.input_seq) + " holds no tensors");
  }
  return sample.tensors;
}

}  // namespace ringflow

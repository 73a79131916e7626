// ModelImpl: the loaded session and the checks every caller of it needs.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ort_runtime.hpp"
#include "ringflow/model.hpp"

namespace ringflow {

class ModelImpl {
 public:
  ModelImpl(std::string path, Model::Options options);

  // Orders a sample's tensors as the model's inputs: by name if the sample names them, otherwise by
  // position. Throws ShapeError for a missing, unknown or extra input.
  std::vector<Tensor> inputs_in_model_order(const Sample& sample) const;

  // The session with `intra_op_threads` ORT threads per request (0: as the Model was loaded).
  // Sessions are created on first use and shared by every Run asking for the same count; they share
  // prepacked weights, so only the raw initializers are held once per count.
  std::shared_ptr<Ort::Session> session(int intra_op_threads = 0) const;

  // Runs `session`. `outputs` either holds preallocated tensors of the right shapes, which ORT
  // writes into, or is empty, in which case ORT allocates them and they are appended.
  void infer(Ort::Session& session, const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs,
             const Ort::RunOptions& run_options) const;
  void infer(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs,
             const Ort::RunOptions& run_options) const {
    infer(*session(), inputs, outputs, run_options);
  }

  const std::string path;
  const Model::Options options;
  std::vector<TensorSpec> inputs;
  std::vector<TensorSpec> outputs;

 private:
  std::shared_ptr<Ort::Session> open_session(int intra_op_threads) const;

  std::shared_ptr<OrtPrepackedWeightsContainer> prepacked_;
  std::shared_ptr<Ort::Session> session_;
  mutable std::mutex sessions_mutex_;
  mutable std::map<int, std::shared_ptr<Ort::Session>> sessions_by_threads_;
  std::vector<const char*> input_names_;
  std::vector<const char*> output_names_;
};

// Throws DTypeError or ShapeError, naming `what`, the expected and the actual, unless `tensor`
// matches `spec` (where -1 in the spec matches any size).
void check_against_spec(const Tensor& tensor, const TensorSpec& spec, const std::string& what);

}  // namespace ringflow

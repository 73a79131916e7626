// ModelImpl: the loaded session and the checks every caller of it needs.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "ort_runtime.hpp"
#include "preprocess.hpp"
#include "ringflow/model.hpp"

namespace ringflow {

class ModelImpl {
 public:
  ModelImpl(std::string path, Model::Options options);

  // Orders a sample's tensors as the model's inputs: by name if the sample names them, otherwise by
  // position. Throws ShapeError for a missing, unknown or extra input.
  std::vector<Tensor> inputs_in_model_order(const Sample& sample) const;

  // The sample's tensors in model order, checked against the model's inputs (or, with
  // preprocessing, against what frames may be); throws ShapeError or DTypeError. Frames are
  // returned as they are.
  std::vector<Tensor> checked_inputs(const Sample& sample) const;
  // The preprocessor for this frame: the model's fixed size, or the frame's own where the model's
  // height and width are dynamic.
  Preprocessor frame_preprocessor(const Tensor& frame) const;

  // The session with `intra_op_threads` ORT threads per request (0: as the Model was loaded).
  // Sessions are created on first use and shared by every Run asking for the same count; they share
  // prepacked weights, so only the raw initializers are held once per count.
  std::shared_ptr<Ort::Session> session(int intra_op_threads = 0) const;

  // The shape output `output` will have for these model inputs, where the model's declared shape
  // tells it: every dimension fixed, or named by a symbol that an input dimension also carries
  // ("batch", "seq"). nullopt for a shape that depends on the data (NonZero, NMS): ORT allocates
  // that output for each inference.
  std::optional<Shape> output_shape(std::size_t output, const std::vector<Tensor>& inputs) const;
  // Whether output `output`'s first dimension is an input's first dimension (the same symbol), so
  // the rows of a stacked batch's output can be told apart by sample.
  bool rows_follow_batch(std::size_t output) const {
    const auto& dims = output_dim_sources_[output];
    return !dims.empty() && dims[0].first >= 0 && dims[0].second == 0;
  }

  // Runs `session`. Each entry of `outputs` is either a preallocated tensor of the right shape,
  // which ORT writes into, or empty, in which case ORT allocates it and it is filled in. An empty
  // `outputs` means every output is allocated by ORT.
  void infer(Ort::Session& session, const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs,
             const Ort::RunOptions& run_options) const;
  void infer(const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs,
             const Ort::RunOptions& run_options) const {
    infer(*session(), inputs, outputs, run_options);
  }

  // The fork generation this model was loaded in (fork_guard.hpp).
  std::uint64_t generation() const { return generation_; }

  const std::string path;
  const Model::Options options;
  std::vector<TensorSpec> inputs;
  std::vector<TensorSpec> outputs;

 private:
  std::shared_ptr<Ort::Session> open_session(int intra_op_threads) const;

  // Per output dimension: where its size comes from when it is dynamic, as (input, dimension), or
  // (-1, -1) when no input dimension carries its symbol.
  std::vector<std::vector<std::pair<int, int>>> output_dim_sources_;
  std::uint64_t generation_;
  std::shared_ptr<OrtPrepackedWeightsContainer> prepacked_;
  std::shared_ptr<Ort::Session> session_;
  mutable std::mutex sessions_mutex_;
  mutable std::map<int, std::shared_ptr<Ort::Session>> sessions_by_threads_;
  std::vector<const char*> input_names_;
  std::vector<const char*> output_names_;
};

// Throws DTypeError or ShapeError, naming `what`, the expected and the actual, unless `tensor`
// matches `spec`: same dtype and rank, fixed dimensions equal, dynamic ones (-1) any size from 1 up
// to `max` where `max` bounds them (-1 in `max`: unbounded).
void check_against_spec(const Tensor& tensor, const TensorSpec& spec, const std::string& what,
                        const Shape* max = nullptr);

}  // namespace ringflow

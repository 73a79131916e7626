#include "ringflow/graph.hpp"

#include "model_impl.hpp"
#include "preprocess.hpp"
#include "ringflow/errors.hpp"
#include "run_impl.hpp"

namespace ringflow {
namespace {

void check_options(const RunOptions& options) {
  if (options.queue_depth < 1) throw Error("RunOptions.queue_depth must be at least 1, got 0");
  if (options.workers < 1) {
    throw Error("RunOptions.workers must be at least 1, got " + std::to_string(options.workers));
  }
  if (options.max_batch < 1) {
    throw Error("RunOptions.max_batch must be at least 1, got " + std::to_string(options.max_batch));
  }
  if (options.max_delay_us < 0) {
    throw Error("RunOptions.max_delay_us must not be negative, got " + std::to_string(options.max_delay_us));
  }
}

// RunOptions.max_shape by input position; empty where an input has no bound.
std::vector<Shape> max_shapes(const RunOptions& options, const std::vector<TensorSpec>& inputs,
                              bool preprocessing) {
  if (options.max_shape.empty()) return {};
  if (preprocessing) {
    throw ShapeError("RunOptions.max_shape does not apply to a model with preprocessing: its frames are "
                     "bounded by PreprocessOptions.input_max_height and input_max_width");
  }
  std::vector<Shape> bounds(inputs.size());
  for (const auto& [name, max] : options.max_shape) {
    std::size_t i = 0;
    while (i < inputs.size() && inputs[i].name != name) ++i;
    if (i == inputs.size()) {
      std::string names;
      for (const TensorSpec& s : inputs) names += (names.empty() ? "" : ", ") + s.name;
      throw ShapeError("RunOptions.max_shape names input '" + name + "', which the model does not have; its inputs are " +
                       names);
    }
    const Shape& declared = inputs[i].shape;
    if (max.size() != declared.size()) {
      throw ShapeError("RunOptions.max_shape['" + name + "'] is " + shape_to_string(max) + " (rank " +
                       std::to_string(max.size()) + "); input '" + name + "' is " + shape_to_string(declared) +
                       ", so it needs rank " + std::to_string(declared.size()));
    }
    for (std::size_t d = 0; d < max.size(); ++d) {
      if (max[d] == 0 || (max[d] > 0 && declared[d] >= 0 && max[d] != declared[d])) {
        throw ShapeError("RunOptions.max_shape['" + name + "'] is " + shape_to_string(max) + "; dimension " +
                         std::to_string(d) + " must be -1 (unbounded) or " +
                         (declared[d] >= 0 ? "the model's fixed size " + std::to_string(declared[d])
                                           : std::string("a bound of at least 1")));
      }
    }
    bounds[i] = max;
  }
  return bounds;
}

}  // namespace

Graph& Graph::add(Model::Fragment fragment) {
  if (!fragment.model) throw Error("Graph::add: the fragment holds no model");
  fragments_.push_back(std::move(fragment));
  return *this;
}

Graph& Graph::add(Stage stage) {
  (fragments_.empty() ? before_ : after_).push_back(std::move(stage));
  return *this;
}

Run Graph::build(const std::vector<Tensor>& seed_inputs, const RunOptions& options) const {
  return build(make_sample(seed_inputs), options);
}

Run Graph::build(const Sample& seed, const RunOptions& options) const {
  if (fragments_.size() != 1) {
    throw Error("Graph::build: this release runs graphs of exactly one model fragment; the graph has " +
                std::to_string(fragments_.size()));
  }
  const Model::Fragment& fragment = fragments_.front();
  if (!fragment.route.include_input || !fragment.route.include_output) {
    throw Error("Graph::build: a one-model graph must route both its input and its output "
                "(RouteOptions include_input and include_output), or nothing could be pushed or pulled");
  }
  check_options(options);
  const std::shared_ptr<const ModelImpl>& model = fragment.model;
  const PreprocessOptions& pre = model->options.preprocess;

  if (options.max_batch > 1) {
    // Batching stacks samples along dimension 0 and splits the outputs back by rows, so every input
    // must leave dimension 0 dynamic, and every output's dimension 0 must be that same dimension.
    // An output whose row count depends on the data (detections after NMS) cannot be split.
    for (const TensorSpec& s : model->inputs) {
      if (s.shape.empty() || s.shape[0] >= 0) {
        throw ShapeError("RunOptions.max_batch > 1 needs a dynamic batch dimension, but model input '" + s.name +
                         "' is " + shape_to_string(s.shape) + "; use max_batch = 1 for this model");
      }
    }
    for (std::size_t o = 0; o < model->outputs.size(); ++o) {
      const TensorSpec& s = model->outputs[o];
      if (s.shape.empty() || s.shape[0] >= 0 || !model->rows_follow_batch(o)) {
        throw ShapeError("RunOptions.max_batch > 1 needs every output's first dimension to be the inputs' batch "
                         "dimension, but model output '" + s.name + "' is " + shape_to_string(s.shape) +
                         (s.shape.empty() || s.shape[0] >= 0
                              ? ""
                              : " and its first dimension is not named like an input's first dimension") +
                         ", so its rows cannot be split by sample; use max_batch = 1 for this model");
      }
    }
  }

  // What push() accepts: the model's own inputs, dynamic dimensions left dynamic, or frames.
  std::vector<TensorSpec> push_specs = model->inputs;
  if (pre.enabled()) {
    const Shape& image = model->inputs[0].shape;
    const bool fixed = image.size() == 4 && image[2] >= 0 && image[3] >= 0;
    push_specs[0].dtype = DType::UInt8;
    push_specs[0].shape = pre.resize || !fixed ? Shape{-1, -1, pre.input_max_depth}
                                               : Shape{image[2], image[3], pre.input_max_depth};
  }
  if (!before_.empty()) push_specs.clear();  // the first stage takes anything
  if (before_.empty() && seed.tensors.empty()) {
    throw Error("Graph::build needs a seed: one representative input sample (it is checked and run once); only a "
                "Graph with stages before the model needs none");
  }
  auto impl = std::make_unique<RunImpl>(model, options, std::move(push_specs),
                                        max_shapes(options, model->inputs, pre.enabled()), before_, after_);

  // The seed only warms up: it is checked as a push would be, and running it once surfaces a model
  // that cannot run at all here, at build time, rather than on the first pushed sample. Stages
  // before the model are not run here (they may have effects): synthetic inputs stand in.
  Sample warm = before_.empty() ? seed : make_sample(Model(model).synthetic_inputs());
  impl->check(warm);
  std::vector<Tensor> model_seed = model->inputs_in_model_order(warm);
  if (pre.enabled()) {
    const Tensor& frame = model_seed[0];
    Preprocessor preprocessor(pre, preprocessed_input(model->inputs[0], frame.shape()[0], frame.shape()[1]));
    model_seed[0] = preprocessor.apply(frame);
  }
  std::vector<Tensor> seed_outputs;
  try {
    model->infer(*model->session(), model_seed, seed_outputs, Ort::RunOptions());
  } catch (const InferenceError& e) {
    throw ShapeError(std::string("Graph::build: the model does not run on the seed inputs: ") + e.what());
  }
  return Run(std::move(impl));
}

}  // namespace ringflow

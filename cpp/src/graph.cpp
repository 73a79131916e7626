#include "ringflow/graph.hpp"

#include "model_impl.hpp"
#include "preprocess.hpp"
#include "ringflow/errors.hpp"
#include "run_impl.hpp"

namespace ringflow {

Graph& Graph::add(Model::Fragment fragment) {
  if (!fragment.model) throw Error("Graph::add: the fragment holds no model");
  fragments_.push_back(std::move(fragment));
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
  if (options.queue_depth < 1) throw Error("RunOptions.queue_depth must be at least 1");
  if (options.workers < 1) throw Error("RunOptions.workers must be at least 1");
  if (options.max_batch < 1) throw Error("RunOptions.max_batch must be at least 1");
  if (options.max_delay_us < 0) throw Error("RunOptions.max_delay_us must not be negative");

  const std::shared_ptr<const ModelImpl>& model = fragment.model;
  std::vector<TensorSpec> push_specs;
  std::vector<TensorSpec> model_specs = model->inputs;
  std::vector<Tensor> model_seed;
  const PreprocessOptions& pre = model->options.preprocess;

  if (pre.enabled()) {
    const std::vector<Tensor>& seed_inputs = seed.tensors;
    if (seed_inputs.size() != 1) {
      throw ShapeError("Graph::build with preprocess takes one seed frame; got " +
                       std::to_string(seed_inputs.size()) + " tensors");
    }
    const Tensor& frame = seed_inputs[0];
    if (frame.shape().size() != 3) {
      throw ShapeError("seed frame is " + frame.describe() + "; expected uint8 [H, W, C]");
    }
    model_specs[0] = preprocessed_input(model_specs[0], frame.shape()[0], frame.shape()[1]);
    const Shape& image = model_specs[0].shape;
    Preprocessor preprocessor(pre, model_specs[0]);
    preprocessor.check_frame(frame);
    model_seed.push_back(preprocessor.apply(frame));
    const Shape frame_shape = pre.resize ? Shape{-1, -1, pre.input_max_depth}
                                         : Shape{image[2], image[3], pre.input_max_depth};
    push_specs.push_back(TensorSpec{model_specs[0].name, DType::UInt8, frame_shape});
  } else {
    model_seed = model->inputs_in_model_order(seed);
    for (std::size_t i = 0; i < model_seed.size(); ++i) {
      check_against_spec(model_seed[i], model_specs[i], "seed input");
      model_specs[i].shape = model_seed[i].shape();
    }
    push_specs = model_specs;
  }

  // Running the seed once resolves the output shapes and surfaces a model that cannot run on these
  // inputs here, at build time, rather than on the first pushed sample.
  std::vector<Tensor> seed_outputs;
  try {
    model->infer(model_seed, seed_outputs, Ort::RunOptions());
  } catch (const InferenceError& e) {
    throw ShapeError(std::string("Graph::build: the model does not run on the seed inputs: ") + e.what());
  }
  std::vector<TensorSpec> output_specs = model->outputs;
  for (std::size_t i = 0; i < output_specs.size(); ++i) output_specs[i].shape = seed_outputs[i].shape();

  if (options.max_batch > 1) {
    // Batching stacks samples along dimension 0, so every input and output must leave it dynamic.
    const auto check = [](const TensorSpec& declared, const Shape& negotiated, const char* what) {
      if (declared.shape.empty() || declared.shape[0] >= 0 || negotiated.empty() || negotiated[0] < 1) {
        throw ShapeError(std::string("RunOptions.max_batch > 1 needs a dynamic batch dimension, but model ") +
                         what + " '" + declared.name + "' is " + shape_to_string(declared.shape) +
                         "; use max_batch = 1 for this model");
      }
    };
    for (std::size_t i = 0; i < model_specs.size(); ++i) check(model->inputs[i], model_specs[i].shape, "input");
    for (std::size_t i = 0; i < output_specs.size(); ++i) check(model->outputs[i], output_specs[i].shape, "output");
  }

  return Run(std::make_unique<RunImpl>(model, options, std::move(push_specs), std::move(model_specs),
                                       std::move(output_specs)));
}

}  // namespace ringflow

// Synchronous inference: load a model, run one frame, print the top-1 class.
//
// Usage: tutorial_001_run_inference_sync [--model <path.onnx>] [--image <path>]
#include <iostream>

#include "ringflow/ringflow.hpp"
#include "tutorial.hpp"

int main(int argc, char** argv) {
  return tutorial::run("001_run_inference_sync", [&] {
    std::string model_path, image;
    if (!tutorial::get_arg(argc, argv, "--model", model_path)) model_path = tutorial::builtin_model("resnet50");
    tutorial::get_arg(argc, argv, "--image", image);
    const ringflow::Tensor frame = image.empty() ? tutorial::gray_frame(224, 99) : tutorial::load_rgb(image);

    // The model resizes and normalizes frames itself, so any frame up to this size can be passed.
    ringflow::Model::Options options;
    options.preprocess = ringflow::PreprocessOptions::imagenet(
        std::max<int>(224, static_cast<int>(frame.shape()[1])),
        std::max<int>(224, static_cast<int>(frame.shape()[0])));
    ringflow::Model model(model_path, options);

    const ringflow::Sample out = model.run({frame}, /*timeout_ms=*/10000);
    std::cout << "top1=" << tutorial::top1(out) << "\n";
  });
}

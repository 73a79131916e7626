// What needs a real-size model, resnet50: frame preprocessing (uint8 HWC frames in, ImageNet-
// normalised NCHW float to the model), tearing down a Run mid-inference, and inference timeouts.
// An inference costs about 0.1 s on two cores, so these tests run only a handful.
#include <chrono>
#include <optional>
#include <vector>

#include "engine_models.hpp"
#include "check.hpp"
#include "hang_guard.hpp"
#include "ringflow/ringflow.hpp"
#include "tensors.hpp"

using namespace ringflow;

namespace {

constexpr int kPullTimeoutMs = 60000;  // a hang guard only: each result takes well under a second

const Model& resnet50_for_rgb_frames() {
  static const Model model = [] {
    Model::Options options;
    PreprocessOptions& pre = options.preprocess;
    pre.input_format = ColorFormat::RGB;
    pre.model_format = ColorFormat::RGB;
    pre.input_max_width = 224;
    pre.input_max_height = 224;
    pre.input_max_depth = 3;
    pre.normalize.mean = {0.485f, 0.456f, 0.406f};
    pre.normalize.stddev = {0.229f, 0.224f, 0.225f};
    return Model(builtin_models().resnet50, options);
  }();
  return model;
}

Tensor gray_frame(std::int64_t height, std::int64_t width, std::uint8_t level) {
  Tensor frame = Tensor::allocate(DType::UInt8, {height, width, 3});
  std::uint8_t* pixels = frame.mutable_data<std::uint8_t>();
  for (std::size_t i = 0; i < frame.size_bytes(); ++i) pixels[i] = level;
  return frame;
}

Run build_run(RunOptions options = {}) {
  const std::vector<Tensor> seed{gray_frame(224, 224, 99)};
  return Graph().add(resnet50_for_rgb_frames().graph()).build(seed, options);
}

}  // namespace

TEST(a_preprocessing_run_takes_uint8_frames_of_any_size) {
  Run run = build_run(depth_and_workers(2, 1));
  CHECK_EQ(run.input_specs().size(), 1u);
  CHECK_EQ(run.input_specs()[0].dtype, DType::UInt8);
  CHECK_EQ(run.input_specs()[0].shape, (Shape{-1, -1, 3}));
  CHECK_EQ(run.output_specs()[0].shape, (Shape{-1, 1000}));  // the model's own: batch left dynamic
}

// The Run's preprocess stage and Model::run's must produce the same model input, so the same bits.
TEST(run_results_match_model_run_for_full_size_and_resized_frames) {
  const Model& model = resnet50_for_rgb_frames();
  Run run = build_run(depth_and_workers(2, 1));
  const std::vector<Tensor> frames{gray_frame(224, 224, 99), gradient_frame(100, 120)};
  for (const Tensor& frame : frames) run.push({frame});
  for (const Tensor& frame : frames) {
    const Sample expected = model.run({frame});
    CHECK_EQ(expected.tensors[0].shape(), (Shape{1, 1000}));
    const std::optional<Sample> result = run.pull(kPullTimeoutMs);
    CHECK(result.has_value());
    CHECK(same_outputs(*result, expected));
  }
  // Otherwise agreement would prove nothing.
  CHECK(!same_outputs(model.run({frames[0]}), model.run({frames[1]})));
}

TEST(frames_outside_the_limits_are_rejected_and_the_run_goes_on) {
  const Model& model = resnet50_for_rgb_frames();
  Run run = build_run(depth_and_workers(2, 1));
  const Tensor too_wide = gray_frame(200, 300, 99);
  CHECK_THROWS_WITH(run.push({too_wide}), ShapeError, "H <= 224 and W <= 224");
  CHECK_THROWS_WITH(model.run({too_wide}), ShapeError, "H <= 224 and W <= 224");
  const Tensor too_tall = gray_frame(300, 200, 99);
  CHECK_THROWS_WITH(run.push({too_tall}), ShapeError, "H <= 224 and W <= 224");
  const Tensor four_channels = Tensor::allocate(DType::UInt8, {224, 224, 4});
  CHECK_THROWS_WITH(run.push({four_channels}), ShapeError, "uint8 [H, W, 3]");
  const Tensor float_frame = Tensor::allocate(DType::Float32, {224, 224, 3});
  CHECK_THROWS_WITH(run.push({float_frame}), DTypeError, "uint8 [H, W, 3]");

  const Tensor small = gradient_frame(100, 120);
  run.push({small});
  const std::optional<Sample> result = run.pull(kPullTimeoutMs);
  CHECK(result.has_value());
  CHECK_EQ(result->input_seq, 0u);
  CHECK(same_outputs(*result, model.run({small})));
}

TEST(destroying_a_preprocessing_run_with_frames_in_flight_returns) {
  std::optional<Run> run(build_run(depth_and_workers(4, 2)));
  for (int i = 0; i < 4; ++i) run->push({gradient_frame(100, 120)});
  HangGuard guard("destroying a busy resnet50 Run", std::chrono::seconds(10));
  run.reset();  // while frames are being preprocessed, inferred or queued
}

TEST(model_run_past_its_timeout_throws_timeout_error) {
  const Model& model = resnet50_for_rgb_frames();
  CHECK_THROWS_WITH(model.run({gray_frame(224, 224, 99)}, 1), TimeoutError, "timeout_ms=1");
  // The aborted inference leaves the shared session fit for the next one.
  const Sample result = model.run({gray_frame(224, 224, 99)}, kPullTimeoutMs);
  CHECK_EQ(result.tensors[0].shape(), (Shape{1, 1000}));
}

int main(int argc, char** argv) { return check::run_all(argc, argv); }

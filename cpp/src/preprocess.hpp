// Frame preprocessing: HWC uint8 frames to the model's NCHW float input in one pass.
#pragma once

#include <vector>

#include "ringflow/model.hpp"
#include "ringflow/tensor.hpp"

namespace ringflow {

// The model input that frames of `frame_height` x `frame_width` are turned into: the model's own
// size wins, a dynamic batch becomes 1, and a dynamic height or width takes the frame's.
TensorSpec preprocessed_input(TensorSpec model_input, std::int64_t frame_height, std::int64_t frame_width);

class Preprocessor {
 public:
  // Source coordinate and weight per destination row or column: recomputed only when the frame
  // size changes, so a thread converting frames of one size computes them once.
  struct Taps {
    struct Axis {
      int src = -1, dst = -1;
      std::vector<int> lo, hi;
      std::vector<float> frac;
    } y, x;
  };

  // `model_input` is the (negotiated) model input spec: float32 [1, C, H, W].
  Preprocessor(PreprocessOptions options, TensorSpec model_input);

  // Throws ShapeError/DTypeError, naming the limits, for a frame the options do not admit.
  void check_frame(const Tensor& frame) const;
  // Writes `frame` (checked) into `out`, which has the model input's shape.
  void apply(const Tensor& frame, Tensor& out) const;
  void apply(const Tensor& frame, Tensor& out, Taps& taps) const;
  Tensor apply(const Tensor& frame) const;

  const TensorSpec& model_input() const { return model_input_; }

 private:
  PreprocessOptions options_;
  TensorSpec model_input_;
  float scale_[4];   // per model channel: 1 / (255 * stddev)
  float offset_[4];  // per model channel: -mean / stddev
};

}  // namespace ringflow

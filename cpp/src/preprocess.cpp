#include "preprocess.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "ringflow/errors.hpp"

namespace ringflow {
namespace {

int channels_of(ColorFormat format) { return format == ColorFormat::GRAY ? 1 : 3; }

// Source coordinate and weight for each destination index, with pixel centres aligned as OpenCV's
// INTER_LINEAR does, and clamped at the borders.
void bilinear_taps(int src, int dst, Preprocessor::Taps::Axis& t) {
  if (t.src == src && t.dst == dst) return;
  t.src = src;
  t.dst = dst;
  t.lo.resize(dst);
  t.hi.resize(dst);
  t.frac.resize(dst);
  const float scale = static_cast<float>(src) / static_cast<float>(dst);
  for (int i = 0; i < dst; ++i) {
    float pos = std::max((static_cast<float>(i) + 0.5f) * scale - 0.5f, 0.0f);
    int lo = std::min(static_cast<int>(pos), src - 1);
    t.lo[i] = lo;
    t.hi[i] = std::min(lo + 1, src - 1);
    t.frac[i] = pos - static_cast<float>(lo);
  }
}

}  // namespace

PreprocessOptions PreprocessOptions::imagenet(int max_width, int max_height) {
  PreprocessOptions o;
  o.input_format = ColorFormat::RGB;
  o.model_format = ColorFormat::RGB;
  o.input_max_width = max_width;
  o.input_max_height = max_height;
  o.input_max_depth = 3;
  o.normalize.mean = {0.485f, 0.456f, 0.406f};
  o.normalize.stddev = {0.229f, 0.224f, 0.225f};
  return o;
}

TensorSpec preprocessed_input(TensorSpec model_input, std::int64_t frame_height, std::int64_t frame_width) {
  Shape& s = model_input.shape;
  if (!s.empty() && s[0] < 0) s[0] = 1;
  if (s.size() == 4 && s[2] < 0) s[2] = frame_height;
  if (s.size() == 4 && s[3] < 0) s[3] = frame_width;
  return model_input;  // a shape of another rank is left for the Preprocessor to reject
}

Preprocessor::Preprocessor(PreprocessOptions options, TensorSpec model_input)
    : options_(std::move(options)), model_input_(std::move(model_input)) {
  const Shape& s = model_input_.shape;
  if (model_input_.dtype != DType::Float32 || s.size() != 4 || s[0] != 1) {
    throw ShapeError("preprocess produces float32 [1, C, H, W], but model input '" +
                     model_input_.name + "' is " + dtype_name(model_input_.dtype) + " " +
                     shape_to_string(s));
  }
  const int model_channels = static_cast<int>(s[1]);
  if (model_channels != channels_of(options_.model_format)) {
    throw ShapeError("preprocess.model_format has " +
                     std::to_string(channels_of(options_.model_format)) + " channels but model input '" +
                     model_input_.name + "' has " + std::to_string(model_channels));
  }
  if (options_.input_max_depth != channels_of(options_.input_format)) {
    throw ShapeError("preprocess.input_max_depth is " + std::to_string(options_.input_max_depth) +
                     " but input_format has " + std::to_string(channels_of(options_.input_format)) +
                     " channels");
  }
  if (options_.model_format == ColorFormat::GRAY && options_.input_format != ColorFormat::GRAY) {
    throw Error("preprocess cannot convert colour frames to a GRAY model input");
  }
  const auto& mean = options_.normalize.mean;
  const auto& stddev = options_.normalize.stddev;
  for (const auto* v : {&mean, &stddev}) {
    if (!v->empty() && static_cast<int>(v->size()) != model_channels) {
      throw Error("preprocess.normalize needs one mean and stddev per model channel (" +
                  std::to_string(model_channels) + "), got " + std::to_string(v->size()));
    }
  }
  for (int c = 0; c < model_channels; ++c) {
    const float m = mean.empty() ? 0.0f : mean[c];
    const float sd = stddev.empty() ? 1.0f : stddev[c];
    if (sd == 0.0f) throw Error("preprocess.normalize.stddev must not be zero");
    scale_[c] = 1.0f / (255.0f * sd);
    offset_[c] = -m / sd;
  }
}

void Preprocessor::check_frame(const Tensor& frame) const {
  const Shape& s = frame.shape();
  const std::string expected = "uint8 [H, W, " + std::to_string(options_.input_max_depth) +
                               "] with H <= " + std::to_string(options_.input_max_height) +
                               " and W <= " + std::to_string(options_.input_max_width);
  if (frame.dtype() != DType::UInt8) {
    throw DTypeError(std::string("frame is ") + dtype_name(frame.dtype()) + "; expected " + expected);
  }
  if (s.size() != 3 || s[2] != options_.input_max_depth || s[0] < 1 || s[1] < 1 ||
      s[0] > options_.input_max_height || s[1] > options_.input_max_width) {
    throw ShapeError("frame is " + frame.describe() + "; expected " + expected);
  }
  if (!options_.resize && (s[0] != model_input_.shape[2] || s[1] != model_input_.shape[3])) {
    throw ShapeError("frame is " + frame.describe() + " and preprocess.resize is off; expected " +
                     std::to_string(model_input_.shape[2]) + "x" +
                     std::to_string(model_input_.shape[3]) + " frames");
  }
}

Tensor Preprocessor::apply(const Tensor& frame) const {
  Tensor out = Tensor::allocate(DType::Float32, model_input_.shape);
  apply(frame, out);
  return out;
}

void Preprocessor::apply(const Tensor& frame, Tensor& out) const {
  Taps taps;
  apply(frame, out, taps);
}

void Preprocessor::apply(const Tensor& frame, Tensor& out, Taps& taps) const {
  const int src_h = static_cast<int>(frame.shape()[0]);
  const int src_w = static_cast<int>(frame.shape()[1]);
  const int src_c = static_cast<int>(frame.shape()[2]);
  const int channels = static_cast<int>(model_input_.shape[1]);
  const int dst_h = static_cast<int>(model_input_.shape[2]);
  const int dst_w = static_cast<int>(model_input_.shape[3]);
  const std::uint8_t* src = frame.data<std::uint8_t>();
  float* dst = out.mutable_data<float>();

  int source_channel[4];
  for (int c = 0; c < channels; ++c) {
    const bool swap = options_.input_format != options_.model_format &&
                      options_.input_format != ColorFormat::GRAY;
    source_channel[c] = options_.input_format == ColorFormat::GRAY ? 0 : (swap ? 2 - c : c);
  }

  const std::size_t plane = static_cast<std::size_t>(dst_h) * dst_w;
  if (src_h == dst_h && src_w == dst_w) {
    for (int y = 0; y < dst_h; ++y) {
      const std::uint8_t* row = src + static_cast<std::size_t>(y) * src_w * src_c;
      for (int c = 0; c < channels; ++c) {
        float* out_row = dst + c * plane + static_cast<std::size_t>(y) * dst_w;
        const int sc = source_channel[c];
        for (int x = 0; x < dst_w; ++x) out_row[x] = row[x * src_c + sc] * scale_[c] + offset_[c];
      }
    }
    return;
  }

  bilinear_taps(src_h, dst_h, taps.y);
  bilinear_taps(src_w, dst_w, taps.x);
  const Taps::Axis& ys = taps.y;
  const Taps::Axis& xs = taps.x;
  for (int y = 0; y < dst_h; ++y) {
    const std::uint8_t* top = src + static_cast<std::size_t>(ys.lo[y]) * src_w * src_c;
    const std::uint8_t* bottom = src + static_cast<std::size_t>(ys.hi[y]) * src_w * src_c;
    const float fy = ys.frac[y];
    for (int c = 0; c < channels; ++c) {
      float* out_row = dst + c * plane + static_cast<std::size_t>(y) * dst_w;
      const int sc = source_channel[c];
      for (int x = 0; x < dst_w; ++x) {
        const int x0 = xs.lo[x] * src_c + sc;
        const int x1 = xs.hi[x] * src_c + sc;
        const float fx = xs.frac[x];
        const float t = top[x0] + (top[x1] - top[x0]) * fx;
        const float b = bottom[x0] + (bottom[x1] - bottom[x0]) * fx;
        out_row[x] = (t + (b - t) * fy) * scale_[c] + offset_[c];
      }
    }
  }
}

}  // namespace ringflow

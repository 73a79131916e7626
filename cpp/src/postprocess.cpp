#include "ringflow/postprocess.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "ringflow/errors.hpp"

namespace ringflow {
namespace {

// Positional inputs may leave `names` shorter than `tensors`.
const std::string& name_of(const Sample& sample, std::size_t i) {
  static const std::string unnamed;
  return i < sample.names.size() ? sample.names[i] : unnamed;
}

std::string tensor_label(const Sample& sample, std::size_t i) {
  const std::string& name = name_of(sample, i);
  return name.empty() ? "tensor #" + std::to_string(i) : "'" + name + "'";
}

// "'boxes' float32 [1, 4], tensor #1 int64 [3]": what the sample holds, for error messages.
std::string describe_tensors(const Sample& sample) {
  if (sample.tensors.empty()) return "no tensors";
  std::string out;
  for (std::size_t i = 0; i < sample.tensors.size(); ++i) {
    if (i) out += ", ";
    out += tensor_label(sample, i) + " " + sample.tensors[i].describe();
  }
  return out;
}

std::size_t find_tensor(const Sample& sample, const std::string& name, const char* stage) {
  for (std::size_t i = 0; i < sample.tensors.size(); ++i) {
    if (name_of(sample, i) == name) return i;
  }
  throw ShapeError(std::string(stage) + ": the sample has no tensor named '" + name + "'; it has " +
                   describe_tensors(sample));
}

void require_float32(const Sample& sample, std::size_t i, const char* stage, const char* expected) {
  const Tensor& t = sample.tensors[i];
  if (t.dtype() != DType::Float32) {
    throw DTypeError(std::string(stage) + ": " + tensor_label(sample, i) + " is " + t.describe() +
                     "; expected " + expected);
  }
}

[[noreturn]] void wrong_shape(const Sample& sample, std::size_t i, const char* stage, const char* expected) {
  throw ShapeError(std::string(stage) + ": " + tensor_label(sample, i) + " is " +
                   sample.tensors[i].describe() + "; expected " + expected);
}

// Only once the result is ready, so that a rejected sample is left as it came. Pads `names` first so
// that erasing and appending keep each name with its tensor.
void erase_tensor(Sample& sample, std::size_t i) {
  sample.names.resize(sample.tensors.size());
  sample.names.erase(sample.names.begin() + static_cast<std::ptrdiff_t>(i));
  sample.tensors.erase(sample.tensors.begin() + static_cast<std::ptrdiff_t>(i));
}

void append_tensor(Sample& sample, const char* name, Tensor tensor) {
  sample.names.emplace_back(name);
  sample.tensors.push_back(std::move(tensor));
}

// ------------------------------------------------------------------------------------------------
// TopK

// Subtracting the row's maximum keeps exp() from overflowing. A NaN or +inf in the row makes the
// whole row NaN, as numpy and ONNX's Softmax do: a broken model output should not look like a
// confident one.
void softmax_row(const float* x, std::int64_t n, float* out) {
  float max = -INFINITY;
  for (std::int64_t i = 0; i < n; ++i) max = x[i] > max ? x[i] : max;
  float sum = 0.0f;
  for (std::int64_t i = 0; i < n; ++i) {
    out[i] = std::exp(x[i] - max);
    sum += out[i];
  }
  for (std::int64_t i = 0; i < n; ++i) out[i] /= sum;
}

void top_k(Sample& sample, const TopKOptions& options) {
  static constexpr const char* kExpected = "float32 [C] or [N, C] class scores";
  std::size_t at = 0;
  if (!options.input.empty()) {
    at = find_tensor(sample, options.input, "TopK");
  } else if (sample.tensors.empty()) {
    throw ShapeError(std::string("TopK: the sample holds no tensors; expected ") + kExpected);
  }
  require_float32(sample, at, "TopK", kExpected);
  const Tensor input = sample.tensors[at];
  const Shape& shape = input.shape();
  if (shape.size() != 1 && shape.size() != 2) wrong_shape(sample, at, "TopK", kExpected);
  const std::int64_t rows = shape.size() == 2 ? shape[0] : 1;
  const std::int64_t classes = shape.back();
  if (classes == 0) wrong_shape(sample, at, "TopK", "at least one class (C >= 1)");
  const std::int64_t k = std::min<std::int64_t>(options.k, classes);

  const Shape out_shape = shape.size() == 2 ? Shape{rows, k} : Shape{k};
  Tensor indices = Tensor::empty(DType::Int64, out_shape);
  Tensor scores = Tensor::empty(DType::Float32, out_shape);
  std::int64_t* out_index = indices.mutable_data<std::int64_t>();
  float* out_score = scores.mutable_data<float>();

  std::vector<float> probabilities(options.softmax ? static_cast<std::size_t>(classes) : 0);
  std::vector<std::int64_t> order(static_cast<std::size_t>(classes));
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* row = input.data<float>() + r * classes;
    if (options.softmax) {
      softmax_row(row, classes, probabilities.data());
      row = probabilities.data();
    }
    // Ranked by the score reported, so the output reads as sorted even where softmax rounds two
    // raw scores to one probability. A total order (NaN below everything, then the index) makes
    // the result independent of the sort algorithm.
    const auto better = [row](std::int64_t a, std::int64_t b) {
      const float x = row[a];
      const float y = row[b];
      if (std::isnan(x) != std::isnan(y)) return std::isnan(y);
      if (!std::isnan(x) && x != y) return x > y;
      return a < b;
    };
    std::iota(order.begin(), order.end(), std::int64_t{0});
    std::partial_sort(order.begin(), order.begin() + k, order.end(), better);
    for (std::int64_t i = 0; i < k; ++i) {
      out_index[r * k + i] = order[static_cast<std::size_t>(i)];
      out_score[r * k + i] = row[order[static_cast<std::size_t>(i)]];
    }
  }

  erase_tensor(sample, at);
  append_tensor(sample, "topk_indices", std::move(indices));
  append_tensor(sample, "topk_scores", std::move(scores));
}

// ------------------------------------------------------------------------------------------------
// DetectionOutput

struct Candidate {
  float image;
  float label;
  float score;
  std::int64_t row;  // input row: breaks ties, so equal scores keep the model's order
  const float* box;  // x_min, y_min, x_max, y_max
};

// In double, so that an IoU right at iou_threshold is not decided by float rounding, and any
// reference that evaluates this same expression in double agrees exactly. A box without positive
// width and height (or with a NaN coordinate) overlaps nothing.
double iou(const float* a, const float* b) {
  const double a_width = static_cast<double>(a[2]) - a[0];
  const double a_height = static_cast<double>(a[3]) - a[1];
  const double b_width = static_cast<double>(b[2]) - b[0];
  const double b_height = static_cast<double>(b[3]) - b[1];
  if (!(a_width > 0 && a_height > 0 && b_width > 0 && b_height > 0)) return 0.0;
  const double width = std::min<double>(a[2], b[2]) - std::max<double>(a[0], b[0]);
  const double height = std::min<double>(a[3], b[3]) - std::max<double>(a[1], b[1]);
  if (!(width > 0 && height > 0)) return 0.0;
  const double intersection = width * height;
  return intersection / (a_width * a_height + b_width * b_height - intersection);
}

// SSD rows [image_id, label, score, x_min, y_min, x_max, y_max] above the threshold.
void ssd_candidates(const Tensor& detections, float score_threshold, std::vector<Candidate>& out) {
  const std::int64_t rows = detections.shape()[detections.shape().size() - 2];
  const float* data = detections.data<float>();
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* d = data + r * 7;
    // A NaN image id or label names no group to suppress within, so such a row cannot be kept.
    if (!(d[2] > score_threshold) || std::isnan(d[0]) || std::isnan(d[1])) continue;
    out.push_back({d[0], d[1], d[2], r, d + 3});
  }
}

void raw_candidates(const Tensor& boxes, const Tensor& scores, float score_threshold, int background,
                    std::vector<Candidate>& out) {
  const std::int64_t rows = scores.shape()[scores.shape().size() - 2];
  const std::int64_t classes = scores.shape().back();
  const float* box = boxes.data<float>();
  const float* score = scores.data<float>();
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < classes; ++c) {
      const float s = score[r * classes + c];
      if (c == background || !(s > score_threshold)) continue;
      out.push_back({0.0f, static_cast<float>(c), s, r, box + r * 4});
    }
  }
}

// Greedy NMS within each (image, label) group, then the best top_k of all groups.
Tensor suppress(std::vector<Candidate>& candidates, const DetectionOutputOptions& options) {
  const auto same_group = [](const Candidate& a, const Candidate& b) {
    return a.image == b.image && a.label == b.label;
  };
  std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) {
    if (a.image != b.image) return a.image < b.image;
    if (a.label != b.label) return a.label < b.label;
    if (a.score != b.score) return a.score > b.score;
    return a.row < b.row;
  });

  std::vector<Candidate> kept;
  const std::size_t top_k = static_cast<std::size_t>(options.top_k);
  for (std::size_t begin = 0; begin < candidates.size();) {
    std::size_t end = begin + 1;
    while (end < candidates.size() && same_group(candidates[begin], candidates[end])) ++end;
    const std::size_t group = kept.size();
    // A group's boxes come best first, so past its top_k kept ones none can make the final top_k.
    for (std::size_t i = begin; i < end && kept.size() - group < top_k; ++i) {
      bool overlaps = false;
      for (std::size_t j = group; j < kept.size() && !overlaps; ++j) {
        overlaps = iou(kept[j].box, candidates[i].box) > options.iou_threshold;
      }
      if (!overlaps) kept.push_back(candidates[i]);
    }
    begin = end;
  }

  const std::size_t m = std::min(kept.size(), top_k);
  std::partial_sort(kept.begin(), kept.begin() + static_cast<std::ptrdiff_t>(m), kept.end(),
                    [](const Candidate& a, const Candidate& b) {
                      if (a.score != b.score) return a.score > b.score;
                      if (a.row != b.row) return a.row < b.row;
                      return a.label < b.label;
                    });
  Tensor result = Tensor::empty(DType::Float32, {static_cast<std::int64_t>(m), 7});
  float* out = result.mutable_data<float>();
  for (std::size_t i = 0; i < m; ++i) {
    const Candidate& c = kept[i];
    float* d = out + i * 7;
    d[0] = c.image;
    d[1] = c.label;
    d[2] = c.score;
    std::copy(c.box, c.box + 4, d + 3);
  }
  return result;
}

void detection_output(Sample& sample, const DetectionOutputOptions& options) {
  static constexpr const char* kDetections = "float32 [1, 1, N, 7] or [N, 7] SSD detections";
  static constexpr const char* kBoxes = "float32 [N, 4] or [1, N, 4] boxes";
  static constexpr const char* kScores = "float32 [N, C] or [1, N, C] class scores";
  static constexpr const char* kStage = "DetectionOutput";
  std::vector<Candidate> candidates;
  Tensor result;

  if (!options.boxes.empty()) {
    const std::size_t b = find_tensor(sample, options.boxes, kStage);
    const std::size_t s = find_tensor(sample, options.scores, kStage);
    require_float32(sample, b, kStage, kBoxes);
    require_float32(sample, s, kStage, kScores);
    const Shape& bs = sample.tensors[b].shape();
    const Shape& ss = sample.tensors[s].shape();
    if (!(bs.size() == 2 || (bs.size() == 3 && bs[0] == 1)) || bs.back() != 4) wrong_shape(sample, b, kStage, kBoxes);
    if (!(ss.size() == 2 || (ss.size() == 3 && ss[0] == 1))) wrong_shape(sample, s, kStage, kScores);
    if (bs[bs.size() - 2] != ss[ss.size() - 2]) {
      throw ShapeError(std::string(kStage) + ": " + tensor_label(sample, b) + " is " +
                       sample.tensors[b].describe() + " but " + tensor_label(sample, s) + " is " +
                       sample.tensors[s].describe() + "; expected one row of class scores per box");
    }
    raw_candidates(sample.tensors[b], sample.tensors[s], options.score_threshold, options.background_label,
                   candidates);
    result = suppress(candidates, options);
    erase_tensor(sample, std::max(b, s));
    erase_tensor(sample, std::min(b, s));
  } else {
    std::size_t at = 0;
    if (!options.detections.empty()) {
      at = find_tensor(sample, options.detections, kStage);
    } else {
      while (at < sample.tensors.size() &&
             (sample.tensors[at].shape().empty() || sample.tensors[at].shape().back() != 7)) {
        ++at;
      }
      if (at == sample.tensors.size()) {
        throw ShapeError(std::string(kStage) + ": no tensor has a last dimension of 7; expected " + kDetections +
                         " (or set boxes and scores); the sample has " + describe_tensors(sample));
      }
    }
    require_float32(sample, at, kStage, kDetections);
    const Shape& shape = sample.tensors[at].shape();
    const bool ok = (shape.size() == 2 && shape[1] == 7) ||
                    (shape.size() == 4 && shape[0] == 1 && shape[1] == 1 && shape[3] == 7);
    if (!ok) wrong_shape(sample, at, kStage, kDetections);
    ssd_candidates(sample.tensors[at], options.score_threshold, candidates);
    result = suppress(candidates, options);
    erase_tensor(sample, at);
  }
  append_tensor(sample, "detections", std::move(result));
}

}  // namespace

Stage TopK(const TopKOptions& options) {
  if (options.k < 1) throw Error("TopK: k must be at least 1, got " + std::to_string(options.k));
  if (options.threads < 1) throw Error("TopK: threads must be at least 1, got " + std::to_string(options.threads));
  return Stage("TopK", [options](Sample& sample) { top_k(sample, options); }, options.threads);
}

Stage TopK(int k, bool softmax) {
  TopKOptions options;
  options.k = k;
  options.softmax = softmax;
  return TopK(options);
}

Stage DetectionOutput(const DetectionOutputOptions& options) {
  const auto fail = [](const std::string& what) { throw Error("DetectionOutput: " + what); };
  if (!std::isfinite(options.score_threshold)) {
    fail("score_threshold must be a finite number, got " + std::to_string(options.score_threshold));
  }
  if (!(options.iou_threshold >= 0.0f && options.iou_threshold <= 1.0f)) {
    fail("iou_threshold must be in [0, 1], got " + std::to_string(options.iou_threshold));
  }
  if (options.top_k < 1) fail("top_k must be at least 1, got " + std::to_string(options.top_k));
  if (options.background_label < -1) {
    fail("background_label must be a class index or -1 (none), got " + std::to_string(options.background_label));
  }
  if (options.threads < 1) fail("threads must be at least 1, got " + std::to_string(options.threads));
  if (options.boxes.empty() != options.scores.empty()) {
    fail("raw input needs both boxes and scores named; got boxes='" + options.boxes + "', scores='" +
         options.scores + "'");
  }
  if (!options.boxes.empty() && options.boxes == options.scores) {
    fail("boxes and scores must be two tensors; both are named '" + options.boxes + "'");
  }
  if (!options.boxes.empty() && !options.detections.empty()) {
    fail("takes either SSD detections or raw boxes and scores; got detections='" + options.detections +
         "' and boxes='" + options.boxes + "', scores='" + options.scores + "'");
  }
  return Stage("DetectionOutput", [options](Sample& sample) { detection_output(sample, options); },
               options.threads);
}

Stage DetectionOutput(float score_threshold, float iou_threshold, int top_k) {
  DetectionOutputOptions options;
  options.score_threshold = score_threshold;
  options.iou_threshold = iou_threshold;
  options.top_k = top_k;
  return DetectionOutput(options);
}

}  // namespace ringflow

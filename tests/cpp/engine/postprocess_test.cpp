// TopK and DetectionOutput on hand-made samples: each stage's function is called directly, without
// a Run, so every case checks the exact tensors a stage leaves in the sample.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "check.hpp"
#include "ringflow/errors.hpp"
#include "ringflow/postprocess.hpp"
#include "ringflow/sample.hpp"
#include "ringflow/tensor.hpp"

using namespace ringflow;

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();

Tensor f32(Shape shape, const std::vector<float>& values) {
  CHECK_EQ(element_count(shape), values.size());
  return Tensor::copy_from(DType::Float32, std::move(shape), values.data());
}

Sample named(std::vector<std::pair<std::string, Tensor>> tensors) {
  Sample s;
  for (auto& [name, tensor] : tensors) {
    s.names.push_back(name);
    s.tensors.push_back(std::move(tensor));
  }
  return s;
}

Sample apply(const Stage& stage, Sample sample) {
  stage.function()(sample);
  CHECK_EQ(sample.names.size(), sample.tensors.size());
  return sample;
}

template <typename T>
std::vector<T> values(const Tensor& t) {
  const T* data = t.data<T>();
  return std::vector<T>(data, data + element_count(t.shape()));
}

std::vector<std::int64_t> indices(const Sample& s) {
  CHECK_EQ(s.at("topk_indices").dtype(), DType::Int64);
  return values<std::int64_t>(s.at("topk_indices"));
}

std::vector<float> scores(const Sample& s) {
  CHECK_EQ(s.at("topk_scores").dtype(), DType::Float32);
  return values<float>(s.at("topk_scores"));
}

// The "detections" rows, each [image_id, label, score, x_min, y_min, x_max, y_max].
std::vector<std::vector<float>> detections(const Sample& s) {
  const Tensor& t = s.at("detections");
  CHECK_EQ(t.dtype(), DType::Float32);
  CHECK_EQ(t.shape().size(), 2u);
  CHECK_EQ(t.shape()[1], 7);
  const std::vector<float> flat = values<float>(t);
  std::vector<std::vector<float>> rows;
  for (std::size_t i = 0; i < flat.size(); i += 7) rows.emplace_back(flat.begin() + i, flat.begin() + i + 7);
  return rows;
}

using Rows = std::vector<std::vector<float>>;

DetectionOutputOptions raw_options(float score_threshold, float iou_threshold, int top_k) {
  DetectionOutputOptions o;
  o.score_threshold = score_threshold;
  o.iou_threshold = iou_threshold;
  o.top_k = top_k;
  o.boxes = "boxes";
  o.scores = "scores";
  return o;
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// TopK

TEST(topk_stage_is_named_and_threaded_as_asked) {
  CHECK_EQ(TopK(5).name(), "TopK");
  TopKOptions o;
  o.threads = 3;
  CHECK_EQ(TopK(o).threads(), 3);
  CHECK_EQ(DetectionOutput().name(), "DetectionOutput");
  CHECK_EQ(DetectionOutput().threads(), 1);
}

TEST(topk_ties_go_to_the_lower_index) {
  const Sample s = apply(TopK(3), make_sample({f32({6}, {1, 3, 0, 3, 2, 3})}));
  CHECK_EQ(s.names, (std::vector<std::string>{"topk_indices", "topk_scores"}));
  CHECK_EQ(s.at("topk_indices").shape(), (Shape{3}));
  CHECK_EQ(s.at("topk_scores").shape(), (Shape{3}));
  CHECK_EQ(indices(s), (std::vector<std::int64_t>{1, 3, 5}));
  CHECK_EQ(scores(s), (std::vector<float>{3, 3, 3}));
}

TEST(topk_negative_zero_ties_with_zero) {
  const Sample s = apply(TopK(2), make_sample({f32({3}, {-1.0f, -0.0f, 0.0f})}));
  CHECK_EQ(indices(s), (std::vector<std::int64_t>{1, 2}));
}

TEST(topk_larger_than_the_class_count_gives_every_class) {
  const Sample s = apply(TopK(10), make_sample({f32({2, 3}, {0.5f, 2, 1, 7, 7, -1})}));
  CHECK_EQ(s.at("topk_indices").shape(), (Shape{2, 3}));
  CHECK_EQ(indices(s), (std::vector<std::int64_t>{1, 2, 0, 0, 1, 2}));
  CHECK_EQ(scores(s), (std::vector<float>{2, 1, 0.5f, 7, 7, -1}));
}

TEST(topk_of_a_vector_and_of_a_one_row_matrix_agree_but_for_the_shape) {
  const std::vector<float> logits{0.1f, 0.9f, 0.4f, 0.8f, 0.2f};
  const Sample vector = apply(TopK(2), make_sample({f32({5}, logits)}));
  const Sample matrix = apply(TopK(2), make_sample({f32({1, 5}, logits)}));
  CHECK_EQ(vector.at("topk_indices").shape(), (Shape{2}));
  CHECK_EQ(matrix.at("topk_indices").shape(), (Shape{1, 2}));
  CHECK_EQ(matrix.at("topk_scores").shape(), (Shape{1, 2}));
  CHECK_EQ(indices(vector), (std::vector<std::int64_t>{1, 3}));
  CHECK_EQ(indices(matrix), indices(vector));
  CHECK_EQ(scores(matrix), scores(vector));
}

TEST(topk_ranks_each_row_on_its_own) {
  const Sample s = apply(TopK(1), make_sample({f32({3, 2}, {1, 2, 4, 3, 5, 5})}));
  CHECK_EQ(indices(s), (std::vector<std::int64_t>{1, 0, 0}));
  CHECK_EQ(scores(s), (std::vector<float>{2, 4, 5}));
}

TEST(topk_of_zero_rows_is_empty) {
  const Sample s = apply(TopK(2), make_sample({f32({0, 4}, {})}));
  CHECK_EQ(s.at("topk_indices").shape(), (Shape{0, 2}));
  CHECK_EQ(s.at("topk_scores").shape(), (Shape{0, 2}));
}

TEST(topk_softmax_probabilities_sum_to_one_and_match_the_formula) {
  const std::vector<float> logits{1, 2, 3, 0};
  const Sample s = apply(TopK(4, true), make_sample({f32({4}, logits)}));
  CHECK_EQ(indices(s), (std::vector<std::int64_t>{2, 1, 0, 3}));
  const std::vector<float> p = scores(s);
  double sum = 0;
  double denominator = 0;
  for (float x : logits) denominator += std::exp(static_cast<double>(x));
  for (std::size_t i = 0; i < p.size(); ++i) {
    sum += p[i];
    const double expected = std::exp(static_cast<double>(logits[indices(s)[i]])) / denominator;
    CHECK(std::fabs(p[i] - expected) < 1e-6);
  }
  CHECK(std::fabs(sum - 1.0) < 1e-6);
}

TEST(topk_softmax_is_over_the_whole_row_even_when_k_is_smaller) {
  const Sample s = apply(TopK(1, true), make_sample({f32({2, 2}, {0, 0, 0, std::log(3.0f)})}));
  CHECK_EQ(indices(s), (std::vector<std::int64_t>{0, 1}));
  const std::vector<float> p = scores(s);
  CHECK(std::fabs(p[0] - 0.5f) < 1e-6f);
  CHECK(std::fabs(p[1] - 0.75f) < 1e-6f);
}

TEST(topk_softmax_is_stable_for_huge_logits) {
  const Sample s = apply(TopK(2, true), make_sample({f32({3}, {1000, 999, -1000})}));
  const std::vector<float> p = scores(s);
  CHECK_EQ(indices(s), (std::vector<std::int64_t>{0, 1}));
  CHECK(std::isfinite(p[0]) && std::isfinite(p[1]));
  CHECK(std::fabs(p[0] - 0.7310586f) < 1e-6f);
  CHECK(std::fabs(p[1] - 0.2689414f) < 1e-6f);
}

TEST(topk_ranks_nan_below_every_number) {
  const Sample s = apply(TopK(4), make_sample({f32({4}, {kNaN, -INFINITY, kNaN, 1})}));
  CHECK_EQ(indices(s), (std::vector<std::int64_t>{3, 1, 0, 2}));
}

TEST(topk_softmax_of_a_row_with_nan_is_nan) {
  const Sample s = apply(TopK(2, true), make_sample({f32({2, 3}, {1, kNaN, 2, 1, 2, 3})}));
  const std::vector<float> p = scores(s);
  CHECK(std::isnan(p[0]) && std::isnan(p[1]));
  CHECK_EQ(indices(s)[0], 0);  // all NaN: a tie, so index order
  CHECK_EQ(indices(s)[2], 2);
  CHECK(std::isfinite(p[2]) && std::isfinite(p[3]));
}

TEST(topk_replaces_its_named_input_and_keeps_the_other_tensors) {
  TopKOptions o;
  o.k = 1;
  o.input = "logits";
  Sample in = named({{"features", f32({2}, {9, 8})}, {"logits", f32({3}, {1, 5, 2})}, {"extra", f32({1}, {4})}});
  in.frame_id = 42;
  in.stream_id = "cam";
  const Sample s = apply(TopK(o), in);
  CHECK_EQ(s.names, (std::vector<std::string>{"features", "extra", "topk_indices", "topk_scores"}));
  CHECK_EQ(indices(s), (std::vector<std::int64_t>{1}));
  CHECK_EQ(values<float>(s.at("features")), (std::vector<float>{9, 8}));
  CHECK_EQ(s.frame_id, 42);
  CHECK_EQ(s.stream_id, "cam");
}

TEST(topk_without_a_name_ranks_the_first_tensor_even_with_names_missing) {
  Sample in;
  in.tensors = {f32({2}, {1, 2}), f32({2}, {4, 3})};  // names left empty: a positional sample
  const Sample s = apply(TopK(1), in);
  CHECK_EQ(s.names, (std::vector<std::string>{"", "topk_indices", "topk_scores"}));
  CHECK_EQ(indices(s), (std::vector<std::int64_t>{1}));
  CHECK_EQ(values<float>(s.tensors[0]), (std::vector<float>{4, 3}));
}

TEST(topk_rejects_bad_options) {
  CHECK_THROWS_WITH(TopK(0), Error, "k must be at least 1, got 0");
  TopKOptions o;
  o.threads = 0;
  CHECK_THROWS_WITH(TopK(o), Error, "threads must be at least 1");
}

TEST(topk_rejects_the_wrong_dtype_naming_what_it_got) {
  const std::vector<std::int64_t> v{1, 2, 3};
  Sample in = named({{"logits", Tensor::copy_from(DType::Int64, {3}, v.data())}});
  CHECK_THROWS_WITH(apply(TopK(2), in), DTypeError, "'logits' is int64 [3]; expected float32 [C] or [N, C]");
  Sample doubles = make_sample({Tensor::allocate(DType::Float64, {1, 3})});
  CHECK_THROWS_WITH(apply(TopK(2), doubles), DTypeError, "float64 [1, 3]");
}

TEST(topk_rejects_the_wrong_rank_naming_what_it_got) {
  CHECK_THROWS_WITH(apply(TopK(2), make_sample({Tensor::allocate(DType::Float32, {1, 2, 3})})), ShapeError,
                    "tensor #0 is float32 [1, 2, 3]; expected float32 [C] or [N, C]");
  CHECK_THROWS_WITH(apply(TopK(2), make_sample({Tensor::allocate(DType::Float32, {})})), ShapeError,
                    "float32 []");
  CHECK_THROWS_WITH(apply(TopK(2), make_sample({Tensor::allocate(DType::Float32, {3, 0})})), ShapeError,
                    "C >= 1");
}

TEST(topk_rejects_a_missing_input_listing_what_the_sample_has) {
  TopKOptions o;
  o.input = "logits";
  CHECK_THROWS_WITH(apply(TopK(o), named({{"probs", f32({2}, {1, 2})}})), ShapeError,
                    "no tensor named 'logits'; it has 'probs' float32 [2]");
  CHECK_THROWS_WITH(apply(TopK(1), Sample{}), ShapeError, "holds no tensors");
}

TEST(topk_leaves_a_rejected_sample_untouched) {
  Sample in = named({{"x", Tensor::allocate(DType::Int32, {3})}});
  Sample copy = in;
  CHECK_THROWS(TopK(1).function()(copy), DTypeError);
  CHECK_EQ(copy.names, in.names);
  CHECK_EQ(copy.tensors.size(), 1u);
  Sample positional;
  positional.tensors = {Tensor::allocate(DType::Float32, {2, 2, 2})};
  CHECK_THROWS(TopK(1).function()(positional), ShapeError);
  CHECK(positional.names.empty());
}

// ------------------------------------------------------------------------------------------------
// DetectionOutput, SSD rows [image_id, label, score, x_min, y_min, x_max, y_max]

TEST(ssd_all_below_threshold_gives_no_detections) {
  // 0.5 itself is not above the threshold.
  const Sample s = apply(DetectionOutput(0.5f), make_sample({f32({1, 1, 3, 7}, {
                                                   0, 1, 0.5f, 0, 0, 1, 1,
                                                   0, 1, 0.2f, 0, 0, 1, 1,
                                                   0, 2, kNaN, 0, 0, 1, 1,
                                               })}));
  CHECK_EQ(s.names, (std::vector<std::string>{"detections"}));
  CHECK_EQ(s.at("detections").shape(), (Shape{0, 7}));
}

TEST(ssd_of_zero_rows_gives_no_detections) {
  const Sample s = apply(DetectionOutput(), make_sample({f32({0, 7}, {})}));
  CHECK_EQ(s.at("detections").shape(), (Shape{0, 7}));
}

TEST(ssd_overlapping_boxes_of_one_class_leave_only_the_best) {
  const Sample s = apply(DetectionOutput(0.1f, 0.45f, 200), make_sample({f32({4, 7}, {
                                                                0, 3, 0.6f, 0.00f, 0.00f, 1.00f, 1.00f,
                                                                0, 3, 0.9f, 0.05f, 0.00f, 1.00f, 1.00f,
                                                                0, 3, 0.7f, 0.00f, 0.05f, 1.00f, 0.95f,
                                                                0, 3, 0.8f, 0.00f, 0.00f, 0.90f, 1.00f,
                                                            })}));
  CHECK_EQ(detections(s), (Rows{{0, 3, 0.9f, 0.05f, 0.00f, 1.00f, 1.00f}}));
}

TEST(ssd_overlapping_boxes_of_two_classes_are_both_kept) {
  const Sample s = apply(DetectionOutput(0.1f, 0.45f, 200), make_sample({f32({1, 1, 3, 7}, {
                                                                0, 1, 0.6f, 0, 0, 1, 1,
                                                                0, 2, 0.9f, 0, 0, 1, 1,
                                                                0, 1, 0.7f, 0, 0, 1, 1,
                                                            })}));
  CHECK_EQ(detections(s), (Rows{{0, 2, 0.9f, 0, 0, 1, 1}, {0, 1, 0.7f, 0, 0, 1, 1}}));
}

TEST(ssd_boxes_of_different_images_do_not_suppress_each_other) {
  const Sample s = apply(DetectionOutput(0.1f, 0.45f, 200), make_sample({f32({2, 7}, {
                                                                1, 1, 0.6f, 0, 0, 1, 1,
                                                                0, 1, 0.9f, 0, 0, 1, 1,
                                                            })}));
  CHECK_EQ(detections(s), (Rows{{0, 1, 0.9f, 0, 0, 1, 1}, {1, 1, 0.6f, 0, 0, 1, 1}}));
}

TEST(ssd_iou_equal_to_the_threshold_is_not_suppressed) {
  // IoU 2 / 4 = 0.5 exactly.
  const Tensor rows = f32({2, 7}, {0, 1, 0.9f, 0, 0, 2, 2, 0, 1, 0.8f, 0, 0, 2, 1});
  CHECK_EQ(detections(apply(DetectionOutput(0.1f, 0.5f, 200), make_sample({rows}))).size(), 2u);
  CHECK_EQ(detections(apply(DetectionOutput(0.1f, 0.49f, 200), make_sample({rows}))).size(), 1u);
}

TEST(ssd_iou_threshold_one_keeps_everything_and_zero_drops_any_overlap) {
  const Tensor rows = f32({3, 7}, {0, 1, 0.9f, 0, 0, 1, 1,  //
                                   0, 1, 0.8f, 0, 0, 1, 1,  //
                                   0, 1, 0.7f, 0.99f, 0.99f, 2, 2});
  CHECK_EQ(detections(apply(DetectionOutput(0.1f, 1.0f, 200), make_sample({rows}))).size(), 3u);
  CHECK_EQ(detections(apply(DetectionOutput(0.1f, 0.0f, 200), make_sample({rows}))).size(), 1u);
  // Touching boxes share an edge, not an area.
  const Tensor touching = f32({2, 7}, {0, 1, 0.9f, 0, 0, 1, 1, 0, 1, 0.8f, 1, 0, 2, 1});
  CHECK_EQ(detections(apply(DetectionOutput(0.1f, 0.0f, 200), make_sample({touching}))).size(), 2u);
}

TEST(ssd_degenerate_boxes_overlap_nothing) {
  const Sample s = apply(DetectionOutput(0.1f, 0.0f, 200), make_sample({f32({4, 7}, {
                                                               0, 1, 0.9f, 0.5f, 0.5f, 0.5f, 0.5f,  // a point
                                                               0, 1, 0.8f, 0.5f, 0.5f, 0.5f, 0.5f,
                                                               0, 1, 0.7f, 0.0f, 0.0f, 1.0f, 0.0f,  // a line
                                                               0, 1, 0.6f, 1.0f, 1.0f, 0.0f, 0.0f,  // inverted
                                                           })}));
  CHECK_EQ(detections(s).size(), 4u);
}

TEST(ssd_top_k_keeps_the_best) {
  const Sample s = apply(DetectionOutput(0.1f, 0.45f, 2), make_sample({f32({4, 7}, {
                                                              0, 1, 0.3f, 0, 0, 1, 1,
                                                              0, 2, 0.8f, 0, 0, 1, 1,
                                                              0, 3, 0.5f, 0, 0, 1, 1,
                                                              0, 1, 0.9f, 2, 2, 3, 3,
                                                          })}));
  CHECK_EQ(detections(s), (Rows{{0, 1, 0.9f, 2, 2, 3, 3}, {0, 2, 0.8f, 0, 0, 1, 1}}));
}

TEST(ssd_equal_scores_keep_the_input_order) {
  const Sample s = apply(DetectionOutput(0.1f, 0.45f, 200), make_sample({f32({3, 7}, {
                                                                0, 5, 0.5f, 0, 0, 1, 1,
                                                                0, 1, 0.5f, 2, 2, 3, 3,
                                                                0, 1, 0.5f, 0, 0, 1, 1,
                                                            })}));
  CHECK_EQ(detections(s), (Rows{{0, 5, 0.5f, 0, 0, 1, 1}, {0, 1, 0.5f, 2, 2, 3, 3}, {0, 1, 0.5f, 0, 0, 1, 1}}));
  // Within one class the earlier of two equal boxes wins the suppression.
  const Sample same = apply(DetectionOutput(0.1f, 0.45f, 200), make_sample({f32({2, 7}, {
                                                                   0, 1, 0.5f, 0, 0, 1, 1,
                                                                   0, 1, 0.5f, 0, 0, 1, 1.01f,
                                                               })}));
  CHECK_EQ(detections(same), (Rows{{0, 1, 0.5f, 0, 0, 1, 1}}));
}

TEST(ssd_rows_with_nan_label_or_image_are_skipped) {
  const Sample s = apply(DetectionOutput(0.1f, 0.45f, 200), make_sample({f32({3, 7}, {
                                                                0, kNaN, 0.9f, 0, 0, 1, 1,
                                                                kNaN, 1, 0.9f, 0, 0, 1, 1,
                                                                0, 1, 0.8f, 0, 0, 1, 1,
                                                            })}));
  CHECK_EQ(detections(s), (Rows{{0, 1, 0.8f, 0, 0, 1, 1}}));
}

TEST(ssd_input_is_found_by_its_last_dimension_or_its_name) {
  Sample in = named({{"boxes", f32({1, 4}, {0, 0, 1, 1})}, {"out", f32({1, 7}, {0, 1, 0.9f, 0, 0, 1, 1})}});
  const Sample s = apply(DetectionOutput(), in);
  CHECK_EQ(s.names, (std::vector<std::string>{"boxes", "detections"}));
  CHECK_EQ(detections(s).size(), 1u);

  DetectionOutputOptions o;
  o.detections = "second";
  Sample two = named({{"first", f32({1, 7}, {0, 1, 0.9f, 0, 0, 1, 1})}, {"second", f32({1, 7}, {0, 2, 0.8f, 0, 0, 1, 1})}});
  const Sample t = apply(DetectionOutput(o), two);
  CHECK_EQ(t.names, (std::vector<std::string>{"first", "detections"}));
  CHECK_EQ(detections(t), (Rows{{0, 2, 0.8f, 0, 0, 1, 1}}));
}

// ------------------------------------------------------------------------------------------------
// DetectionOutput, raw boxes [N, 4] and scores [N, C]

TEST(raw_boxes_and_scores_are_suppressed_per_class) {
  const Sample s = apply(DetectionOutput(raw_options(0.3f, 0.5f, 200)),
                         named({{"boxes", f32({3, 4}, {0, 0, 1, 1,  //
                                                       0, 0, 1, 0.9f,  //
                                                       5, 5, 6, 6})},
                                {"scores", f32({3, 3}, {0.1f, 0.9f, 0.4f,  //
                                                        0.2f, 0.8f, 0.6f,  //
                                                        0.95f, 0.0f, 0.35f})}}));
  CHECK_EQ(s.names, (std::vector<std::string>{"detections"}));
  CHECK_EQ(detections(s), (Rows{{0, 0, 0.95f, 5, 5, 6, 6},
                                {0, 1, 0.9f, 0, 0, 1, 1},
                                {0, 2, 0.6f, 0, 0, 1, 0.9f},
                                {0, 2, 0.35f, 5, 5, 6, 6}}));
}

TEST(raw_background_label_is_skipped) {
  DetectionOutputOptions o = raw_options(0.3f, 0.5f, 200);
  o.background_label = 0;
  const Sample s = apply(DetectionOutput(o), named({{"scores", f32({1, 2, 2}, {0.9f, 0.4f, 0.8f, 0.2f})},
                                                    {"boxes", f32({1, 2, 4}, {0, 0, 1, 1, 2, 2, 3, 3})},
                                                    {"other", f32({1}, {7})}}));
  CHECK_EQ(s.names, (std::vector<std::string>{"other", "detections"}));
  CHECK_EQ(detections(s), (Rows{{0, 1, 0.4f, 0, 0, 1, 1}}));
}

TEST(raw_equal_scores_of_one_box_go_to_the_lower_label) {
  const Sample s = apply(DetectionOutput(raw_options(0.1f, 0.5f, 200)),
                         named({{"boxes", f32({2, 4}, {0, 0, 1, 1, 2, 2, 3, 3})},
                                {"scores", f32({2, 3}, {0.5f, 0.7f, 0.7f, 0.7f, 0.7f, 0.0f})}}));
  CHECK_EQ(detections(s), (Rows{{0, 1, 0.7f, 0, 0, 1, 1},
                                {0, 2, 0.7f, 0, 0, 1, 1},
                                {0, 0, 0.7f, 2, 2, 3, 3},
                                {0, 1, 0.7f, 2, 2, 3, 3},
                                {0, 0, 0.5f, 0, 0, 1, 1}}));
}

TEST(raw_top_k_truncates_across_classes) {
  const Sample s = apply(DetectionOutput(raw_options(0.1f, 0.5f, 3)),
                         named({{"boxes", f32({3, 4}, {0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5})},
                                {"scores", f32({3, 2}, {0.2f, 0.3f, 0.9f, 0.4f, 0.5f, 0.6f})}}));
  CHECK_EQ(detections(s), (Rows{{0, 0, 0.9f, 2, 2, 3, 3}, {0, 1, 0.6f, 4, 4, 5, 5}, {0, 0, 0.5f, 4, 4, 5, 5}}));
}

TEST(raw_all_below_threshold_gives_no_detections) {
  const Sample s = apply(DetectionOutput(raw_options(0.5f, 0.5f, 200)),
                         named({{"boxes", f32({2, 4}, {0, 0, 1, 1, 2, 2, 3, 3})},
                                {"scores", f32({2, 2}, {0.5f, 0.1f, kNaN, 0.0f})}}));
  CHECK_EQ(s.at("detections").shape(), (Shape{0, 7}));
}

TEST(detection_output_rejects_bad_options) {
  CHECK_THROWS_WITH(DetectionOutput(0.5f, 0.45f, 0), Error, "top_k must be at least 1, got 0");
  CHECK_THROWS_WITH(DetectionOutput(0.5f, 1.5f, 10), Error, "iou_threshold must be in [0, 1]");
  CHECK_THROWS_WITH(DetectionOutput(0.5f, -0.1f, 10), Error, "iou_threshold must be in [0, 1]");
  CHECK_THROWS_WITH(DetectionOutput(kNaN, 0.5f, 10), Error, "score_threshold must be a finite number");
  CHECK_THROWS_WITH(DetectionOutput(0.5f, kNaN, 10), Error, "iou_threshold");
  DetectionOutputOptions o;
  o.boxes = "boxes";
  CHECK_THROWS_WITH(DetectionOutput(o), Error, "both boxes and scores");
  o.scores = "boxes";
  CHECK_THROWS_WITH(DetectionOutput(o), Error, "two tensors");
  o.scores = "scores";
  o.detections = "dets";
  CHECK_THROWS_WITH(DetectionOutput(o), Error, "either SSD detections or raw boxes and scores");
  DetectionOutputOptions b;
  b.background_label = -2;
  CHECK_THROWS_WITH(DetectionOutput(b), Error, "background_label");
  b.background_label = -1;
  b.threads = 0;
  CHECK_THROWS_WITH(DetectionOutput(b), Error, "threads must be at least 1");
}

TEST(detection_output_rejects_wrong_ssd_input) {
  CHECK_THROWS_WITH(apply(DetectionOutput(), make_sample({Tensor::allocate(DType::Float64, {2, 7})})), DTypeError,
                    "tensor #0 is float64 [2, 7]; expected float32 [1, 1, N, 7] or [N, 7]");
  CHECK_THROWS_WITH(apply(DetectionOutput(), make_sample({Tensor::allocate(DType::Float32, {1, 2, 7})})), ShapeError,
                    "float32 [1, 2, 7]; expected float32 [1, 1, N, 7] or [N, 7]");
  CHECK_THROWS_WITH(apply(DetectionOutput(), make_sample({Tensor::allocate(DType::Float32, {2, 1, 3, 7})})),
                    ShapeError, "[2, 1, 3, 7]");
  CHECK_THROWS_WITH(apply(DetectionOutput(), named({{"logits", Tensor::allocate(DType::Float32, {1, 6})}})),
                    ShapeError, "no tensor has a last dimension of 7");
  DetectionOutputOptions o;
  o.detections = "dets";
  CHECK_THROWS_WITH(apply(DetectionOutput(o), named({{"out", Tensor::allocate(DType::Float32, {1, 7})}})), ShapeError,
                    "no tensor named 'dets'; it has 'out' float32 [1, 7]");
  o.detections = "out";
  CHECK_THROWS_WITH(apply(DetectionOutput(o), named({{"out", Tensor::allocate(DType::Float32, {1, 8})}})), ShapeError,
                    "'out' is float32 [1, 8]");
}

TEST(detection_output_rejects_wrong_raw_input) {
  const auto run = [](Tensor boxes, Tensor scores) {
    return apply(DetectionOutput(raw_options(0.5f, 0.5f, 10)), named({{"boxes", boxes}, {"scores", scores}}));
  };
  CHECK_THROWS_WITH(run(Tensor::allocate(DType::Float32, {3, 5}), Tensor::allocate(DType::Float32, {3, 2})),
                    ShapeError, "'boxes' is float32 [3, 5]; expected float32 [N, 4] or [1, N, 4]");
  CHECK_THROWS_WITH(run(Tensor::allocate(DType::Float32, {2, 3, 4}), Tensor::allocate(DType::Float32, {3, 2})),
                    ShapeError, "'boxes' is float32 [2, 3, 4]");
  CHECK_THROWS_WITH(run(Tensor::allocate(DType::Float32, {3, 4}), Tensor::allocate(DType::Float32, {3})),
                    ShapeError, "'scores' is float32 [3]; expected float32 [N, C] or [1, N, C]");
  CHECK_THROWS_WITH(run(Tensor::allocate(DType::Float32, {3, 4}), Tensor::allocate(DType::Float32, {2, 3})),
                    ShapeError, "'boxes' is float32 [3, 4] but 'scores' is float32 [2, 3]");
  CHECK_THROWS_WITH(run(Tensor::allocate(DType::Float16, {3, 4}), Tensor::allocate(DType::Float32, {3, 2})),
                    DTypeError, "'boxes' is float16 [3, 4]");
  CHECK_THROWS_WITH(run(Tensor::allocate(DType::Float32, {3, 4}), Tensor::allocate(DType::Int64, {3, 2})),
                    DTypeError, "'scores' is int64 [3, 2]");
  CHECK_THROWS_WITH(apply(DetectionOutput(raw_options(0.5f, 0.5f, 10)),
                          named({{"boxes", Tensor::allocate(DType::Float32, {3, 4})}})),
                    ShapeError, "no tensor named 'scores'");
}

int main(int argc, char** argv) { return check::run_all(argc, argv); }

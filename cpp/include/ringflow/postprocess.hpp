// Built-in postprocessing stages. Add them after the model: graph.add(model.graph()).add(TopK(5)).
//
// Each reads the model's output(s) named below and replaces them with its own result tensors, so
// what reaches pull() (and, in Python, numpy) is the postprocessed result: the input tensor(s) are
// removed from the sample and the results appended after its other tensors.
//
// The factories throw Error for options out of range. On a sample, a missing input or one of the
// wrong rank or shape throws ShapeError, one of the wrong dtype DTypeError; either fails only that
// sample, and the message says what the stage got and what it expected.
#pragma once

#include <string>

#include "ringflow/stage.hpp"

namespace ringflow {

struct TopKOptions {
  int k = 5;             // at least 1
  bool softmax = false;  // scores are softmax probabilities over the whole row instead of raw values
  std::string input;     // the output to rank; empty: the sample's first tensor
  int threads = 1;
};

// For classifiers. Reads a float32 [C] or [N, C] tensor (N rows of C class scores, C >= 1) and
// replaces it with two tensors:
//   "topk_indices"  int64   [N, k]  class indices, best first; ties go to the lower index
//   "topk_scores"   float32 [N, k]  their scores (softmax probabilities with `softmax`)
// ([k] each for a [C] input). k larger than C gives C.
//
// Classes are ranked by the score reported, so with `softmax` two raw scores that round to the same
// probability count as a tie. NaN ranks below every number (NaNs among themselves by index). The
// softmax subtracts the row's maximum before exp(), in float; a NaN or +inf in a row makes all of
// that row's probabilities NaN, as numpy and ONNX's Softmax do.
Stage TopK(const TopKOptions& options);
Stage TopK(int k, bool softmax = false);

struct DetectionOutputOptions {
  float score_threshold = 0.5f;  // a detection is kept if its score is above this (finite)
  // Within a class, a box whose IoU with a better kept box is above this is dropped. In [0, 1]:
  // 1 keeps every box, 0 drops every box that overlaps a better one at all.
  float iou_threshold = 0.45f;
  int top_k = 200;               // at most this many detections, best first (at least 1)
  // SSD-style input: one float32 tensor [1, 1, N, 7] (or [N, 7]) of
  // [image_id, label, score, x_min, y_min, x_max, y_max]. Named by `detections` (empty: the first
  // tensor whose last dimension is 7).
  std::string detections;
  // Or raw boxes and scores: float32 [N, 4] boxes (x_min, y_min, x_max, y_max) and [N, C] class
  // scores, each optionally with a leading 1. Used when both names are given; naming only one, or
  // naming `detections` too, is an Error.
  std::string boxes;
  std::string scores;
  int background_label = -1;  // with raw scores, a class index to skip (-1: none); SSD rows ignore it
  int threads = 1;
};

// Per-class non-maximum suppression. Replaces its input(s) with
//   "detections"  float32 [M, 7]  [image_id, label, score, x_min, y_min, x_max, y_max]
// sorted by score, best first (ties: the earlier input row first, then the lower label); M <= top_k,
// and 0 when nothing passes the threshold. Coordinates are passed through as given (normalized or
// pixels). With raw input, image_id is 0 and label is the class index; SSD rows keep their own.
//
// Within each (image_id, label) group, candidates are visited best first (ties: earlier row first)
// and a box is dropped if its IoU with a box already kept in the group is above iou_threshold.
// IoU = intersection / (area_a + area_b - intersection), evaluated in double; a box without positive
// width and height (or with a NaN coordinate) has IoU 0 with everything, so it is never dropped for
// overlap. SSD rows with a NaN image_id or label are skipped, as are NaN scores.
Stage DetectionOutput(const DetectionOutputOptions& options);
Stage DetectionOutput(float score_threshold = 0.5f, float iou_threshold = 0.45f, int top_k = 200);

}  // namespace ringflow

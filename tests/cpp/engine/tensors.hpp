// Deterministic test inputs, run options, draining a Run and bit-exact comparisons of results.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "check.hpp"

#include "ringflow/run.hpp"
#include "ringflow/sample.hpp"
#include "ringflow/tensor.hpp"

inline ringflow::RunOptions depth_and_workers(std::size_t queue_depth, int workers) {
  ringflow::RunOptions options;
  options.queue_depth = queue_depth;
  options.workers = workers;
  return options;
}

// Closes the input and pulls to the end of the stream (each pull bounded by `pull_timeout_ms`, so a
// stream that never ends fails instead of hanging); the frame ids in pull order.
inline std::vector<std::int64_t> drain_frames(ringflow::Run& run, int pull_timeout_ms) {
  run.close_input();
  std::vector<std::int64_t> frames;
  for (;;) {
    const ringflow::PullResult r = run.pull_with_status(pull_timeout_ms);
    if (r.status != ringflow::PullStatus::Ok) {
      CHECK_EQ(r.status, ringflow::PullStatus::Closed);
      return frames;
    }
    frames.push_back(r.sample->frame_id);
  }
}

// A float32 [1, 64] row for tiny-mlp, different for every `index`.
inline ringflow::Tensor mlp_input(int index) {
  ringflow::Tensor row = ringflow::Tensor::allocate(ringflow::DType::Float32, {1, 64});
  float* values = row.mutable_data<float>();
  for (int k = 0; k < 64; ++k) values[k] = static_cast<float>((index * 31 + k * 7) % 23 - 11) / 8.0f;
  return row;
}

// An HWC uint8 frame whose pixels vary across rows, columns and channels.
inline ringflow::Tensor gradient_frame(std::int64_t height, std::int64_t width) {
  ringflow::Tensor frame = ringflow::Tensor::allocate(ringflow::DType::UInt8, {height, width, 3});
  std::uint8_t* pixels = frame.mutable_data<std::uint8_t>();
  for (std::int64_t y = 0; y < height; ++y) {
    for (std::int64_t x = 0; x < width; ++x) {
      for (std::int64_t c = 0; c < 3; ++c) pixels[(y * width + x) * 3 + c] = (y * 3 + x * 5 + c * 80) % 256;
    }
  }
  return frame;
}

inline bool same_bits(const ringflow::Tensor& a, const ringflow::Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && a.size_bytes() == b.size_bytes() &&
         std::memcmp(a.map_read().data, b.map_read().data, a.size_bytes()) == 0;
}

// Same output names and bit-identical tensors.
inline bool same_outputs(const ringflow::Sample& a, const ringflow::Sample& b) {
  if (a.names != b.names || a.tensors.size() != b.tensors.size()) return false;
  for (std::size_t i = 0; i < a.tensors.size(); ++i) {
    if (!same_bits(a.tensors[i], b.tensors[i])) return false;
  }
  return true;
}

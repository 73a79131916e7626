// What the C++ tutorials share and is not part of ringflow itself: argument parsing, locating the
// built-in models, and loading an image as an RGB frame.
#pragma once

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <stdexcept>
#include <string>

#include "builtin_models.hpp"
#include "ringflow/ringflow.hpp"

#ifdef RINGFLOW_TUTORIALS_HAVE_OPENCV
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#endif

namespace tutorial {

// The tutorials' contract: "[OK] <name>" and exit status 0, or one "[FAIL] <reason>" line on
// stderr and exit status 1.
template <typename Body>
int run(const char* name, Body&& body) {
  try {
    body();
  } catch (const std::exception& e) {
    std::cerr << "[FAIL] " << e.what() << "\n";
    return 1;
  }
  std::cout << "[OK] " << name << "\n";
  return 0;
}

inline bool get_arg(int argc, char** argv, const std::string& key, std::string& out) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (key == argv[i]) {
      out = argv[i + 1];
      return true;
    }
  }
  return false;
}

inline int int_arg(int argc, char** argv, const std::string& key, int fallback) {
  std::string value;
  if (!get_arg(argc, argv, key, value)) return fallback;
  try {
    return std::stoi(value);
  } catch (const std::exception&) {
    throw std::runtime_error(key + " expects an integer, got '" + value + "'");
  }
}

// The built-in models come from the Python module ringflow.models, one generator for both languages.
inline std::string builtin_model(const std::string& name) { return ringflow::support::builtin_model_path(name); }

// A uniform grey frame: the tutorials' default input, identical in C++ and Python.
inline ringflow::Tensor gray_frame(int size, std::uint8_t level) {
  ringflow::Tensor frame = ringflow::Tensor::allocate(ringflow::DType::UInt8, {size, size, 3});
  ringflow::MutableMapping m = frame.map_write();
  std::fill_n(static_cast<std::uint8_t*>(m.data), m.size_bytes, level);
  return frame;
}

// An image file as an RGB uint8 [H, W, 3] frame.
inline ringflow::Tensor load_rgb(const std::string& path) {
#ifdef RINGFLOW_TUTORIALS_HAVE_OPENCV
  cv::Mat bgr = cv::imread(path, cv::IMREAD_COLOR);
  if (bgr.empty()) throw std::runtime_error("failed to read image: " + path);
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  return ringflow::Tensor::copy_from(ringflow::DType::UInt8, {rgb.rows, rgb.cols, 3}, rgb.data);
#else
  throw std::runtime_error("--image needs OpenCV, which this build did not find (install "
                           "libopencv-imgcodecs-dev and reconfigure); cannot read " + path);
#endif
}

inline int top1(const ringflow::Sample& out) {
  const ringflow::Tensor& logits = ringflow::tensors_from_sample(out, true).front();
  const ringflow::Mapping m = logits.map_read();
  const auto* p = static_cast<const float*>(m.data);
  const std::size_t n = m.size_bytes / sizeof(float);
  return static_cast<int>(std::max_element(p, p + n) - p);
}

}  // namespace tutorial

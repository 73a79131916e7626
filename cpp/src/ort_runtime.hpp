// Where ringflow meets ONNX Runtime: loading the shared library at run time, the process-wide
// environment, and dtype conversions. Every other source uses ORT through this header.
#pragma once

#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>

#include <string>

#include "ringflow/tensor.hpp"

namespace ringflow::ort {

// Loads libonnxruntime (once) and initialises the C++ API. Throws ModelError when no usable
// library is found, saying where it looked.
void ensure_loaded();

// The process-wide ORT environment, created on first use and never destroyed: sessions may
// outlive static destructors, and ORT must not be torn down under them.
Ort::Env& env();

DType to_dtype(ONNXTensorElementDataType type, const std::string& what);
ONNXTensorElementDataType to_onnx(DType dtype);

// A non-owning Ort::Value over a ringflow Tensor's buffer.
Ort::Value as_value(const Tensor& tensor);

}  // namespace ringflow::ort

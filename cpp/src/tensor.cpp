#include "ringflow/tensor.hpp"

#include <cstdlib>
#include <cstring>
#include <sstream>

#include "ringflow/errors.hpp"

namespace ringflow {

std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::Float64:
    case DType::Int64:
      return 8;
    case DType::Float32:
    case DType::Int32:
      return 4;
    case DType::Float16:
    case DType::Int16:
      return 2;
    case DType::Int8:
    case DType::UInt8:
    case DType::Bool:
      return 1;
  }
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::Float32: return "float32";
    case DType::Float16: return "float16";
    case DType::Float64: return "float64";
    case DType::Int8: return "int8";
    case DType::UInt8: return "uint8";
    case DType::Int16: return "int16";
    case DType::Int32: return "int32";
    case DType::Int64: return "int64";
    case DType::Bool: return "bool";
  }
  return "unknown";
}

std::size_t element_count(const Shape& shape) {
  std::size_t n = 1;
  for (std::int64_t d : shape) {
    if (d < 0) throw ShapeError("shape " + shape_to_string(shape) + " has a negative dimension");
    n *= static_cast<std::size_t>(d);
  }
  return n;
}

std::string shape_to_string(const Shape& shape) {
  std::ostringstream out;
  out << '[';
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) out << ", ";
    if (shape[i] < 0) {
      out << '?';
    } else {
      out << shape[i];
    }
  }
  out << ']';
  return out.str();
}

Tensor::Tensor(DType dtype, Shape shape, void* data, std::shared_ptr<const void> owner)
    : dtype_(dtype),
      shape_(std::move(shape)),
      data_(data),
      size_bytes_(element_count(shape_) * dtype_size(dtype)),
      owner_(std::move(owner)) {}

namespace {

// 64-byte alignment suits every SIMD kernel ONNX Runtime may run on the buffer.
std::shared_ptr<const void> aligned_buffer(std::size_t bytes) {
  void* data = std::aligned_alloc(64, bytes == 0 ? 64 : (bytes + 63) / 64 * 64);
  if (!data) throw std::bad_alloc();
  return std::shared_ptr<const void>(data, [](const void* p) { std::free(const_cast<void*>(p)); });
}

}  // namespace

Tensor Tensor::empty(DType dtype, Shape shape) {
  std::shared_ptr<const void> owner = aligned_buffer(element_count(shape) * dtype_size(dtype));
  void* data = const_cast<void*>(owner.get());
  return Tensor(dtype, std::move(shape), data, std::move(owner));
}

Tensor Tensor::allocate(DType dtype, Shape shape) {
  Tensor t = empty(dtype, std::move(shape));
  std::memset(t.data_, 0, t.size_bytes_);
  return t;
}

Tensor Tensor::copy_from(DType dtype, Shape shape, const void* data) {
  Tensor t = empty(dtype, std::move(shape));
  if (t.size_bytes_) std::memcpy(t.data_, data, t.size_bytes_);
  return t;
}

Tensor Tensor::borrow(DType dtype, Shape shape, void* data, std::shared_ptr<const void> keepalive) {
  return Tensor(dtype, std::move(shape), data, std::move(keepalive));
}

Tensor Tensor::clone() const { return copy_from(dtype_, shape_, data_); }

std::string Tensor::describe() const {
  return std::string(dtype_name(dtype_)) + " " + shape_to_string(shape_);
}

}  // namespace ringflow

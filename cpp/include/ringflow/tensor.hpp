// Tensor: a dtype, a shape and a contiguous, reference-counted buffer.
//
// Copying a Tensor is cheap and shares the buffer (like std::shared_ptr). Use clone() for a deep
// copy. A Tensor is either
//   - owned:    allocate() and copy_from() allocate a buffer that lives as long as any Tensor (or
//               Mapping) referring to it;
//   - borrowed: borrow() wraps memory the caller owns. The caller keeps that memory valid and
//               unchanged until every Tensor and Mapping made from it is gone, including the ones a
//               Run holds while the sample is in flight. Pass a `keepalive` owner to tie the memory's
//               lifetime to the Tensor instead.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ringflow {

enum class DType { Float32, Float16, Float64, Int8, UInt8, Int16, Int32, Int64, Bool };

std::size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);  // numpy's spelling: "float32", "uint8", "bool", ...

using Shape = std::vector<std::int64_t>;

std::size_t element_count(const Shape& shape);
std::string shape_to_string(const Shape& shape);  // "[1, 3, 224, 224]"; -1 prints as "?"

struct TensorSpec {
  std::string name;
  DType dtype = DType::Float32;
  Shape shape;  // -1 marks a dimension left dynamic
};

// A view of a tensor's bytes that keeps the buffer alive while it exists.
struct Mapping {
  const void* data = nullptr;
  std::size_t size_bytes = 0;
  std::shared_ptr<const void> keepalive;
};

struct MutableMapping {
  void* data = nullptr;
  std::size_t size_bytes = 0;
  std::shared_ptr<const void> keepalive;
};

class Tensor {
 public:
  Tensor() = default;

  // A new zero-filled buffer.
  static Tensor allocate(DType dtype, Shape shape);
  // A new buffer with unspecified contents (numpy.empty), for a caller about to overwrite it all.
  static Tensor empty(DType dtype, Shape shape);
  // A new buffer holding a copy of `data`, which must hold the whole tensor.
  static Tensor copy_from(DType dtype, Shape shape, const void* data);
  // Wraps `data` without copying; see the lifetime rule at the top of this header.
  static Tensor borrow(DType dtype, Shape shape, void* data,
                       std::shared_ptr<const void> keepalive = nullptr);

  Tensor clone() const;

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  std::size_t size_bytes() const { return size_bytes_; }
  bool empty() const { return data_ == nullptr; }

  Mapping map_read() const { return {data_, size_bytes_, owner_}; }
  MutableMapping map_write() { return {data_, size_bytes_, owner_}; }

  // Typed access for callers that have checked dtype().
  template <typename T>
  const T* data() const { return static_cast<const T*>(data_); }
  template <typename T>
  T* mutable_data() { return static_cast<T*>(data_); }

  std::string describe() const;  // "float32 [1, 3, 224, 224]"

 private:
  Tensor(DType dtype, Shape shape, void* data, std::shared_ptr<const void> owner);

  DType dtype_ = DType::Float32;
  Shape shape_;
  void* data_ = nullptr;
  std::size_t size_bytes_ = 0;
  std::shared_ptr<const void> owner_;
};

}  // namespace ringflow

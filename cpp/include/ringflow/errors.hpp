// Every error ringflow raises derives from ringflow::Error, and each message says what was wrong and
// what was expected. The Python bindings map each type to an exception of the same name.
#pragma once

#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

namespace ringflow {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An input has the wrong rank or shape for the model or the negotiated Run.
class ShapeError : public Error {
 public:
  using Error::Error;
};

// An input has the wrong element type.
class DTypeError : public Error {
 public:
  using Error::Error;
};

// A model file is missing, unreadable or not a valid ONNX model, or ONNX Runtime cannot be loaded.
class ModelError : public Error {
 public:
  using Error::Error;
};

// push() or try_push() after close_input().
class ClosedError : public Error {
 public:
  using Error::Error;
};

// A call did not finish within its timeout.
class TimeoutError : public Error {
 public:
  using Error::Error;
};

// ONNX Runtime or a pipeline stage failed on one sample. The Run goes on with the next sample.
class InferenceError : public Error {
 public:
  using Error::Error;
};

// The sample was dropped by Run::cancel() before it ran.
class CancelledError : public Error {
 public:
  using Error::Error;
};

// A user callback threw. The operation that called it completed: accepted() says whether the
// sample pushed by the call that raised this was accepted (so a retry cannot duplicate it), and
// causes() holds the callbacks' own exceptions, in the order they were raised.
class CallbackError : public Error {
 public:
  explicit CallbackError(const std::string& what, bool accepted = false, std::exception_ptr cause = nullptr)
      : Error(what), accepted_(accepted) {
    if (cause) causes_.push_back(std::move(cause));
  }
  CallbackError(const std::string& what, bool accepted, std::vector<std::exception_ptr> causes)
      : Error(what), accepted_(accepted), causes_(std::move(causes)) {}
  bool accepted() const noexcept { return accepted_; }
  std::exception_ptr cause() const noexcept { return causes_.empty() ? nullptr : causes_.front(); }
  const std::vector<std::exception_ptr>& causes() const noexcept { return causes_; }

 private:
  bool accepted_;
  std::vector<std::exception_ptr> causes_;
};

}  // namespace ringflow

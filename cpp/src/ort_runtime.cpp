#include "ort_runtime.hpp"

#include <dlfcn.h>
#include <glob.h>

#include <cstdlib>
#include <mutex>
#include <vector>

#include "fork_guard.hpp"
#include "ringflow/errors.hpp"
#include "ringflow/model.hpp"

namespace ringflow {
namespace {

std::mutex g_load_mutex;
std::string g_requested_library;  // set_onnxruntime_library()
bool g_loaded = false;
std::string g_version;

// Newest first, so a directory holding several versions picks the latest.
std::vector<std::string> libraries_in(const std::string& dir) {
  std::vector<std::string> found;
  glob_t g{};
  if (glob((dir + "/libonnxruntime.so*").c_str(), 0, nullptr, &g) == 0) {
    for (std::size_t i = g.gl_pathc; i-- > 0;) found.emplace_back(g.gl_pathv[i]);
  }
  globfree(&g);
  return found;
}

std::vector<std::string> candidate_libraries() {
  std::vector<std::string> candidates;
  if (!g_requested_library.empty()) return {g_requested_library};
  if (const char* env = std::getenv("RINGFLOW_ONNXRUNTIME_LIB"); env && *env) return {env};
#ifdef RINGFLOW_BUILD_ORT_LIBRARY_DIR
  for (std::string& lib : libraries_in(RINGFLOW_BUILD_ORT_LIBRARY_DIR)) {
    candidates.push_back(std::move(lib));
  }
#endif
  candidates.emplace_back("libonnxruntime.so.1");
  return candidates;
}

void load_locked() {
  if (g_loaded) return;
  std::string tried;
  for (const std::string& path : candidate_libraries()) {
    // RTLD_LOCAL keeps ORT's bundled dependencies (protobuf, ...) out of the global namespace,
    // where they could clash with another copy loaded by the onnxruntime Python package.
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      tried += "\n  " + path + ": " + dlerror();
      continue;
    }
    using GetApiBase = const OrtApiBase* (*)();
    auto get_api_base = reinterpret_cast<GetApiBase>(dlsym(handle, "OrtGetApiBase"));
    const OrtApiBase* base = get_api_base ? get_api_base() : nullptr;
    const OrtApi* api = base ? base->GetApi(ORT_API_VERSION) : nullptr;
    if (!api) {
      tried += "\n  " + path + ": does not provide ONNX Runtime C API version " +
               std::to_string(ORT_API_VERSION) + " (library version " +
               (base ? base->GetVersionString() : "unknown") + ")";
      dlclose(handle);
      continue;
    }
    Ort::InitApi(api);
    g_version = base->GetVersionString();
    g_loaded = true;  // the handle is never closed: sessions hold code from it until exit
    exit_quickly_in_forked_children();
    return;
  }
  throw ModelError("could not load ONNX Runtime. Tried:" + tried +
                   "\nInstall the onnxruntime wheel, or set RINGFLOW_ONNXRUNTIME_LIB to a "
                   "libonnxruntime.so built with C API version >= " +
                   std::to_string(ORT_API_VERSION) + ".");
}

}  // namespace

void set_onnxruntime_library(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_load_mutex);
  if (g_loaded) return;  // the first library loaded stays for the life of the process
  g_requested_library = path;
}

std::string onnxruntime_version() {
  ort::ensure_loaded();
  return g_version;
}

namespace ort {

void ensure_loaded() {
  std::lock_guard<std::mutex> lock(g_load_mutex);
  load_locked();
}

Ort::Env& env() {
  ensure_loaded();
  static Ort::Env* const instance = new Ort::Env(ORT_LOGGING_LEVEL_WARNING, "ringflow");
  return *instance;
}

DType to_dtype(ONNXTensorElementDataType type, const std::string& what) {
  switch (type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return DType::Float32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return DType::Float16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: return DType::Float64;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8: return DType::Int8;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: return DType::UInt8;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16: return DType::Int16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return DType::Int32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return DType::Int64;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL: return DType::Bool;
    default:
      throw ModelError(what + " has ONNX element type " + std::to_string(static_cast<int>(type)) +
                       ", which ringflow does not support");
  }
}

ONNXTensorElementDataType to_onnx(DType dtype) {
  switch (dtype) {
    case DType::Float32: return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
    case DType::Float16: return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
    case DType::Float64: return ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE;
    case DType::Int8: return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8;
    case DType::UInt8: return ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;
    case DType::Int16: return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16;
    case DType::Int32: return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32;
    case DType::Int64: return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
    case DType::Bool: return ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL;
  }
  return ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
}

Ort::Value as_value(const Tensor& tensor) {
  static const Ort::MemoryInfo cpu = Ort::MemoryInfo::CreateCpu(OrtDeviceAllocator, OrtMemTypeDefault);
  // ORT's API takes non-const data for inputs and outputs alike; it never writes to an input.
  void* data = const_cast<void*>(tensor.map_read().data);
  return Ort::Value::CreateTensor(cpu, data, tensor.size_bytes(), tensor.shape().data(),
                                  tensor.shape().size(), to_onnx(tensor.dtype()));
}

}  // namespace ort
}  // namespace ringflow

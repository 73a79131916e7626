#include "providers.hpp"

#include <algorithm>
#include <cctype>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "ringflow/errors.hpp"

namespace ringflow {
namespace {

// How each provider is appended: the dedicated C API call where ORT has one (they take options the
// generic call does not), the generic SessionOptionsAppendExecutionProvider otherwise.
enum class Route { Cpu, Cuda, TensorRT, OpenVINO, Dnnl, Rocm, MIGraphX, Cann, VitisAI, Generic };

struct Provider {
  const char* short_name;  // what users write
  const char* ort_name;    // what Ort::GetAvailableProviders() reports
  Route route;
  const char* generic_name;  // the generic call's key, for Route::Generic
};

constexpr Provider kProviders[] = {
    {"cpu", "CPUExecutionProvider", Route::Cpu, nullptr},
    {"cuda", "CUDAExecutionProvider", Route::Cuda, nullptr},
    {"tensorrt", "TensorrtExecutionProvider", Route::TensorRT, nullptr},
    {"openvino", "OpenVINOExecutionProvider", Route::OpenVINO, nullptr},
    {"dnnl", "DnnlExecutionProvider", Route::Dnnl, nullptr},
    {"rocm", "ROCMExecutionProvider", Route::Rocm, nullptr},
    {"migraphx", "MIGraphXExecutionProvider", Route::MIGraphX, nullptr},
    {"cann", "CANNExecutionProvider", Route::Cann, nullptr},
    {"vitisai", "VitisAIExecutionProvider", Route::VitisAI, nullptr},
    {"coreml", "CoreMLExecutionProvider", Route::Generic, "CoreML"},
    {"xnnpack", "XnnpackExecutionProvider", Route::Generic, "XNNPACK"},
    {"qnn", "QNNExecutionProvider", Route::Generic, "QNN"},
    {"snpe", "SNPEExecutionProvider", Route::Generic, "SNPE"},
    {"webgpu", "WebGpuExecutionProvider", Route::Generic, "WebGPU"},
    {"azure", "AzureExecutionProvider", Route::Generic, "AZURE"},
};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

const Provider* find_provider(const std::string& name) {
  const std::string key = lower(name);
  for (const Provider& p : kProviders) {
    if (key == p.short_name || key == lower(p.ort_name)) return &p;
  }
  return nullptr;
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// The string key/value form of options that ORT's Create/Update*ProviderOptions functions take.
struct KeyValues {
  explicit KeyValues(const std::map<std::string, std::string>& options) {
    for (const auto& [k, v] : options) {
      keys.push_back(k.c_str());
      values.push_back(v.c_str());
    }
  }
  std::vector<const char*> keys, values;
};

// Creates an ORT options object with `create`, fills it with `update`, appends it with `append`,
// and releases it with `release`, so every V2-style provider goes through one path.
template <typename T, typename Create, typename Update, typename Append, typename Release>
void append_v2(const std::map<std::string, std::string>& options, Create create, Update update, Append append,
               Release release) {
  T* handle = nullptr;
  Ort::ThrowOnError(create(&handle));
  std::unique_ptr<T, Release> owned(handle, release);
  KeyValues kv(options);
  Ort::ThrowOnError(update(handle, kv.keys.data(), kv.values.data(), kv.keys.size()));
  append(*handle);
}

int device_id(const std::map<std::string, std::string>& options) {
  const auto it = options.find("device_id");
  return it == options.end() ? 0 : std::stoi(it->second);
}

}  // namespace

void append_execution_provider(Ort::SessionOptions& session, const SessionOptions& options) {
  const std::string& name = options.execution_provider;
  if (name.empty()) return;
  const Provider* provider = find_provider(name);
  const std::vector<std::string> available = Ort::GetAvailableProviders();
  if (!provider) {
    std::vector<std::string> known;
    for (const Provider& p : kProviders) known.emplace_back(p.short_name);
    throw ModelError("unknown execution provider '" + name + "'; ringflow knows " + joined(known) +
                     " (or ORT's full names); this ONNX Runtime has " + joined(available));
  }
  if (std::find(available.begin(), available.end(), provider->ort_name) == available.end()) {
    throw ModelError("execution provider '" + name + "' (" + provider->ort_name +
                     ") is not available in the loaded ONNX Runtime " + onnxruntime_version() +
                     "; it has " + joined(available));
  }
  const OrtApi& api = Ort::GetApi();
  const std::map<std::string, std::string>& po = options.provider_options;
  try {
    switch (provider->route) {
      case Route::Cpu:
        return;  // ORT's fallback for every node no other provider takes
      case Route::Cuda:
        return append_v2<OrtCUDAProviderOptionsV2>(
            po, api.CreateCUDAProviderOptions, api.UpdateCUDAProviderOptions,
            [&](const OrtCUDAProviderOptionsV2& o) { session.AppendExecutionProvider_CUDA_V2(o); },
            api.ReleaseCUDAProviderOptions);
      case Route::TensorRT:
        return append_v2<OrtTensorRTProviderOptionsV2>(
            po, api.CreateTensorRTProviderOptions, api.UpdateTensorRTProviderOptions,
            [&](const OrtTensorRTProviderOptionsV2& o) { session.AppendExecutionProvider_TensorRT_V2(o); },
            api.ReleaseTensorRTProviderOptions);
      case Route::Dnnl:
        return append_v2<OrtDnnlProviderOptions>(
            po, api.CreateDnnlProviderOptions, api.UpdateDnnlProviderOptions,
            [&](const OrtDnnlProviderOptions& o) { session.AppendExecutionProvider_Dnnl(o); },
            api.ReleaseDnnlProviderOptions);
      case Route::Cann:
        return append_v2<OrtCANNProviderOptions>(
            po, api.CreateCANNProviderOptions, api.UpdateCANNProviderOptions,
            [&](const OrtCANNProviderOptions& o) { session.AppendExecutionProvider_CANN(o); },
            api.ReleaseCANNProviderOptions);
      case Route::Rocm:
        return append_v2<OrtROCMProviderOptions>(
            po, api.CreateROCMProviderOptions, api.UpdateROCMProviderOptions,
            [&](const OrtROCMProviderOptions& o) { session.AppendExecutionProvider_ROCM(o); },
            api.ReleaseROCMProviderOptions);
      case Route::MIGraphX: {
        OrtMIGraphXProviderOptions o{};
        o.device_id = device_id(po);
        session.AppendExecutionProvider_MIGraphX(o);
        return;
      }
      case Route::OpenVINO:
        session.AppendExecutionProvider_OpenVINO_V2({po.begin(), po.end()});
        return;
      case Route::VitisAI:
        session.AppendExecutionProvider_VitisAI({po.begin(), po.end()});
        return;
      case Route::Generic:
        session.AppendExecutionProvider(provider->generic_name, {po.begin(), po.end()});
        return;
    }
  } catch (const Ort::Exception& e) {
    throw ModelError("execution provider '" + name + "' could not be set up with the given provider_options: " +
                     e.what());
  } catch (const std::invalid_argument&) {
    throw ModelError("execution provider '" + name + "': provider_options device_id must be an integer");
  }
}

}  // namespace ringflow

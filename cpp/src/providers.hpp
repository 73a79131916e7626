// Execution providers: from the names users write ("cuda", "CUDAExecutionProvider", ...) to the ORT
// call that appends each one, with its options passed through.
#pragma once

#include "ort_runtime.hpp"
#include "ringflow/model.hpp"

namespace ringflow {

// Appends options.execution_provider (nothing for the CPU provider, ORT's fallback anyway). Throws
// ModelError for an unknown name, or one this ONNX Runtime was not built with, naming the
// providers it has.
void append_execution_provider(Ort::SessionOptions& session, const SessionOptions& options);

}  // namespace ringflow

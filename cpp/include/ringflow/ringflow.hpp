// The whole public API.
#pragma once

#include "ringflow/async_infer_queue.hpp"
#include "ringflow/errors.hpp"
#include "ringflow/graph.hpp"
#include "ringflow/model.hpp"
#include "ringflow/postprocess.hpp"
#include "ringflow/report_thread.hpp"
#include "ringflow/run.hpp"
#include "ringflow/sample.hpp"
#include "ringflow/stage.hpp"
#include "ringflow/stats.hpp"
#include "ringflow/tensor.hpp"

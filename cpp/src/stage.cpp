#include "ringflow/stage.hpp"

#include "ringflow/errors.hpp"

namespace ringflow {

Stage::Stage(std::string name, Function function, int threads)
    : name_(std::move(name)), function_(std::move(function)), threads_(threads) {
  if (name_.empty()) throw Error("a Stage needs a name (it names the stage in errors, stats and traces)");
  if (!function_) throw Error("Stage '" + name_ + "' needs a function");
  if (threads_ < 1) throw Error("Stage '" + name_ + "': threads must be at least 1, got " + std::to_string(threads_));
}

}  // namespace ringflow

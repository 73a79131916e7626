// The built-in models every engine test loads, located once per test binary.
#pragma once

#include <string>
#include <vector>

#include "builtin_models.hpp"
#include "ringflow/model.hpp"

struct BuiltinModels {
  std::string tiny_mlp;
  std::string resnet50;
};

inline const BuiltinModels& builtin_models() {
  static const BuiltinModels models = [] {
    const std::vector<std::string> paths = ringflow::support::builtin_model_paths({"tiny-mlp", "resnet50"});
    return BuiltinModels{paths[0], paths[1]};
  }();
  return models;
}

// The built-in tiny MLP (64 -> 10, dynamic batch), loaded once per test binary.
inline const ringflow::Model& tiny_mlp() {
  static const ringflow::Model model(builtin_models().tiny_mlp);
  return model;
}

// Paths of ringflow's built-in models. python/ringflow/models.py generates them into the ringflow
// cache (the engine.models CTest fixture does that before any engine test) and prints their paths;
// asking the script, rather than rebuilding its cache path here, keeps one source of truth.
#pragma once

#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

struct BuiltinModels {
  std::string tiny_mlp;
  std::string resnet50;
};

inline std::string shell_quote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

inline BuiltinModels locate_builtin_models() {
  const std::string command = shell_quote(RINGFLOW_TEST_PYTHON) + " " +
                              shell_quote(RINGFLOW_TEST_MODELS_SCRIPT) + " tiny-mlp resnet50";
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) throw std::runtime_error("could not start: " + command);
  std::string output;
  char buffer[4096];
  for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) output.append(buffer, n);
  const int status = pclose(pipe);

  std::vector<std::string> lines;
  for (std::size_t start = 0, end; start < output.size(); start = end + 1) {
    end = output.find('\n', start);
    if (end == std::string::npos) end = output.size();
    if (end > start) lines.push_back(output.substr(start, end - start));
  }
  if (status != 0 || lines.size() != 2) {
    throw std::runtime_error(command + " failed (status " + std::to_string(status) +
                             "); it printed: " + output);
  }
  return {lines[0], lines[1]};  // in the order asked for
}

// Runs the script once per test binary.
inline const BuiltinModels& builtin_models() {
  static const BuiltinModels models = locate_builtin_models();
  return models;
}

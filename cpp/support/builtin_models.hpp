// Paths of ringflow's built-in models, for the C++ tutorials, tests and benchmarks.
//
// python/ringflow/models.py writes them into the ringflow cache on first use and prints their
// paths; asking it, rather than rebuilding its cache path here, keeps one source of truth. Link the
// CMake target ringflow::builtin_models, which tells this header where Python and the script are.
#pragma once

#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace ringflow::support {

inline std::string shell_quote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

// The models' paths, in the order asked for; throws std::runtime_error saying what failed.
inline std::vector<std::string> builtin_model_paths(const std::vector<std::string>& names) {
  std::string command = shell_quote(RINGFLOW_PYTHON) + " " + shell_quote(RINGFLOW_MODELS_SCRIPT);
  for (const std::string& name : names) command += " " + shell_quote(name);
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) throw std::runtime_error("could not start: " + command);
  std::string output;
  char buffer[4096];
  for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) output.append(buffer, n);
  const int status = pclose(pipe);

  std::vector<std::string> paths;
  for (std::size_t start = 0, end; start < output.size(); start = end + 1) {
    end = output.find('\n', start);
    if (end == std::string::npos) end = output.size();
    if (end > start) paths.push_back(output.substr(start, end - start));
  }
  if (status != 0 || paths.size() != names.size()) {
    throw std::runtime_error("could not generate the built-in models with " + command + " (status " +
                             std::to_string(status) + "); it printed: " + output);
  }
  return paths;
}

inline std::string builtin_model_path(const std::string& name) { return builtin_model_paths({name}).front(); }

}  // namespace ringflow::support

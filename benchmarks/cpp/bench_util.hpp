// What the two benchmark programs share: command-line flags, order statistics and JSON numbers.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace bench {

// Flags of the form `--name value` (valued) or `--name` (switches). Anything else, a valued flag
// without its value and a malformed number throw std::invalid_argument with a message for the user.
class Flags {
 public:
  Flags(int argc, char** argv, const std::vector<std::string>& valued,
        const std::vector<std::string>& switches) {
    const auto listed = [](const std::vector<std::string>& names, const std::string& name) {
      return std::find(names.begin(), names.end(), name) != names.end();
    };
    for (int i = 1; i < argc; ++i) {
      const std::string name = argv[i];
      if (listed(switches, name)) {
        values_[name] = "";
      } else if (!listed(valued, name)) {
        throw std::invalid_argument("unknown argument '" + name + "' (see --help)");
      } else if (i + 1 == argc) {
        throw std::invalid_argument(name + " needs a value");
      } else {
        values_[name] = argv[++i];
      }
    }
  }

  bool has(const std::string& name) const { return values_.count(name) != 0; }

  std::string text(const std::string& name, const std::string& fallback) const {
    const auto it = values_.find(name);
    return it == values_.end() ? fallback : it->second;
  }

  long long integer(const std::string& name, long long fallback, long long min) const {
    const auto it = values_.find(name);
    if (it == values_.end()) return fallback;
    std::size_t used = 0;
    long long value = 0;
    try {
      value = std::stoll(it->second, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != it->second.size()) {
      throw std::invalid_argument(name + " expects an integer, got '" + it->second + "'");
    }
    if (value < min) {
      throw std::invalid_argument(name + " must be at least " + std::to_string(min) + ", got " + it->second);
    }
    return value;
  }

  // A number above zero.
  double positive(const std::string& name, double fallback) const {
    const auto it = values_.find(name);
    if (it == values_.end()) return fallback;
    std::size_t used = 0;
    double value = 0;
    try {
      value = std::stod(it->second, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != it->second.size() || !(value > 0) || !std::isfinite(value)) {
      throw std::invalid_argument(name + " expects a number above 0, got '" + it->second + "'");
    }
    return value;
  }

 private:
  std::map<std::string, std::string> values_;
};

// The q-quantile by nearest rank, the rule ringflow's latency histograms use, so the sync and async
// modes of ringflow_bench report percentiles alike. `sorted` must be ascending and non-empty.
inline double quantile(const std::vector<double>& sorted, double q) {
  return sorted[static_cast<std::size_t>(q * static_cast<double>(sorted.size() - 1))];
}

// The middle value; the mean of the two middle ones for an even count. Empty gives 0.
inline double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const std::size_t mid = values.size() / 2;
  return values.size() % 2 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

// A JSON number with 6 significant digits. JSON has no NaN or infinity; they become null.
inline std::string json_number(double value) {
  if (!std::isfinite(value)) return "null";
  char text[32];
  std::snprintf(text, sizeof text, "%.6g", value);
  return text;
}

// Whether any argument is --help or -h, checked before parsing so it works beside any flags.
inline bool asks_for_help(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") return true;
  }
  return false;
}

}  // namespace bench

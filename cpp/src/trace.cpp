#include "trace.hpp"

#include <algorithm>
#include <fstream>
#include <iomanip>

#include "ringflow/errors.hpp"

namespace ringflow {
namespace {

// JSON string escaping for stage names, which users choose.
std::string quoted(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace

TraceLog::TraceLog(std::size_t samples, std::size_t stages) : per_sample_(stages), slots_(samples) {
  for (Slot& slot : slots_) slot.spans.reserve(per_sample_);
}

std::uint32_t TraceLog::add_lane(std::string name) {
  lanes_.push_back(std::move(name));
  return static_cast<std::uint32_t>(lanes_.size() - 1);
}

void TraceLog::record(std::uint32_t lane, const Item* items, std::size_t count, Clock::time_point start,
                      Clock::time_point end) {
  if (slots_.empty()) return;
  std::lock_guard<std::mutex> lock(mutex_);
  for (const Item* item = items; item != items + count; ++item) {
    Slot& slot = slots_[item->ordinal % slots_.size()];
    if (!slot.used || slot.ordinal < item->ordinal) {
      slot.used = true;
      slot.ordinal = item->ordinal;
      slot.spans.clear();
    } else if (slot.ordinal > item->ordinal) {
      continue;  // a sample older than the newest `samples`: not kept
    }
    if (slot.spans.size() < per_sample_) {
      slot.spans.push_back(Span{lane, item->status, item->sample.input_seq, item->sample.frame_id, start, end});
    }
  }
}

void TraceLog::write_chrome_json(const std::string& path) const {
  std::vector<Span> spans;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const Slot& slot : slots_) spans.insert(spans.end(), slot.spans.begin(), slot.spans.end());
  }
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.start < b.start; });
  const Clock::time_point origin = spans.empty() ? Clock::time_point() : spans.front().start;
  const auto us = [&](Clock::time_point t) {
    return std::chrono::duration<double, std::micro>(t - origin).count();
  };

  std::ofstream out(path);
  if (!out) throw Error("Run::trace: cannot open '" + path + "' for writing");
  out << std::fixed << std::setprecision(3) << "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[";
  // Lane names first (metadata events), so viewers label each thread's row by its stage.
  for (std::size_t lane = 0; lane < lanes_.size(); ++lane) {
    out << (lane ? "," : "") << "\n{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":1,\"tid\":" << lane
        << ",\"args\":{\"name\":" << quoted(lanes_[lane]) << "}}";
    out << ",\n{\"ph\":\"M\",\"name\":\"thread_sort_index\",\"pid\":1,\"tid\":" << lane
        << ",\"args\":{\"sort_index\":" << lane << "}}";
  }
  for (const Span& s : spans) {
    const std::string& stage = lanes_[s.lane];
    out << ",\n{\"ph\":\"X\",\"cat\":\"stage\",\"name\":" << quoted(stage.substr(0, stage.rfind(" #")))
        << ",\"pid\":1,\"tid\":" << s.lane << ",\"ts\":" << us(s.start) << ",\"dur\":" << us(s.end) - us(s.start)
        << ",\"args\":{\"input_seq\":" << s.input_seq << ",\"frame_id\":" << s.frame_id
        << ",\"status\":\"" << pull_status_name(s.status) << "\"}}";
  }
  out << "\n]}\n";
  out.flush();
  if (!out) throw Error("Run::trace: writing '" + path + "' failed");
}

}  // namespace ringflow

#include "ringflow/stats.hpp"

#include <cstdio>
#include <sstream>

namespace ringflow {
namespace {

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

std::string fixed(double v, int digits) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

}  // namespace

std::string RunStats::to_text() const {
  std::ostringstream out;
  out << "inputs:   pushes=" << input.pushes << " enqueued=" << input.inputs_enqueued
      << " dropped=" << input.inputs_dropped << " push_failures=" << input.push_failures
      << " avg_push_us=" << fixed(input.avg_push_us, 2) << " queue_fill avg=" << fixed(input.avg_queue_fill, 2)
      << " max=" << fixed(input.max_queue_fill, 2) << "\n";
  out << "outputs:  ready=" << outputs_ready << " pulled=" << outputs_pulled << " errors=" << errors
      << " batches=" << batches << " avg_batch=" << fixed(avg_batch_size, 2) << "\n";
  out << "latency:  count=" << latency.count << " avg=" << fixed(latency.avg_ms, 3)
      << "ms min=" << fixed(latency.min_ms, 3) << "ms p50=" << fixed(latency.p50_ms, 3)
      << "ms p90=" << fixed(latency.p90_ms, 3) << "ms p99=" << fixed(latency.p99_ms, 3)
      << "ms max=" << fixed(latency.max_ms, 3) << "ms\n";
  for (const StageStats& s : stages) {
    out << "stage:    " << s.name << " samples=" << s.samples << " wait=" << fixed(s.avg_wait_ms, 3)
        << "ms compute=" << fixed(s.avg_compute_ms, 3) << "ms\n";
  }
  out << "throughput: " << fixed(throughput_fps, 1) << " fps over " << fixed(elapsed_s, 3) << " s\n";
  return out.str();
}

std::string RunStats::to_json() const {
  std::ostringstream out;
  out << "{\"input\":{\"pushes\":" << input.pushes << ",\"push_failures\":" << input.push_failures
      << ",\"inputs_enqueued\":" << input.inputs_enqueued << ",\"inputs_dropped\":" << input.inputs_dropped
      << ",\"avg_push_us\":" << number(input.avg_push_us) << ",\"avg_queue_fill\":" << number(input.avg_queue_fill)
      << ",\"max_queue_fill\":" << number(input.max_queue_fill) << "}"
      << ",\"outputs_ready\":" << outputs_ready << ",\"outputs_pulled\":" << outputs_pulled
      << ",\"errors\":" << errors << ",\"batches\":" << batches
      << ",\"avg_batch_size\":" << number(avg_batch_size) << ",\"latency_ms\":{\"count\":" << latency.count
      << ",\"avg\":" << number(latency.avg_ms) << ",\"min\":" << number(latency.min_ms)
      << ",\"max\":" << number(latency.max_ms) << ",\"p50\":" << number(latency.p50_ms)
      << ",\"p90\":" << number(latency.p90_ms) << ",\"p99\":" << number(latency.p99_ms) << "},\"stages\":[";
  for (std::size_t i = 0; i < stages.size(); ++i) {
    const StageStats& s = stages[i];
    out << (i ? "," : "") << "{\"name\":\"" << s.name << "\",\"samples\":" << s.samples
        << ",\"avg_wait_ms\":" << number(s.avg_wait_ms) << ",\"avg_compute_ms\":" << number(s.avg_compute_ms)
        << "}";
  }
  out << "],\"elapsed_s\":" << number(elapsed_s) << ",\"throughput_fps\":" << number(throughput_fps) << "}";
  return out.str();
}

}  // namespace ringflow

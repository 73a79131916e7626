// OpenVINO's async video notebook on ringflow: detect coloured squares in a video clip three ways,
// sync (one frame at a time), ping-pong (two frames in flight) and a staged pipeline (decode,
// preprocess, inference, NMS and drawing overlapping on their own threads), and compare frame rates.
//
// Usage: tutorial_019_async_video_pipeline [--model <path.onnx>] [--frames 120] [--output <dir>]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "ringflow/ringflow.hpp"
#include "tutorial.hpp"

#if defined(RINGFLOW_TUTORIALS_HAVE_OPENCV) && defined(RINGFLOW_TUTORIALS_HAVE_VIDEOIO)
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// The clip: 320x240 grey noise with a red, a green and a blue 32x32 square, each bouncing inside
// its own third of the frame so they never overlap. Every pixel is a function of (frame, y, x), so
// C++ and Python draw the same clip bit for bit.
constexpr int kHeight = 240, kWidth = 320, kSquare = 32, kBand = kHeight / 3, kFps = 30;

struct Square {
  int label;  // as the squares-detector model reports it
  const char* name;
  cv::Scalar colour;  // BGR
  int x0, vx, y0, vy;  // pixels, pixels per frame
};
const std::vector<Square> kSquares = {
    {1, "red", {0, 0, 255}, 0, 3, 0, 1},
    {2, "green", {0, 255, 0}, 150, 4, 20, 2},
    {3, "blue", {255, 0, 0}, 280, 5, 40, 3},
};

// Postprocessing (DetectionOutput) and what counts as found.
constexpr float kScoreThreshold = 0.5f, kIouThreshold = 0.45f;
constexpr int kTopK = 10;
constexpr double kMatchIou = 0.5;

// Position at frame t of a point moving at v from p0 and bouncing between 0 and span.
int bounce(int p0, int v, int t, int span) {
  const int q = (p0 + v * t) % (2 * span);
  return q <= span ? q : 2 * span - q;
}

struct Truth {
  int label, x, y;  // the square's top-left corner
};

std::vector<Truth> truth(int t) {
  std::vector<Truth> out;
  for (std::size_t k = 0; k < kSquares.size(); ++k) {
    const Square& s = kSquares[k];
    out.push_back({s.label, bounce(s.x0, s.vx, t, kWidth - kSquare),
                   kBand * static_cast<int>(k) + bounce(s.y0, s.vy, t, kBand - kSquare)});
  }
  return out;
}

// Grey levels 64..191 from an integer hash of (t, y, x); numpy's uint32 arrays wrap the same way.
std::uint8_t noise(std::uint32_t t, std::uint32_t y, std::uint32_t x) {
  std::uint32_t h = (x * 0x8DA6B343u) ^ (y * 0xD8163841u) ^ (t * 0xCB1AB31Fu);
  h ^= h >> 16;
  h *= 0x7FEB352Du;
  h ^= h >> 15;
  h *= 0x846CA68Bu;
  h ^= h >> 16;
  return static_cast<std::uint8_t>(64 + (h & 127u));
}

// Frame t of the clip, BGR.
cv::Mat make_frame(int t) {
  cv::Mat frame(kHeight, kWidth, CV_8UC3);
  for (int y = 0; y < kHeight; ++y) {
    auto* row = frame.ptr<cv::Vec3b>(y);
    for (int x = 0; x < kWidth; ++x) {
      const std::uint8_t v = noise(static_cast<std::uint32_t>(t), static_cast<std::uint32_t>(y),
                                   static_cast<std::uint32_t>(x));
      row[x] = {v, v, v};
    }
  }
  const std::vector<Truth> boxes = truth(t);
  for (std::size_t k = 0; k < kSquares.size(); ++k) {
    frame(cv::Rect(boxes[k].x, boxes[k].y, kSquare, kSquare)).setTo(kSquares[k].colour);
  }
  return frame;
}

cv::VideoWriter open_writer(const fs::path& path) {
  cv::VideoWriter writer(path.string(), cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), kFps,
                         cv::Size(kWidth, kHeight));
  if (!writer.isOpened()) throw std::runtime_error("cannot write an MJPG video to " + path.string());
  return writer;
}

cv::VideoCapture open_reader(const fs::path& path) {
  cv::VideoCapture reader(path.string());
  if (!reader.isOpened()) throw std::runtime_error("cannot read the video " + path.string());
  return reader;
}

void write_clip(const fs::path& path, int frames) {
  cv::VideoWriter writer = open_writer(path);
  for (int t = 0; t < frames; ++t) writer.write(make_frame(t));
  writer.release();
}

// A decoded frame as a sample to push. The pixels are copied, as Python's push() copies an array,
// so the caller may draw on its frame while the sample is in flight.
// What the pipeline pushes: the frame's number, for the decode stage.
ringflow::Tensor frame_number(std::int64_t i) {
  return ringflow::Tensor::copy_from(ringflow::DType::Int64, {1}, &i);
}

ringflow::Sample frame_sample(const cv::Mat& frame, std::int64_t frame_id) {
  const cv::Mat pixels = frame.isContinuous() ? frame : frame.clone();
  ringflow::Sample sample = ringflow::make_sample(
      {ringflow::Tensor::copy_from(ringflow::DType::UInt8, {pixels.rows, pixels.cols, 3}, pixels.data)});
  sample.frame_id = frame_id;
  return sample;
}

struct Detection {
  int label;
  float score;
  double box[4];  // x_min, y_min, x_max, y_max, normalized
};

// "detections": float32 [M, 7] rows [image_id, label, score, x_min, y_min, x_max, y_max].
std::vector<Detection> read_detections(const ringflow::Sample& sample) {
  const ringflow::Tensor& t = sample.at("detections");
  const ringflow::Mapping m = t.map_read();
  const auto* p = static_cast<const float*>(m.data);
  std::vector<Detection> out;
  for (std::size_t r = 0; r + 7 <= m.size_bytes / sizeof(float); r += 7) {
    out.push_back({static_cast<int>(std::lround(p[r + 1])), p[r + 2], {p[r + 3], p[r + 4], p[r + 5], p[r + 6]}});
  }
  return out;
}

const char* label_name(int label) {
  for (const Square& s : kSquares) {
    if (s.label == label) return s.name;
  }
  return "?";
}

// The notebook's postprocess: boxes, labels and the running FPS on the frame; then, instead of
// showing it, append it to the annotated video.
void draw(cv::Mat& frame, const std::vector<Detection>& detections, double fps, cv::VideoWriter& writer) {
  const cv::Scalar yellow(0, 255, 255);
  for (const Detection& d : detections) {
    const cv::Point top_left(static_cast<int>(std::lround(d.box[0] * kWidth)),
                             static_cast<int>(std::lround(d.box[1] * kHeight)));
    const cv::Point bottom_right(static_cast<int>(std::lround(d.box[2] * kWidth)) - 1,
                                 static_cast<int>(std::lround(d.box[3] * kHeight)) - 1);
    cv::rectangle(frame, top_left, bottom_right, yellow, 2);
    char text[64];
    std::snprintf(text, sizeof text, "%s %.2f", label_name(d.label), d.score);
    // Above the box, or below it at the top of the frame; never past the right edge.
    const cv::Point text_at(std::min(top_left.x, kWidth - 70),
                            top_left.y >= 14 ? top_left.y - 4 : bottom_right.y + 14);
    cv::putText(frame, text, text_at, cv::FONT_HERSHEY_SIMPLEX, 0.4, yellow, 1);
  }
  char text[32];
  std::snprintf(text, sizeof text, "%.1f fps", fps);
  cv::putText(frame, text, {5, 20}, cv::FONT_HERSHEY_SIMPLEX, 0.6, {255, 255, 255}, 2);
  writer.write(frame);
}

double iou(const double* a, const double* b) {
  const double ix = std::max(0.0, std::min(a[2], b[2]) - std::max(a[0], b[0]));
  const double iy = std::max(0.0, std::min(a[3], b[3]) - std::max(a[1], b[1]));
  const double inter = ix * iy;
  return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter);
}

// Detections against the truth: the best IoU per square (0 if none), squares not found, and
// detections that match no square of their colour.
struct Score {
  int frames = 0;
  double iou_sum = 0;
  int squares = 0, missed = 0, false_positives = 0;

  void add(int t, const std::vector<Detection>& detections) {
    std::map<int, std::vector<double>> boxes;
    for (const Truth& s : truth(t)) {
      boxes[s.label] = {static_cast<double>(s.x) / kWidth, static_cast<double>(s.y) / kHeight,
                        static_cast<double>(s.x + kSquare) / kWidth, static_cast<double>(s.y + kSquare) / kHeight};
    }
    for (const auto& [label, box] : boxes) {
      double best = 0;
      for (const Detection& d : detections) {
        if (d.label == label) best = std::max(best, iou(box.data(), d.box));
      }
      iou_sum += best;
      ++squares;
      if (best < kMatchIou) ++missed;
    }
    for (const Detection& d : detections) {
      const auto it = boxes.find(d.label);
      if (it == boxes.end() || iou(it->second.data(), d.box) < kMatchIou) ++false_positives;
    }
    ++frames;
  }

  double mean_iou() const { return squares ? iou_sum / squares : 0.0; }

  std::tuple<int, std::string, int, int> summary() const {
    char text[32];
    std::snprintf(text, sizeof text, "%.2f", mean_iou());
    return {frames, text, missed, false_positives};
  }
};

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The notebook's sync mode: read a frame, infer it on this thread, postprocess, draw; repeat.
// Nothing overlaps: decoding, inference and drawing take turns.
double sync_mode(const ringflow::Model& model, const ringflow::Stage& nms, const fs::path& clip,
                 const fs::path& output, Score& score) {
  cv::VideoCapture reader = open_reader(clip);
  cv::VideoWriter writer = open_writer(output);
  const Clock::time_point start = Clock::now();
  cv::Mat frame;
  while (reader.read(frame)) {
    // Model::run() preprocesses and infers on the calling thread; the DetectionOutput stage's
    // function does the NMS here too, as the pipeline will do it on a thread of its own.
    ringflow::Sample out = model.run(frame_sample(frame, score.frames));
    nms.function()(out);
    const std::vector<Detection> detections = read_detections(out);
    score.add(score.frames, detections);
    draw(frame, detections, score.frames / seconds_since(start), writer);
  }
  const double elapsed = seconds_since(start);
  writer.release();
  return score.frames / elapsed;
}

// The notebook's async mode: two requests, CURRENT and NEXT. Frame i+1 is read and pushed before
// frame i's result is pulled and drawn, so decoding and drawing one frame overlap the inference of
// the other.
double pingpong_mode(const ringflow::Graph& graph, const ringflow::Sample& seed, const fs::path& clip,
                     const fs::path& output, Score& score) {
  ringflow::RunOptions options;
  options.queue_depth = 2;
  options.workers = 2;
  ringflow::Run run = graph.build(seed, options);
  cv::VideoCapture reader = open_reader(clip);
  cv::VideoWriter writer = open_writer(output);
  const Clock::time_point start = Clock::now();
  cv::Mat current, following;
  bool ok = reader.read(current);
  if (ok) run.push(frame_sample(current, 0));  // start CURRENT
  while (ok) {
    following = cv::Mat();  // a new buffer: `current` still holds the frame being inferred
    ok = reader.read(following);
    if (ok) run.push(frame_sample(following, score.frames + 1));  // start NEXT
    const std::optional<ringflow::Sample> out = run.pull();         // wait for CURRENT
    if (!out || out->frame_id != score.frames) {
      throw std::runtime_error("ping-pong: expected the result of frame " + std::to_string(score.frames));
    }
    const std::vector<Detection> detections = read_detections(*out);
    score.add(static_cast<int>(out->frame_id), detections);
    draw(current, detections, score.frames / seconds_since(start), writer);
    current = following;  // NEXT becomes CURRENT
  }
  const double elapsed = seconds_since(start);
  run.close_input();
  run.stop_and_wait();
  writer.release();
  return score.frames / elapsed;
}

struct PipelineResult {
  double fps = 0;
  ringflow::RunStats stats;
};

// Every step on threads of its own: the Run decodes (a Stage of ours), preprocesses, infers, runs
// NMS and draws (another Stage of ours); a feeder thread pushes frame numbers and the main thread
// pulls and scores. Each frame waits only for the slowest step, not for the sum of them all.
PipelineResult pipeline_mode(const ringflow::Model& model, int clip_frames, const fs::path& clip,
                             const fs::path& output, const fs::path& trace, Score& score) {
  cv::VideoWriter writer = open_writer(output);
  std::mutex frames_mutex;
  std::map<std::int64_t, cv::Mat> frames;  // frame_id -> decoded frame, from decode to the draw stage
  int drawn = 0;                           // the draw stage has one thread
  Clock::time_point start;
  cv::VideoCapture reader = open_reader(clip);

  ringflow::Graph graph;
  graph.add(ringflow::Stage(
      "decode",
      [&](ringflow::Sample& sample) {
        cv::Mat frame;  // a new buffer per frame: the draw stage still holds the earlier ones
        if (!reader.read(frame)) {
          throw std::runtime_error("the clip ended before frame " + std::to_string(sample.frame_id));
        }
        {
          std::lock_guard<std::mutex> lock(frames_mutex);
          frames[sample.frame_id] = frame;
        }
        // The model's input: a copy, so drawing on our frame cannot touch it.
        sample.tensors = frame_sample(frame, sample.frame_id).tensors;
        sample.names = {""};
      },
      /*threads=*/1));  // one thread: frames are read in order
  graph.add(model.graph());
  graph.add(ringflow::DetectionOutput(kScoreThreshold, kIouThreshold, kTopK));
  graph.add(ringflow::Stage(
      "draw",
      [&](ringflow::Sample& sample) {
        cv::Mat frame;
        {
          std::lock_guard<std::mutex> lock(frames_mutex);
          const auto it = frames.find(sample.frame_id);
          if (it == frames.end()) return;  // not a frame decode read
          frame = it->second;
          frames.erase(it);
        }
        ++drawn;
        draw(frame, read_detections(sample), drawn / seconds_since(start), writer);
      },  // the sample goes on unchanged
      /*threads=*/1));  // one thread: frames reach the video in order
  ringflow::RunOptions options;
  options.queue_depth = 8;
  options.workers = 2;
  // With a stage before the model, push() takes what decode takes (a frame number here); build()
  // warms the model up on synthetic inputs instead of a seed.
  ringflow::Run run = graph.build(std::vector<ringflow::Tensor>{frame_number(0)}, options);

  std::exception_ptr feeder_error;
  start = Clock::now();
  std::thread feeder([&] {
    try {
      for (std::int64_t i = 0; i < clip_frames; ++i) {
        ringflow::Sample sample = ringflow::make_sample({frame_number(i)});
        sample.frame_id = i;
        run.push(std::move(sample));
      }
    } catch (...) {
      feeder_error = std::current_exception();
    }
    run.close_input();
  });
  try {
    // nullopt: end of stream, after the reader closed the input.
    while (const std::optional<ringflow::Sample> out = run.pull()) {
      if (out->frame_id != score.frames) {
        throw std::runtime_error("pipeline: expected the result of frame " + std::to_string(score.frames) +
                                 ", got " + std::to_string(out->frame_id));
      }
      score.add(static_cast<int>(out->frame_id), read_detections(*out));
    }
  } catch (...) {
    run.stop();  // wakes the feeder thread if it is waiting in push()
    feeder.join();
    throw;
  }
  feeder.join();
  PipelineResult result;
  result.fps = score.frames / seconds_since(start);
  if (feeder_error) std::rethrow_exception(feeder_error);
  result.stats = run.stats();
  run.trace(trace.string());
  run.stop_and_wait();
  writer.release();
  return result;
}

// The notebook's bar chart of the modes' frame rates, drawn with OpenCV.
void write_chart(const fs::path& path, const std::vector<std::pair<std::string, double>>& fps) {
  cv::Mat image(320, 480, CV_8UC3, cv::Scalar(255, 255, 255));
  cv::putText(image, "frames per second (higher is better)", {20, 28}, cv::FONT_HERSHEY_SIMPLEX, 0.6, {0, 0, 0}, 1);
  double top = 0;
  for (const auto& [name, value] : fps) top = std::max(top, value);
  if (top <= 0) top = 1;
  for (std::size_t i = 0; i < fps.size(); ++i) {
    const int x = 40 + static_cast<int>(i) * 140;
    const int height = static_cast<int>(std::lround(220 * fps[i].second / top));
    cv::rectangle(image, {x, 280 - height}, {x + 100, 280}, {45, 127, 85}, cv::FILLED);
    char text[32];
    std::snprintf(text, sizeof text, "%.0f", fps[i].second);
    cv::putText(image, text, {x + 25, 272 - height}, cv::FONT_HERSHEY_SIMPLEX, 0.5, {0, 0, 0}, 1);
    cv::putText(image, fps[i].first, {x + 10, 305}, cv::FONT_HERSHEY_SIMPLEX, 0.5, {0, 0, 0}, 1);
  }
  if (!cv::imwrite(path.string(), image)) throw std::runtime_error("cannot write " + path.string());
}

fs::path make_output_dir(int argc, char** argv) {
  std::string dir;
  if (!tutorial::get_arg(argc, argv, "--output", dir)) {
    std::string pattern = (fs::temp_directory_path() / "ringflow_019_XXXXXX").string();
    if (!mkdtemp(pattern.data())) throw std::runtime_error("cannot create a temporary directory");
    dir = pattern;
  }
  fs::create_directories(dir);
  return dir;
}

}  // namespace

int main(int argc, char** argv) {
  return tutorial::run("019_async_video_pipeline", [&] {
    std::string model_path;
    if (!tutorial::get_arg(argc, argv, "--model", model_path)) model_path = tutorial::builtin_model("squares-detector");
    const int frames = tutorial::int_arg(argc, argv, "--frames", 120);
    if (frames < 1) throw std::runtime_error("--frames must be at least 1, got " + std::to_string(frames));

    // BGR frames as OpenCV decodes them; the model wants RGB in [0, 1] (no mean or stddev).
    ringflow::Model::Options model_options;
    model_options.preprocess.input_format = ringflow::ColorFormat::BGR;
    model_options.preprocess.model_format = ringflow::ColorFormat::RGB;
    model_options.preprocess.input_max_width = kWidth;
    model_options.preprocess.input_max_height = kHeight;
    model_options.preprocess.input_max_depth = 3;
    ringflow::Model model(model_path, model_options);

    const fs::path output = make_output_dir(argc, argv);
    const fs::path clip = output / "clip.avi";
    write_clip(clip, frames);

    const ringflow::Sample seed = frame_sample(cv::Mat::zeros(kHeight, kWidth, CV_8UC3), -1);
    const ringflow::Stage nms = ringflow::DetectionOutput(kScoreThreshold, kIouThreshold, kTopK);
    {
      ringflow::Sample warm_up = model.run(seed);  // as build() warms up the Runs below
      nms.function()(warm_up);
    }

    Score sync_score, pingpong_score, score;
    const double fps_sync = sync_mode(model, nms, clip, output / "sync.avi", sync_score);
    ringflow::Graph two_step;
    two_step.add(model.graph());
    two_step.add(ringflow::DetectionOutput(kScoreThreshold, kIouThreshold, kTopK));
    const double fps_pingpong = pingpong_mode(two_step, seed, clip, output / "pingpong.avi", pingpong_score);
    const PipelineResult pipeline =
        pipeline_mode(model, frames, clip, output / "pipeline.avi", output / "pipeline_trace.json", score);
    write_chart(output / "fps.png", {{"sync", fps_sync}, {"ping-pong", fps_pingpong}, {"pipeline", pipeline.fps}});
    std::cerr << "wrote the clip, the annotated videos, fps.png and pipeline_trace.json to " << output.string()
              << "\n";

    std::cout << "frames=" << score.frames << "\n";
    std::printf("fps_sync=%.1f\n", fps_sync);  // measured: CTest compares only the keys of these
    std::printf("fps_pingpong=%.1f\n", fps_pingpong);
    std::printf("fps_pipeline=%.1f\n", pipeline.fps);
    std::printf("speedup=%.2f\n", pipeline.fps / fps_sync);
    std::printf("mean_iou=%.2f\n", score.mean_iou());
    std::cout << "missed=" << score.missed << "\n";
    std::cout << "false_positives=" << score.false_positives << "\n";
    const bool agree = sync_score.summary() == pingpong_score.summary() && pingpong_score.summary() == score.summary();
    std::cout << "modes_agree=" << (agree ? "true" : "false") << "\n";
    for (const ringflow::StageStats& stage : pipeline.stats.stages) {
      std::printf("stage=%s samples=%llu wait_ms=%.2f compute_ms=%.2f occupancy=%.2f\n", stage.name.c_str(),
                  static_cast<unsigned long long>(stage.samples), stage.avg_wait_ms, stage.avg_compute_ms,
                  stage.occupancy);
    }
    std::cout << "chart=fps.png\n";
    std::cout << "trace=pipeline_trace.json\n";
    std::cout.flush();
    for (const Score* s : {&sync_score, &pingpong_score, &score}) {
      if (s->frames != frames) throw std::runtime_error("a mode lost frames");
    }
  });
}

#else

int main() {
  return tutorial::run("019_async_video_pipeline", [] {
    throw std::runtime_error(
        "this tutorial reads and writes videos with OpenCV's videoio module, which this build did not find "
        "(install libopencv-videoio-dev and reconfigure)");
  });
}

#endif

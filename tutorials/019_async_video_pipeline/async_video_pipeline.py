"""OpenVINO's async video notebook on ringflow: detect coloured squares in a video clip three ways,
sync (one frame at a time), ping-pong (two frames in flight) and a staged pipeline (decode,
preprocess, inference, NMS and drawing overlapping on their own threads), and compare frame rates.

Usage: python async_video_pipeline.py [--model PATH.onnx] [--frames 120] [--output DIR]
"""

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "common"))
import tutorial  # noqa: E402

import ringflow as rf  # noqa: E402

# The clip: 320x240 grey noise with a red, a green and a blue 32x32 square, each bouncing inside its
# own third of the frame so they never overlap. Every pixel is a function of (frame, y, x), so C++
# and Python draw the same clip bit for bit.
HEIGHT, WIDTH, SQUARE = 240, 320, 32
BAND = HEIGHT // 3
# label (as the squares-detector model reports it), name, BGR colour, x0, vx, y0, vy (pixels, pixels/frame)
SQUARES = [
    (1, "red", (0, 0, 255), 0, 3, 0, 1),
    (2, "green", (0, 255, 0), 150, 4, 20, 2),
    (3, "blue", (255, 0, 0), 280, 5, 40, 3),
]
NAMES = {label: name for label, name, *_ in SQUARES}
FPS = 30

# Postprocessing (DetectionOutput) and what counts as found.
SCORE_THRESHOLD, IOU_THRESHOLD, TOP_K = 0.5, 0.45, 10
MATCH_IOU = 0.5

U32 = np.uint32


def bounce(p0: int, v: int, t: int, span: int) -> int:
    """Position at frame t of a point moving at v from p0 and bouncing between 0 and span."""
    q = (p0 + v * t) % (2 * span)
    return q if q <= span else 2 * span - q


def truth(t: int) -> list[tuple[int, int, int]]:
    """(label, x, y) of each square's top-left corner in frame t."""
    return [(label, bounce(x0, vx, t, WIDTH - SQUARE), BAND * k + bounce(y0, vy, t, BAND - SQUARE))
            for k, (label, _, _, x0, vx, y0, vy) in enumerate(SQUARES)]


_Y = np.arange(HEIGHT, dtype=U32)[:, None]
_X = np.arange(WIDTH, dtype=U32)[None, :]


def noise(t: int) -> np.ndarray:
    """Grey levels 64..191 from an integer hash of (t, y, x), in uint32 arithmetic that wraps
    exactly as C++'s std::uint32_t does."""
    h = (_X * U32(0x8DA6B343)) ^ (_Y * U32(0xD8163841)) ^ (np.array([t], U32) * U32(0xCB1AB31F))
    h ^= h >> U32(16)
    h *= U32(0x7FEB352D)
    h ^= h >> U32(15)
    h *= U32(0x846CA68B)
    h ^= h >> U32(16)
    return (U32(64) + (h & U32(127))).astype(np.uint8)


def make_frame(t: int) -> np.ndarray:
    """Frame t of the clip, BGR uint8 [H, W, 3]."""
    frame = np.repeat(noise(t)[:, :, None], 3, axis=2)
    for (_, _, colour, *_), (_, x, y) in zip(SQUARES, truth(t)):
        frame[y:y + SQUARE, x:x + SQUARE] = colour
    return frame


def open_writer(path: Path) -> cv2.VideoWriter:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write an MJPG video to {path}")
    return writer


def open_reader(path: Path) -> cv2.VideoCapture:
    reader = cv2.VideoCapture(str(path))
    if not reader.isOpened():
        raise RuntimeError(f"cannot read the video {path}")
    return reader


def write_clip(path: Path, frames: int) -> None:
    writer = open_writer(path)
    for t in range(frames):
        writer.write(make_frame(t))
    writer.release()


def draw(frame: np.ndarray, detections: np.ndarray, fps: float, writer: cv2.VideoWriter) -> None:
    """The notebook's postprocess: boxes, labels and the running FPS on the frame; then, instead of
    showing it, append it to the annotated video."""
    for _, label, score, x0, y0, x1, y1 in detections:
        top_left = (int(round(x0 * WIDTH)), int(round(y0 * HEIGHT)))
        bottom_right = (int(round(x1 * WIDTH)) - 1, int(round(y1 * HEIGHT)) - 1)
        cv2.rectangle(frame, top_left, bottom_right, (0, 255, 255), 2)
        # Above the box, or below it at the top of the frame; never past the right edge.
        text_at = (min(top_left[0], WIDTH - 70), top_left[1] - 4 if top_left[1] >= 14 else bottom_right[1] + 14)
        cv2.putText(frame, f"{NAMES.get(int(label), '?')} {score:.2f}", text_at, cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (0, 255, 255), 1)
    cv2.putText(frame, f"{fps:.1f} fps", (5, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
    writer.write(frame)


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


class Score:
    """Detections against the truth: the best IoU per square (0 if none), squares not found, and
    detections that match no square of their colour."""

    def __init__(self) -> None:
        self.frames = 0
        self.iou_sum = 0.0
        self.squares = 0
        self.missed = 0
        self.false_positives = 0

    def add(self, t: int, detections: np.ndarray) -> None:
        rows = [(int(round(float(d[1]))), [float(v) for v in d[3:7]]) for d in detections]
        boxes = {label: (x / WIDTH, y / HEIGHT, (x + SQUARE) / WIDTH, (y + SQUARE) / HEIGHT)
                 for label, x, y in truth(t)}
        for label, box in boxes.items():
            best = max((iou(box, b) for lab, b in rows if lab == label), default=0.0)
            self.iou_sum += best
            self.squares += 1
            self.missed += best < MATCH_IOU
        self.false_positives += sum(lab not in boxes or iou(boxes[lab], b) < MATCH_IOU for lab, b in rows)
        self.frames += 1

    def mean_iou(self) -> float:
        return self.iou_sum / self.squares if self.squares else 0.0

    def summary(self) -> tuple[int, str, int, int]:
        return self.frames, f"{self.mean_iou():.2f}", self.missed, self.false_positives


def sync_mode(model, nms, clip: Path, output: Path) -> tuple[float, Score]:
    """The notebook's sync mode: read a frame, infer it on this thread, postprocess, draw; repeat.
    Nothing overlaps: decoding, inference and drawing take turns."""
    score = Score()
    reader, writer = open_reader(clip), open_writer(output)
    start = time.perf_counter()
    while True:
        ok, frame = reader.read()
        if not ok:
            break
        # Model.run() preprocesses and infers on the calling thread; the DetectionOutput stage's
        # function does the NMS here too, as the pipeline will do it on a thread of its own.
        detections = nms(model.run(frame))["detections"]
        score.add(score.frames, detections)
        draw(frame, detections, score.frames / (time.perf_counter() - start), writer)
    elapsed = time.perf_counter() - start
    writer.release()
    return score.frames / elapsed, score


def pingpong_mode(graph, seed, clip: Path, output: Path) -> tuple[float, Score]:
    """The notebook's async mode: two requests, CURRENT and NEXT. Frame i+1 is read and pushed
    before frame i's result is pulled and drawn, so decoding and drawing one frame overlap the
    inference of the other."""
    score = Score()
    run = graph.build(seed, rf.RunOptions(queue_depth=2, workers=2))
    reader, writer = open_reader(clip), open_writer(output)
    start = time.perf_counter()
    ok, current = reader.read()
    if ok:
        run.push(current, frame_id=0)  # start CURRENT
    while ok:
        ok, following = reader.read()
        if ok:
            run.push(following, frame_id=score.frames + 1)  # start NEXT
        out = run.pull()  # wait for CURRENT
        if out is None or out.frame_id != score.frames:
            raise RuntimeError(f"ping-pong: expected the result of frame {score.frames}")
        detections = out["detections"]
        score.add(out.frame_id, detections)
        draw(current, detections, score.frames / (time.perf_counter() - start), writer)
        current = following  # NEXT becomes CURRENT
    elapsed = time.perf_counter() - start
    run.close_input()
    run.stop_and_wait()
    writer.release()
    return score.frames / elapsed, score


def pipeline_mode(model, clip_frames: int, clip: Path, output: Path, trace: Path):
    """Every step on threads of its own: the Run decodes (a Stage of ours), preprocesses, infers,
    runs NMS and draws (another Stage of ours); a feeder thread pushes frame numbers and the main
    thread pulls and scores. Each frame waits only for the slowest step, not for the sum of them."""
    score = Score()
    writer = open_writer(output)
    reader = open_reader(clip)
    frames = {}  # frame_id -> decoded frame, from decode to the draw stage
    drawn = [0]
    start = [0.0]

    def decode(sample):
        ok, frame = reader.read()
        if not ok:
            raise RuntimeError(f"the clip ended before frame {sample.frame_id}")
        frames[sample.frame_id] = frame
        return [frame]  # the model's input (copied): drawing on our frame cannot touch it

    def draw_stage(sample):
        frame = frames.pop(sample.frame_id, None)
        if frame is None:  # not a frame decode read
            return None
        drawn[0] += 1
        draw(frame, sample["detections"], drawn[0] / (time.perf_counter() - start[0]), writer)
        return None  # the sample goes on unchanged

    graph = rf.Graph()
    graph.add(rf.Stage(decode, name="decode", threads=1))  # one thread: frames are read in order
    graph.add(model.graph())
    graph.add(rf.DetectionOutput(score_threshold=SCORE_THRESHOLD, iou_threshold=IOU_THRESHOLD, top_k=TOP_K))
    graph.add(rf.Stage(draw_stage, name="draw", threads=1))  # one thread: frames reach the video in order
    # With a stage before the model, push() takes what decode takes (a frame number here); build()
    # warms the model up on synthetic inputs instead of a seed.
    run = graph.build(np.zeros(1, np.int64), rf.RunOptions(queue_depth=8, workers=2))

    feeder_errors = []

    def feed() -> None:
        try:
            for i in range(clip_frames):
                run.push(np.array([i], np.int64), frame_id=i)
        except Exception as e:
            feeder_errors.append(e)
        finally:
            run.close_input()

    start[0] = time.perf_counter()
    thread = threading.Thread(target=feed)
    thread.start()
    try:
        while (out := run.pull()) is not None:  # None: end of stream, after the reader closed the input
            if out.frame_id != score.frames:
                raise RuntimeError(f"pipeline: expected the result of frame {score.frames}, got {out.frame_id}")
            score.add(out.frame_id, out["detections"])
    except BaseException:
        run.stop()  # wakes the feeder thread if it is waiting in push()
        raise
    finally:
        thread.join()
    elapsed = time.perf_counter() - start[0]
    if feeder_errors:
        raise feeder_errors[0]
    stats = run.stats()
    run.trace(str(trace))
    run.stop_and_wait()
    writer.release()
    return score.frames / elapsed, score, stats


def write_chart(path: Path, fps: dict) -> None:
    """The notebook's bar chart of the modes' frame rates: with matplotlib if it is installed,
    otherwise drawn with OpenCV as the C++ tutorial does."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed; drawing the chart with OpenCV", file=sys.stderr)
        cv2.imwrite(str(path), chart_image(fps))
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    bars = ax.bar(list(fps), list(fps.values()), color=["#557f2d", "#2d5f7f", "#7f2d55"])
    ax.bar_label(bars, fmt="%.0f")
    ax.set_ylabel("frames per second (higher is better)")
    ax.set_title("sync vs ping-pong vs pipeline")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def chart_image(fps: dict) -> np.ndarray:
    """The same bar chart drawn with OpenCV, line for line as in the C++ tutorial."""
    image = np.full((320, 480, 3), 255, np.uint8)
    cv2.putText(image, "frames per second (higher is better)", (20, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                (0, 0, 0), 1)
    top = max(fps.values()) or 1.0
    for i, (name, value) in enumerate(fps.items()):
        x = 40 + i * 140
        height = int(round(220 * value / top))
        cv2.rectangle(image, (x, 280 - height), (x + 100, 280), (45, 127, 85), -1)
        cv2.putText(image, f"{value:.0f}", (x + 25, 272 - height), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
        cv2.putText(image, name, (x + 10, 305), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="ONNX file (default: the built-in squares-detector)")
    parser.add_argument("--frames", type=int, default=120, help="frames in the clip")
    parser.add_argument("--output", help="directory for the clip, the annotated videos, the chart and "
                                         "the trace (default: a new temporary directory)")
    args = parser.parse_args()
    if args.frames < 1:
        raise ValueError(f"--frames must be at least 1, got {args.frames}")

    # BGR frames as OpenCV decodes them; the model wants RGB in [0, 1] (no mean or stddev).
    pre = rf.PreprocessOptions(input_format=rf.ColorFormat.BGR, model_format=rf.ColorFormat.RGB,
                               input_max_width=WIDTH, input_max_height=HEIGHT, input_max_depth=3)
    model = rf.Model(args.model or str(rf.models.ensure("squares-detector")), rf.Model.Options(preprocess=pre))

    output = Path(args.output) if args.output else Path(tempfile.mkdtemp(prefix="ringflow_019_"))
    output.mkdir(parents=True, exist_ok=True)
    clip = output / "clip.avi"
    write_clip(clip, args.frames)

    seed = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    nms = rf.DetectionOutput(score_threshold=SCORE_THRESHOLD, iou_threshold=IOU_THRESHOLD, top_k=TOP_K)
    nms(model.run(seed))  # warm-up, as build() warms up the Runs below

    fps_sync, sync_score = sync_mode(model, nms, clip, output / "sync.avi")
    two_step = rf.Graph()
    two_step.add(model.graph())
    two_step.add(rf.DetectionOutput(score_threshold=SCORE_THRESHOLD, iou_threshold=IOU_THRESHOLD, top_k=TOP_K))
    fps_pingpong, pingpong_score = pingpong_mode(two_step, seed, clip, output / "pingpong.avi")
    fps_pipeline, score, stats = pipeline_mode(model, args.frames, clip, output / "pipeline.avi",
                                               output / "pipeline_trace.json")
    write_chart(output / "fps.png", {"sync": fps_sync, "ping-pong": fps_pingpong, "pipeline": fps_pipeline})
    print(f"wrote the clip, the annotated videos, fps.png and pipeline_trace.json to {output}", file=sys.stderr)

    print(f"frames={score.frames}")
    print(f"fps_sync={fps_sync:.1f}")  # measured: CTest compares only the keys of these
    print(f"fps_pingpong={fps_pingpong:.1f}")
    print(f"fps_pipeline={fps_pipeline:.1f}")
    print(f"speedup={fps_pipeline / fps_sync:.2f}")
    print(f"mean_iou={score.mean_iou():.2f}")
    print(f"missed={score.missed}")
    print(f"false_positives={score.false_positives}")
    agree = sync_score.summary() == pingpong_score.summary() == score.summary()
    print(f"modes_agree={'true' if agree else 'false'}")
    for stage in stats.stages:
        print(f"stage={stage.name} samples={stage.samples} wait_ms={stage.avg_wait_ms:.2f} "
              f"compute_ms={stage.avg_compute_ms:.2f} occupancy={stage.occupancy:.2f}")
    print("chart=fps.png")
    print("trace=pipeline_trace.json")
    if not all(s.frames == args.frames for s in (sync_score, pingpong_score, score)):
        raise RuntimeError("a mode lost frames")


if __name__ == "__main__":
    sys.exit(tutorial.run(main, "019_async_video_pipeline"))

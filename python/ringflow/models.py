"""Built-in ONNX models, generated offline from a seed instead of downloaded.

Tests, benchmarks and tutorials need realistic models without network access,
so the models are written deterministically on first use and cached on disk.
"""

import argparse
import os
import pathlib
import sys
import tempfile
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

BUILTIN = ("resnet50", "tiny-mlp", "squares-detector")

# Bump when the generated graphs or weights change, so stale cache files are
# never picked up: the revision is part of every cached file name.
_REVISION = 2
_FILE_NAMES = {
    "resnet50": f"resnet50-v1.5-seed0-r{_REVISION}.onnx",
    "tiny-mlp": f"tiny-mlp-seed0-r{_REVISION}.onnx",
    "squares-detector": f"squares-detector-r{_REVISION}.onnx",
}

_OPSET = 17
# onnxruntime 1.21 is the oldest runtime we support; it reads IR versions <= 10.
_IR_VERSION = 8

# Scale on the last conv of each residual branch. With plain He init the
# residual sum grows block after block; shrinking the branch keeps activations
# O(1) through all 16 blocks, like a trained network with batch norm does.
_RESIDUAL_BRANCH_GAIN = 0.2
_BIAS_STD = 0.01
# Keeps logits O(1) on probe-like images and below ~10 on flat grey frames,
# which sit far from the probes the classifier was standardized on.
_CLASSIFIER_GAIN = 0.15


def cache_dir() -> pathlib.Path:
    """Root of ringflow's on-disk cache; the C++ side derives the same path."""
    override = os.environ.get("RINGFLOW_CACHE_DIR")
    if override:
        return pathlib.Path(override)
    xdg_cache = os.environ.get("XDG_CACHE_HOME")
    if xdg_cache:
        return pathlib.Path(xdg_cache) / "ringflow"
    return pathlib.Path.home() / ".cache" / "ringflow"


def path(name: str) -> pathlib.Path:
    """Cache location of a built-in model, whether or not it exists yet."""
    try:
        file_name = _FILE_NAMES[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; built-in models are: {', '.join(BUILTIN)}"
        ) from None
    return cache_dir() / "models" / file_name


def ensure(name: str) -> pathlib.Path:
    """Return the model's path, generating it first if it is not cached.

    The file appears atomically, so processes racing to generate the same
    model (e.g. pytest and ctest in parallel) never read a partial file.
    """
    target = path(name)
    if target.exists():
        return target
    model = _BUILDERS[name]()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
    )
    try:
        with os.fdopen(fd, "wb") as tmp_file:
            # mkstemp creates the file 0600; models are not secret and a
            # shared cache should stay readable by other users.
            os.fchmod(tmp_file.fileno(), 0o644)
            tmp_file.write(model.SerializeToString())
            tmp_file.flush()
            os.fsync(tmp_file.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        os.unlink(tmp_name)
        raise
    return target


class _GraphBuilder:
    """Accumulates nodes and seeded initializers for one graph.

    Weights are He-normal (std sqrt(2 / fan_in)) times a per-layer gain, so
    every layer's scale reads relative to one familiar baseline.
    """

    def __init__(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def _param(self, name: str, shape: tuple[int, ...], std: float) -> str:
        values = self._rng.standard_normal(shape, dtype=np.float32)
        values *= np.float32(std)
        self.initializers.append(numpy_helper.from_array(values, name))
        return name

    def _weight_and_bias(self, name: str, weight_shape: tuple[int, ...],
                         fan_in: int, out_features: int,
                         gain: float) -> tuple[str, str]:
        weight = self._param(f"{name}.weight", weight_shape,
                             gain * np.sqrt(2.0 / fan_in))
        bias = self._param(f"{name}.bias", (out_features,), _BIAS_STD)
        return weight, bias

    def node(self, op: str, inputs: list[str], output: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def conv(self, x: str, name: str, in_channels: int, out_channels: int,
             kernel: int, stride: int = 1, gain: float = 1.0,
             relu: bool = True) -> str:
        """Conv with batch norm folded in, hence always with a bias."""
        weight, bias = self._weight_and_bias(
            name, (out_channels, in_channels, kernel, kernel),
            in_channels * kernel * kernel, out_channels, gain)
        pad = kernel // 2
        y = self.node("Conv", [x, weight, bias], name,
                      kernel_shape=[kernel, kernel], strides=[stride, stride],
                      pads=[pad, pad, pad, pad])
        return self.relu(y) if relu else y

    def gemm(self, x: str, name: str, in_features: int, out_features: int,
             gain: float = 1.0, output: str | None = None) -> str:
        """Fully connected layer as one Gemm, as torchvision exports it."""
        weight, bias = self._weight_and_bias(
            name, (out_features, in_features), in_features, out_features, gain)
        return self.node("Gemm", [x, weight, bias], output or name, transB=1)

    def matmul_add(self, x: str, name: str, in_features: int, out_features: int,
                   gain: float = 1.0, output: str | None = None) -> str:
        """Fully connected layer as MatMul + Add, as many exporters emit it."""
        weight, bias = self._weight_and_bias(
            name, (in_features, out_features), in_features, out_features, gain)
        product = self.node("MatMul", [x, weight], f"{name}.matmul")
        return self.node("Add", [product, bias], output or name)

    def relu(self, x: str) -> str:
        return self.node("Relu", [x], f"{x}.relu")

    def model(self, graph_name: str, input_shape: list,
              output_shape: list) -> onnx.ModelProto:
        """Wrap the nodes as a graph from "input" to "logits"."""
        graph = helper.make_graph(
            self.nodes, graph_name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, output_shape)],
            initializer=self.initializers,
        )
        model = helper.make_model(
            graph, producer_name="ringflow.models",
            opset_imports=[helper.make_opsetid("", _OPSET)],
        )
        model.ir_version = _IR_VERSION
        onnx.checker.check_model(model)
        return model


def _bottleneck(g: _GraphBuilder, x: str, name: str, in_channels: int,
                width: int, stride: int) -> str:
    out_channels = width * 4
    branch = g.conv(x, f"{name}.conv1", in_channels, width, 1)
    # v1.5: the stride sits on the 3x3 conv, not on the first 1x1.
    branch = g.conv(branch, f"{name}.conv2", width, width, 3, stride)
    branch = g.conv(branch, f"{name}.conv3", width, out_channels, 1,
                    gain=_RESIDUAL_BRANCH_GAIN, relu=False)
    shortcut = x
    if stride != 1 or in_channels != out_channels:
        shortcut = g.conv(x, f"{name}.downsample", in_channels, out_channels, 1,
                          stride, relu=False)
    return g.relu(g.node("Add", [shortcut, branch], f"{name}.add"))


def resnet50(batch: str | int = "N", seed: int = 0) -> onnx.ModelProto:
    """ImageNet ResNet-50 v1.5 with the real layer shapes and FLOPs.

    Weights are random but scaled so logits are O(1) and have a clear top-1,
    which keeps tutorial output stable. Batch norm is folded into the convs.
    """
    g = _GraphBuilder(seed)
    x = g.conv("input", "conv1", 3, 64, 7, stride=2)
    x = g.node("MaxPool", [x], "maxpool", kernel_shape=[3, 3],
               strides=[2, 2], pads=[1, 1, 1, 1])
    channels = 64
    stages = [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]
    for stage, (width, blocks, first_stride) in enumerate(stages, start=1):
        for block in range(blocks):
            stride = first_stride if block == 0 else 1
            x = _bottleneck(g, x, f"layer{stage}.{block}", channels, width, stride)
            channels = width * 4
    x = g.node("GlobalAveragePool", [x], "avgpool")
    x = g.node("Flatten", [x], "flatten", axis=1)
    g.gemm(x, "fc", channels, 1000, output="logits")
    model = g.model("resnet50", [batch, 3, 224, 224], [batch, 1000])
    _standardize_classifier(model, "flatten", "fc", seed)
    return model


def _probe_images(count: int, seed: int) -> np.ndarray:
    """Smooth random images, normalized as ImageNet models expect."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0.0, 1.0, (count, 3, 7, 7)).astype(np.float32)
    images = np.kron(coarse, np.ones((1, 1, 32, 32), np.float32))
    mean = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
    std = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)
    return (images - mean) / std


def _standardize_classifier(model: onnx.ModelProto, features: str, fc: str,
                            seed: int) -> None:
    """Rescale the classifier to see standardized features.

    A deep ReLU network with random weights maps every input to nearly the
    same feature vector, so its top-1 never changes with the input. Measuring
    the features' mean and spread on probe images and folding them into the
    classifier (what batch norm does in a trained network) restores the
    dependence on the input, so different images get different classes.
    """
    import onnxruntime

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.append(
        helper.make_tensor_value_info(features, TensorProto.FLOAT, None))
    session = onnxruntime.InferenceSession(
        probe.SerializeToString(), providers=["CPUExecutionProvider"])
    feats = session.run(None, {"input": _probe_images(16, seed)})[0]
    mean = feats.mean(axis=0)
    spread = feats.std(axis=0) + np.float32(1e-6)

    params = {t.name: t for t in model.graph.initializer}
    weight = numpy_helper.to_array(params[f"{fc}.weight"]) * (_CLASSIFIER_GAIN / spread)
    bias = numpy_helper.to_array(params[f"{fc}.bias"]) - weight @ mean
    for name, value in ((f"{fc}.weight", weight), (f"{fc}.bias", bias)):
        params[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))


def tiny_mlp(batch: str | int = "N", seed: int = 0) -> onnx.ModelProto:
    """A 64-128-128-10 MLP, small enough that runtime overhead dominates."""
    g = _GraphBuilder(seed)
    x = g.relu(g.matmul_add("input", "fc1", 64, 128))
    x = g.relu(g.matmul_add(x, "fc2", 128, 128))
    g.matmul_add(x, "fc3", 128, 10, output="logits")
    return g.model("tiny-mlp", [batch, 64], [batch, 10])


# squares-detector: finds solid red, green and blue squares of one known size, SSD style.
SQUARES_HEIGHT = 240
SQUARES_WIDTH = 320
SQUARE_SIZE = 32
SQUARES_ANCHOR_STRIDE = 2
# Labels as in SSD models, where 0 would be the background.
SQUARES_LABELS = {1: "red", 2: "green", 3: "blue"}


def squares_detector(height: int = SQUARES_HEIGHT, width: int = SQUARES_WIDTH,
                     size: int = SQUARE_SIZE,
                     stride: int = SQUARES_ANCHOR_STRIDE) -> onnx.ModelProto:
    """A detector for solid red, green and blue squares of size x size pixels.

    Input "image": float32 [1, 3, H, W], RGB in [0, 1] (the built-in preprocessing of BGR frames
    with model_format RGB and no normalization). Output "detections": float32 [1, 1, N, 7], SSD
    rows [image_id, label, confidence, x_min, y_min, x_max, y_max] with coordinates normalized to
    [0, 1] and labels 1 red, 2 green, 3 blue; one row per class and anchor, before NMS.

    Nothing is trained. A 1x1 conv scores each pixel per class (how much that channel exceeds the
    other two, clipped to [0, 1], so grey is 0 and a saturated colour 1). Two average pools, 1 x size
    then size x 1 with the anchor stride, give for every size x size anchor the fraction f of its
    pixels that have the colour. The confidence is clip((f - 0.75) * 4, 0, 1): 1 for an anchor on
    the square, 0.5 when it is 4 pixels off (IoU 0.78), so after per-class NMS at IoU 0.45 one box
    per square is left, within stride / 2 pixels of the truth.
    """
    if (height - size) % stride or (width - size) % stride:
        raise ValueError("the anchors must tile the image exactly")
    rows = (height - size) // stride + 1
    cols = (width - size) // stride + 1
    anchors = rows * cols
    classes = len(SQUARES_LABELS)
    g = _GraphBuilder(seed=0)

    def const(name: str, value: np.ndarray) -> str:
        g.initializers.append(numpy_helper.from_array(value, name))
        return name

    # Score = 4 * (own channel - mean of the other two) - 1, clipped to [0, 1].
    colour = np.full((classes, 3), -2.0, np.float32)
    np.fill_diagonal(colour, 4.0)
    x = g.node("Conv", ["image", const("colour.weight", colour.reshape(classes, 3, 1, 1)),
                        const("colour.bias", np.full(classes, -1.0, np.float32))],
               "colour", kernel_shape=[1, 1])
    zero = const("zero", np.array(0.0, np.float32))
    one = const("one", np.array(1.0, np.float32))
    x = g.node("Clip", [x, zero, one], "colour.clip")
    # The fraction of each anchor's window that has the colour: a separable box filter.
    x = g.node("AveragePool", [x], "box.rows", kernel_shape=[1, size], strides=[1, stride])
    x = g.node("AveragePool", [x], "box.cols", kernel_shape=[size, 1], strides=[stride, 1])
    x = g.node("Sub", [x, const("fraction.offset", np.array(0.75, np.float32))], "fraction.sub")
    x = g.node("Mul", [x, const("fraction.gain", np.array(4.0, np.float32))], "fraction.mul")
    x = g.node("Clip", [x, zero, one], "confidence")
    conf = g.node("Reshape", [x, const("conf.shape", np.array([classes, anchors, 1], np.int64))],
                  "confidence.rows")

    # Constant columns: [image_id, label] per class and the anchor boxes, the same for every class.
    ys, xs = np.mgrid[0:rows, 0:cols]
    x0 = (xs.reshape(-1) * stride).astype(np.float32)
    y0 = (ys.reshape(-1) * stride).astype(np.float32)
    boxes = np.stack([x0 / width, y0 / height, (x0 + size) / width, (y0 + size) / height], -1)
    ids = np.zeros((classes, 1, 2), np.float32)
    ids[:, 0, 1] = sorted(SQUARES_LABELS)
    expand = const("rows.shape", np.array([classes, anchors, 1], np.int64))
    ids = g.node("Expand", [const("ids", ids), expand], "ids.rows")
    boxes = g.node("Expand", [const("anchors", boxes.reshape(1, anchors, 4).astype(np.float32)),
                              expand], "anchors.rows")
    x = g.node("Concat", [ids, conf, boxes], "rows", axis=-1)
    g.node("Reshape", [x, const("detections.shape", np.array([1, 1, classes * anchors, 7], np.int64))],
           "detections")

    graph = helper.make_graph(
        g.nodes, "squares-detector",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, height, width])],
        [helper.make_tensor_value_info("detections", TensorProto.FLOAT,
                                       [1, 1, classes * anchors, 7])],
        initializer=g.initializers,
    )
    model = helper.make_model(graph, producer_name="ringflow.models",
                              opset_imports=[helper.make_opsetid("", _OPSET)])
    model.ir_version = _IR_VERSION
    onnx.checker.check_model(model)
    return model


_BUILDERS: dict[str, Callable[[], onnx.ModelProto]] = {
    "resnet50": resnet50,
    "tiny-mlp": tiny_mlp,
    "squares-detector": squares_detector,
}


def main(argv: list[str] | None = None) -> int:
    """Generate built-in models ahead of time, e.g. before timed benchmarks."""
    parser = argparse.ArgumentParser(
        prog="python -m ringflow.models",
        description="Generate built-in models into the cache and print their paths.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"one of: {', '.join(BUILTIN)}")
    parser.add_argument("--all", action="store_true", help="every built-in model")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BUILTIN]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; "
                     f"built-in models are: {', '.join(BUILTIN)}")
    names = list(BUILTIN) if args.all else args.names
    if not names:
        parser.error("give at least one model name, or --all")
    for name in names:
        print(ensure(name).absolute())
    return 0


if __name__ == "__main__":
    sys.exit(main())

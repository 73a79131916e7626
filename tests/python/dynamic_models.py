"""Small ONNX models with dynamic (or data-dependent) shapes, written offline from a seed.

The shape tests (test_dynamic_shapes.py, test_batch_failure.py) need models whose inputs are not
fixed apart from the batch dimension. Each builder returns a checked onnx.ModelProto; write() saves
one into a directory. Nothing here imports ringflow, so the file also runs on its own as a sanity
check against onnxruntime:

    python tests/python/dynamic_models.py [directory]

MultiOracle is the reference for models with several named inputs and outputs: plain
onnxruntime.InferenceSession.run on the same file.
"""

from __future__ import annotations

import pathlib
import sys
from typing import Callable, Mapping, Sequence, Union

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
# onnxruntime 1.21 is the oldest runtime ringflow supports; it reads IR versions <= 10.
IR_VERSION = 8

# encoder
VOCAB = 100
MAX_SEQ = 64        # rows of the position table: the longest sequence the encoder can take
HIDDEN = 32

# fcn
FCN_IN_CHANNELS = 3
FCN_OUT_CHANNELS = 4

# gather
GATHER_ROWS = 10
GATHER_COLS = 4
GATHER_PICKS = 3    # indices per sample row

# small_cnn (fixed 32x32 image input, for the preprocessing test)
CNN_SIZE = 32
CNN_CLASSES = 10


class _Builder:
    """Nodes and seeded float32 initializers of one graph."""

    def __init__(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def weight(self, name: str, shape: tuple[int, ...], std: float) -> str:
        values = self._rng.standard_normal(shape).astype(np.float32) * np.float32(std)
        return self.const(name, values)

    def const(self, name: str, values: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(values), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def model(self, name: str, inputs: list[onnx.ValueInfoProto],
              outputs: list[onnx.ValueInfoProto]) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs,
                                  initializer=self.initializers)
        proto = helper.make_model(graph, producer_name="ringflow.tests",
                                  opset_imports=[helper.make_opsetid("", OPSET)])
        proto.ir_version = IR_VERSION
        # full_check runs shape inference too, so a dim mismatch inside the graph shows here.
        onnx.checker.check_model(proto, full_check=True)
        return proto


def _value(name: str, elem_type: int, shape: Sequence[Union[int, str, None]]):
    return helper.make_tensor_value_info(name, elem_type, list(shape))


# ------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------

def encoder(seed: int = 0) -> onnx.ModelProto:
    """One transformer encoder layer (single head) over token ids.

    input_ids, attention_mask: int64 [batch, seq] (seq <= MAX_SEQ)
    embeddings: float32 [batch, seq, HIDDEN]   LayerNorm(x + Wo . softmax(QK^T/sqrt(d) + mask) V)
    pooled:     float32 [batch, HIDDEN]        mean of embeddings over the unmasked tokens
    with x = token embedding + position embedding (the first seq rows of a MAX_SEQ-row table).
    """
    g = _Builder(seed)
    std = 1.0 / np.sqrt(HIDDEN)
    tokens = g.node("Gather", [g.weight("token_table", (VOCAB, HIDDEN), 1.0), "input_ids"],
                    "tokens", axis=0)                                     # [b, s, d]
    # The position table is cut to the sample's own length, so the graph depends on seq.
    seq_len = g.node("Shape", ["input_ids"], "seq_len", start=1, end=2)   # [1]
    positions = g.node("Slice", [g.weight("position_table", (MAX_SEQ, HIDDEN), 1.0),
                                 g.const("slice_start", np.array([0], np.int64)), seq_len,
                                 g.const("slice_axis", np.array([0], np.int64))],
                       "positions")                                       # [s, d]
    x = g.node("Add", [tokens, positions], "x")                           # [b, s, d]

    def projection(source: str, name: str) -> str:
        product = g.node("MatMul", [source, g.weight(f"{name}.weight", (HIDDEN, HIDDEN), std)],
                         f"{name}.matmul")
        return g.node("Add", [product, g.weight(f"{name}.bias", (HIDDEN,), 0.02)], name)

    q, k, v = (projection(x, name) for name in ("q", "k", "v"))
    k_t = g.node("Transpose", [k], "k_t", perm=[0, 2, 1])                # [b, d, s]
    scores = g.node("MatMul", [q, k_t], "scores")                         # [b, s, s]
    scaled = g.node("Mul", [scores, g.const("inv_sqrt_d", np.float32(1 / np.sqrt(HIDDEN)))],
                    "scaled")
    # Additive mask: 0 for real tokens, -1e4 for padding, broadcast over the query axis.
    mask = g.node("Cast", ["attention_mask"], "mask", to=TensorProto.FLOAT)  # [b, s]
    keep_not = g.node("Sub", [g.const("one", np.float32(1)), mask], "mask_not")
    penalty = g.node("Mul", [keep_not, g.const("neg_big", np.float32(-1e4))], "penalty")
    penalty_keys = g.node("Unsqueeze", [penalty, g.const("axis_1", np.array([1], np.int64))],
                          "penalty_keys")                                 # [b, 1, s]
    logits = g.node("Add", [scaled, penalty_keys], "attention_logits")
    weights = g.node("Softmax", [logits], "attention", axis=-1)
    context = g.node("MatMul", [weights, v], "context")                   # [b, s, d]
    attended = projection(context, "out")
    residual = g.node("Add", [x, attended], "residual")
    g.node("LayerNormalization",
           [residual, g.const("ln.gamma", np.ones(HIDDEN, np.float32)),
            g.const("ln.beta", np.zeros(HIDDEN, np.float32))],
           "embeddings", axis=-1, epsilon=1e-5)

    # pooled = sum_s(embeddings * mask) / max(sum_s(mask), 1)
    mask_col = g.node("Unsqueeze", [mask, g.const("axis_2", np.array([2], np.int64))],
                      "mask_col")                                         # [b, s, 1]
    masked = g.node("Mul", ["embeddings", mask_col], "masked")
    total = g.node("ReduceSum", [masked, "axis_1"], "masked_sum", keepdims=0)  # [b, d]
    count = g.node("ReduceSum", [mask, "axis_1"], "mask_count", keepdims=1)    # [b, 1]
    count = g.node("Max", [count, "one"], "mask_count_at_least_1")
    g.node("Div", [total, count], "pooled")

    dims = ["batch", "seq"]
    return g.model(
        "encoder",
        [_value("input_ids", TensorProto.INT64, dims),
         _value("attention_mask", TensorProto.INT64, dims)],
        [_value("embeddings", TensorProto.FLOAT, dims + [HIDDEN]),
         _value("pooled", TensorProto.FLOAT, ["batch", HIDDEN])])


def fcn(seed: int = 1) -> onnx.ModelProto:
    """Fully convolutional: float32 [1, 3, height, width] -> Conv 3x3 (pad 1), Relu, Conv 1x1 ->
    float32 [1, 4, height, width]. Batch is fixed at 1; height and width are free."""
    g = _Builder(seed)
    hidden = 8
    conv1 = g.node("Conv", ["image", g.weight("conv1.weight", (hidden, FCN_IN_CHANNELS, 3, 3), 0.3),
                            g.weight("conv1.bias", (hidden,), 0.05)],
                   "conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    relu = g.node("Relu", [conv1], "conv1.relu")
    g.node("Conv", [relu, g.weight("conv2.weight", (FCN_OUT_CHANNELS, hidden, 1, 1), 0.3),
                    g.weight("conv2.bias", (FCN_OUT_CHANNELS,), 0.05)],
           "heatmap", kernel_shape=[1, 1])
    return g.model(
        "fcn",
        [_value("image", TensorProto.FLOAT, [1, FCN_IN_CHANNELS, "height", "width"])],
        [_value("heatmap", TensorProto.FLOAT, [1, FCN_OUT_CHANNELS, "height", "width"])])


def nonzero(seed: int = 2) -> onnx.ModelProto:
    """indices = NonZero(x > 0): float32 [n] -> int64 [1, k], k known only after running."""
    g = _Builder(seed)
    positive = g.node("Greater", ["x", g.const("zero", np.float32(0))], "positive")
    g.node("NonZero", [positive], "indices")
    return g.model("nonzero",
                   [_value("x", TensorProto.FLOAT, ["n"])],
                   [_value("indices", TensorProto.INT64, [1, "k"])])


def two_io(seed: int = 3) -> onnx.ModelProto:
    """a: float32 [batch, 8], b: float32 [batch, 4] ->
    prod = a * rowsum(b)  [batch, 8]   (declared first)
    sum  = a W1 + b W2    [batch, 6]   (declared second)
    The outputs are declared in the opposite order to the one a reader would guess, and each
    depends on both inputs, so mixing up inputs or outputs by position changes the values."""
    g = _Builder(seed)
    row_sum = g.node("ReduceSum", ["b", g.const("axis_1", np.array([1], np.int64))], "b_row_sum",
                     keepdims=1)                                          # [batch, 1]
    g.node("Mul", ["a", row_sum], "prod")
    a_part = g.node("MatMul", ["a", g.weight("w1", (8, 6), 0.5)], "a_part")
    b_part = g.node("MatMul", ["b", g.weight("w2", (4, 6), 0.5)], "b_part")
    g.node("Add", [a_part, b_part], "sum")
    return g.model("two_io",
                   [_value("a", TensorProto.FLOAT, ["batch", 8]),
                    _value("b", TensorProto.FLOAT, ["batch", 4])],
                   [_value("prod", TensorProto.FLOAT, ["batch", 8]),
                    _value("sum", TensorProto.FLOAT, ["batch", 6])])


def gather(seed: int = 4) -> onnx.ModelProto:
    """rows = table[indices]: int64 [batch, 3] -> float32 [batch, 3, 4] from a constant 10x4
    table. An index outside [-10, 9] makes onnxruntime fail the whole run."""
    g = _Builder(seed)
    g.node("Gather", [g.weight("table", (GATHER_ROWS, GATHER_COLS), 1.0), "indices"], "rows",
           axis=0)
    return g.model("gather",
                   [_value("indices", TensorProto.INT64, ["batch", GATHER_PICKS])],
                   [_value("rows", TensorProto.FLOAT, ["batch", GATHER_PICKS, GATHER_COLS])])


def small_cnn(seed: int = 5) -> onnx.ModelProto:
    """A quick stand-in for resnet50 behind frame preprocessing: float32 [batch, 3, 32, 32] ->
    Conv 3x3 stride 2, Relu, global average pool, Gemm -> logits float32 [batch, 10]."""
    g = _Builder(seed)
    conv = g.node("Conv", ["input", g.weight("conv.weight", (16, 3, 3, 3), 0.3),
                           g.weight("conv.bias", (16,), 0.05)],
                  "conv", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    relu = g.node("Relu", [conv], "conv.relu")
    pooled = g.node("GlobalAveragePool", [relu], "pool")
    flat = g.node("Flatten", [pooled], "flat", axis=1)
    g.node("Gemm", [flat, g.weight("fc.weight", (CNN_CLASSES, 16), 0.5),
                    g.weight("fc.bias", (CNN_CLASSES,), 0.05)], "logits", transB=1)
    return g.model("small_cnn",
                   [_value("input", TensorProto.FLOAT, ["batch", 3, CNN_SIZE, CNN_SIZE])],
                   [_value("logits", TensorProto.FLOAT, ["batch", CNN_CLASSES])])


BUILDERS: dict[str, Callable[[], onnx.ModelProto]] = {
    "encoder": encoder,
    "fcn": fcn,
    "nonzero": nonzero,
    "two_io": two_io,
    "gather": gather,
    "small_cnn": small_cnn,
}


def write(name: str, directory: pathlib.Path) -> pathlib.Path:
    """Builds model `name` and saves it as directory/name.onnx; returns the path."""
    path = pathlib.Path(directory) / f"{name}.onnx"
    onnx.save(BUILDERS[name](), str(path))
    return path


# ------------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------------

def encoder_inputs(rng: np.random.Generator, seq: int, batch: int = 1) -> dict[str, np.ndarray]:
    """Random token ids of length `seq`; each row's mask ends in 0..seq-1 padding positions
    (at least one real token), so the masking path matters for the result."""
    ids = rng.integers(0, VOCAB, (batch, seq), dtype=np.int64)
    mask = np.ones((batch, seq), np.int64)
    for row in range(batch):
        real = int(rng.integers(1, seq + 1))
        mask[row, real:] = 0
    return {"input_ids": ids, "attention_mask": mask}


# ------------------------------------------------------------------------------------------------
# Oracle
# ------------------------------------------------------------------------------------------------

Inputs = Union[np.ndarray, Sequence[np.ndarray], Mapping[str, np.ndarray]]


class MultiOracle:
    """onnxruntime's own Python API on a model file, with inputs and outputs addressed by name."""

    def __init__(self, path: pathlib.Path) -> None:
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def feeds(self, inputs: Inputs) -> dict[str, np.ndarray]:
        if isinstance(inputs, Mapping):
            return dict(inputs)
        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        assert len(inputs) == len(self.input_names), "one array per model input"
        return dict(zip(self.input_names, inputs))

    def __call__(self, inputs: Inputs) -> dict[str, np.ndarray]:
        """Every output by name, for inputs given as an array, a list in model order or a dict."""
        values = self.session.run(self.output_names, self.feeds(inputs))
        return dict(zip(self.output_names, values))

    def failure(self, inputs: Inputs) -> str:
        """onnxruntime's error message for inputs it refuses to run; fails if it runs them."""
        try:
            self.session.run(self.output_names, self.feeds(inputs))
        except Exception as error:  # noqa: BLE001 - ORT raises its own exception classes
            return str(error)
        raise AssertionError("onnxruntime ran inputs that were supposed to fail")


def assert_outputs_match(sample, expected: Mapping[str, np.ndarray], atol: float,
                         what: str = "sample") -> None:
    """A result (anything with .names and [name]) has exactly the oracle's outputs, in the
    model's declared order, each of the oracle's shape and dtype; floats within `atol`, other
    dtypes exactly equal."""
    assert list(sample.names) == list(expected), f"{what}: outputs {list(sample.names)}"
    for name, reference in expected.items():
        actual = np.asarray(sample[name])
        label = f"{what}, output {name!r}"
        assert actual.shape == reference.shape, \
            f"{label}: shape {actual.shape} != expected {reference.shape}"
        assert actual.dtype == reference.dtype, \
            f"{label}: dtype {actual.dtype} != expected {reference.dtype}"
        if np.issubdtype(reference.dtype, np.floating):
            diff = float(np.max(np.abs(actual - reference), initial=0.0))
            assert diff <= atol, f"{label}: max abs diff {diff:.3g} exceeds {atol:.3g}"
        else:
            np.testing.assert_array_equal(actual, reference, err_msg=label)


# ------------------------------------------------------------------------------------------------
# Stand-alone sanity check
# ------------------------------------------------------------------------------------------------

def _sanity(directory: pathlib.Path) -> None:
    rng = np.random.default_rng(0)
    paths = {name: write(name, directory) for name in BUILDERS}
    oracles = {name: MultiOracle(path) for name, path in paths.items()}

    enc = oracles["encoder"]
    for seq in (1, 7, MAX_SEQ):
        out = enc(encoder_inputs(rng, seq, batch=2))
        assert out["embeddings"].shape == (2, seq, HIDDEN) and out["pooled"].shape == (2, HIDDEN)
        assert np.all(np.isfinite(out["embeddings"]))
    print("encoder ok:", {k: v.shape for k, v in out.items()})

    for hw in ((17, 23), (1, 1)):
        out = oracles["fcn"](rng.standard_normal((1, 3) + hw).astype(np.float32))
        assert out["heatmap"].shape == (1, FCN_OUT_CHANNELS) + hw
    print("fcn ok")

    nz = oracles["nonzero"]
    assert nz(-np.ones(5, np.float32))["indices"].shape == (1, 0)
    assert nz(np.array([1, -1, 2], np.float32))["indices"].tolist() == [[0, 2]]
    print("nonzero ok")

    out = oracles["two_io"]({"b": np.ones((2, 4), np.float32), "a": np.ones((2, 8), np.float32)})
    assert out["prod"].shape == (2, 8) and out["sum"].shape == (2, 6)
    assert oracles["two_io"].output_names == ["prod", "sum"]
    print("two_io ok")

    gat = oracles["gather"]
    assert gat(np.array([[0, 9, -10]], np.int64))["rows"].shape == (1, 3, 4)
    print("gather failure:", gat.failure(np.array([[0, 50, 1]], np.int64)))

    out = oracles["small_cnn"](rng.standard_normal((2, 3, CNN_SIZE, CNN_SIZE)).astype(np.float32))
    assert out["logits"].shape == (2, CNN_CLASSES)
    print("small_cnn ok; models in", directory)


if __name__ == "__main__":
    import tempfile

    if len(sys.argv) > 1:
        _sanity(pathlib.Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            _sanity(pathlib.Path(tmp))

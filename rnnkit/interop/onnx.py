"""Export rnnkit layers and models to ONNX, built on the ONNX ``RNN / LSTM / GRU`` operators.

``export(module, path, opset=None)`` writes one ``.onnx`` file (atomically: a temporary file in
the same folder, then a rename).  The graphs (N and T dynamic)::

    RNN / LSTM / GRU layer      inputs   x (N, T, I) float32, lengths (N,) int32
                                         [h0 (L*D, N, H) [, c0] with initial_state=True]
                                outputs  y (N, T, D*H), h_n (L*D, N, H) [, c_n for an LSTM]

with the semantics of ``layer.forward(x, state, lengths)``: padded steps (t >= lengths[n]) of y
are 0, the state is the one at each sequence's last valid step, and the reverse direction runs
over the valid part only (the operators' ``sequence_lens``).  Pass ``lengths = T`` for full rows.
Whole models (a language model, a forecaster, a classifier) are registered by their
applications (``rnnkit/apps/<app>/export.py``), which describe their graphs.

How the graph is laid out (see shared INTEROP.md for the verified facts):

* one operator per layer, both directions in it (``direction="bidirectional"``); weights are
  re-stacked into ONNX's gate order with the table in ``gates.py``; ``B`` = [W-bias, R-bias];
* the operators run time-major (``layout=0``): onnxruntime's CPU provider rejects ``layout=1``,
  so the batch-first input and output get one Transpose each, and between layers the
  ``Y (T, D, N, H)`` output is made ``(T, N, D*H)`` by Transpose + Reshape;
* GRU: ``linear_before_reset=1`` is torch's form (rnnkit's default ``reset_after=True``); a
  ``reset_after=False`` GRU (Keras's other form) is the operator's default ``linear_before_reset=0``;
* an LSTM with ``proj_size`` cannot be exported: the ONNX LSTM operator has no projection.

onnxruntime's CPU kernels for these operators compute in float32, so the networks are float32;
a float64 module is exported with its weights rounded to float32.

A new model kind plugs in with ``register_exporter(cls, builder)``: a function ``(graph, model,
options)`` that declares its inputs and outputs and adds its nodes with ``recurrent_stack`` and
the ``Graph`` helpers.  This module never imports an application; an application's export
module registers its builders when the application is imported.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..data.files import write_atomic
from ..nn import GRU, LSTM, RNN
from .gates import permutation, permute_blocks

DEFAULT_OPSET = 17
MIN_OPSET = 14  # the recurrent operators' version used here (checked at 14 and 22)


def _onnx():
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("ONNX export needs onnx: pip install 'rnnkit[onnx]'") from exc
    return onnx


def _kind(layer) -> str:
    return "lstm" if isinstance(layer, LSTM) else "gru" if isinstance(layer, GRU) else "rnn"


class Graph:
    """A small builder over ``onnx.helper``: unique names, constants, nodes, inputs, outputs."""

    def __init__(self) -> None:
        self.onnx = _onnx()
        self.nodes: list = []
        self.initializers: list = []
        self.inputs: list = []
        self.outputs: list = []
        self.metadata: dict[str, str] = {}  # the model's metadata_props
        self._used: set[str] = set()
        self._shared: dict[str, str] = {}

    def name(self, base: str) -> str:
        name, k = base, 0
        while name in self._used:
            k += 1
            name = f"{base}_{k}"
        self._used.add(name)
        return name

    def const(self, base: str, array: np.ndarray) -> str:
        name = self.name(base)
        array = np.asarray(array)  # ascontiguousarray alone makes a scalar (1,): keep the shape
        self.initializers.append(self.onnx.numpy_helper.from_array(
            np.ascontiguousarray(array).reshape(array.shape), name))
        return name

    def shared(self, base: str, array: np.ndarray) -> str:
        """One constant under one name however often it is used (axes, shapes)."""
        if base not in self._shared:
            self._shared[base] = self.const(base, array)
        return self._shared[base]

    def op(self, op_type: str, inputs: list[str], base: str | None = None, n_out: int = 1,
           outputs: list[str] | None = None, **attrs):
        """Add a node; returns its output name (or the list of them when n_out > 1)."""
        while inputs and inputs[-1] == "":  # trailing optional inputs may be left out
            inputs = inputs[:-1]
        if outputs is None:
            outputs = [self.name(f"{base or op_type.lower()}_out{k}" if n_out > 1
                                 else base or op_type.lower()) for k in range(n_out)]
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, outputs,
                                                     name=self.name(f"{op_type}_node"), **attrs))
        return outputs if n_out > 1 else outputs[0]

    def input(self, name: str, elem_type: int, shape: list) -> str:
        self._used.add(name)
        self.inputs.append(self.onnx.helper.make_tensor_value_info(name, elem_type, shape))
        return name

    def output(self, name: str, source: str, elem_type: int, shape: list) -> str:
        """Name ``source`` as the graph output ``name`` (through an Identity node)."""
        self.op("Identity", [source], outputs=[name])
        self._used.add(name)
        self.outputs.append(self.onnx.helper.make_tensor_value_info(name, elem_type, shape))
        return name


# ------------------------------------------------------------------------------------------
# the recurrent stack (shared by every model kind)
# ------------------------------------------------------------------------------------------
def recurrent_stack(g: Graph, layer, x_tm: str, lengths: str = "", h0: str = "", c0: str = "",
                    prefix: str = "rnn"):
    """Add an rnnkit RNN / LSTM / GRU to the graph, one ONNX operator per layer.

    x_tm: time-major input (T, N, I); lengths: int32 (N,) or "" (all T); h0, c0: (L*D, N, H) or "".
    Returns (y_tm (T, N, D*H), h_n (L*D, N, H), c_n or None).
    """
    kind = _kind(layer)
    if kind == "lstm" and layer.proj_size:
        raise ValueError(f"cannot export an LSTM with proj_size={layer.proj_size} to ONNX: the "
                         "ONNX LSTM operator has no projection")
    D, L, H = layer.num_directions, layer.num_layers, layer.hidden_size
    p = permutation(kind, "torch", "onnx")
    params = layer.params
    attrs: dict[str, Any] = {"hidden_size": H, "direction": "bidirectional" if D == 2 else "forward"}
    if kind == "rnn":
        attrs["activations"] = ["Relu" if layer.nonlinearity == "relu" else "Tanh"] * D
    if kind == "gru":
        # torch's GRU (reset_after=True) applies the reset gate after the recurrent matmul
        attrs["linear_before_reset"] = 1 if layer.reset_after else 0
    op_type = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[kind]
    sfxs = ("", "_reverse")[:D]
    x, hs, cs = x_tm, [], []
    for k in range(L):
        blocks = {base: [permute_blocks(np.asarray(params[f"{base}_l{k}{s}"], np.float32), p)
                         for s in sfxs] for base in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                  if layer.bias or base.startswith("weight")}
        W = g.const(f"{prefix}_W_l{k}", np.stack(blocks["weight_ih"]))  # (D, gH, I)
        R = g.const(f"{prefix}_R_l{k}", np.stack(blocks["weight_hh"]))  # (D, gH, H)
        B = ""
        if layer.bias:  # (D, 2gH) = [W-bias, R-bias]
            B = g.const(f"{prefix}_B_l{k}", np.concatenate([np.stack(blocks["bias_ih"]),
                                                            np.stack(blocks["bias_hh"])], axis=1))
        inputs = [x, W, R, B, lengths, _layer_slice(g, h0, k, D, L, f"{prefix}_h0_l{k}")]
        if kind == "lstm":
            inputs.append(_layer_slice(g, c0, k, D, L, f"{prefix}_c0_l{k}"))
        outs = g.op(op_type, inputs, base=f"{prefix}_l{k}", n_out=3 if kind == "lstm" else 2, **attrs)
        Y = outs[0]  # (T, D, N, H)
        hs.append(outs[1])
        if kind == "lstm":
            cs.append(outs[2])
        if D == 1:
            x = g.op("Squeeze", [Y, g.shared("axis1", np.array([1], np.int64))],
                     base=f"{prefix}_y_l{k}")  # (T, N, H)
        else:
            t = g.op("Transpose", [Y], base=f"{prefix}_yt_l{k}", perm=[0, 2, 1, 3])  # (T, N, D, H)
            x = g.op("Reshape", [t, g.shared("shape_00m1", np.array([0, 0, -1], np.int64))],
                     base=f"{prefix}_y_l{k}")  # (T, N, D*H)

    def cat(parts, base):  # per-layer states (D, N, H) -> (L*D, N, H)
        return parts[0] if len(parts) == 1 else g.op("Concat", parts, base=base, axis=0)

    h_n, c_n = cat(hs, f"{prefix}_h_n"), (cat(cs, f"{prefix}_c_n") if kind == "lstm" else None)
    if lengths and h0:
        # onnxruntime returns a zero state for a sequence of length 0; rnnkit (and the meaning
        # of "the state after the last valid step") returns the initial state
        zero = g.shared("zero_i32", np.array(0, np.int32))
        empty = g.op("Equal", [lengths, zero], base=f"{prefix}_empty")  # (N,) bool
        empty = g.op("Unsqueeze", [empty, g.shared("axes02", np.array([0, 2], np.int64))],
                     base=f"{prefix}_empty_mask")  # (1, N, 1)
        h_n = g.op("Where", [empty, h0, h_n], base=f"{prefix}_h_n_kept")
        if c_n is not None:
            c_n = g.op("Where", [empty, c0, c_n], base=f"{prefix}_c_n_kept")
    return x, h_n, c_n


def _layer_slice(g: Graph, state: str, k: int, D: int, L: int, base: str) -> str:
    """Rows [k*D, (k+1)*D) of a (L*D, N, H) state: layer k's initial state."""
    if not state or L == 1:
        return state
    return g.op("Slice", [state, g.const(f"{base}_start", np.array([k * D], np.int64)),
                          g.const(f"{base}_end", np.array([(k + 1) * D], np.int64)),
                          g.shared("axis0", np.array([0], np.int64))], base=base)


# ------------------------------------------------------------------------------------------
# builders, one per model kind
# ------------------------------------------------------------------------------------------
def _build_recurrent(g: Graph, layer, options: dict) -> None:
    T = g.onnx.TensorProto
    LD, H = layer.num_layers * layer.num_directions, layer.hidden_size
    x = g.input("x", T.FLOAT, ["N", "T", layer.input_size])
    lengths = g.input("lengths", T.INT32, ["N"])
    h0 = c0 = ""
    if options.get("initial_state"):
        h0 = g.input("h0", T.FLOAT, [LD, "N", H])
        if _kind(layer) == "lstm":
            c0 = g.input("c0", T.FLOAT, [LD, "N", H])
    x_tm = g.op("Transpose", [x], base="x_tm", perm=[1, 0, 2])  # (T, N, I)
    y_tm, h_n, c_n = recurrent_stack(g, layer, x_tm, lengths, h0, c0)
    y = g.op("Transpose", [y_tm], base="y_bf", perm=[1, 0, 2])  # (N, T, D*H)
    g.output("y", y, T.FLOAT, ["N", "T", layer.num_directions * H])
    g.output("h_n", h_n, T.FLOAT, [LD, "N", H])
    if c_n is not None:
        g.output("c_n", c_n, T.FLOAT, [LD, "N", H])


def qualname(cls: type) -> str:
    """The key of a class in the registries: ``module.QualifiedName``."""
    return f"{cls.__module__}.{cls.__qualname__}"


# class (module.qualname) -> builder; the layers are here, an application registers its models
# (`register_exporter`, from the application's own export module)
EXPORTERS: dict[str, Callable[[Graph, Any, dict], None]] = {
    qualname(cls): _build_recurrent for cls in (RNN, LSTM, GRU)}


def register_exporter(cls: type, builder: Callable[[Graph, Any, dict], None]) -> None:
    """Let ``export`` write instances of ``cls`` with ``builder(graph, model, options)``."""
    EXPORTERS[qualname(cls)] = builder


def _builder(module):
    for cls in type(module).__mro__:
        fn = EXPORTERS.get(qualname(cls))
        if fn is not None:
            return fn
    raise ValueError(f"ONNX export does not support {type(module).__name__}; supported: "
                     + ", ".join(sorted(k.rsplit('.', 1)[1] for k in EXPORTERS)))


def to_onnx(module, opset: int | None = None, *, initial_state: bool = False):
    """The ``onnx.ModelProto`` of ``export`` (checked with ``onnx.checker``), without writing it."""
    onnx = _onnx()
    opset = DEFAULT_OPSET if opset is None else opset
    newest = onnx.defs.onnx_opset_version()
    if int(opset) != opset or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset must be an integer in [{MIN_OPSET}, {newest}] "
                         f"(this onnx package's newest), got {opset}")
    build = _builder(module)
    g = Graph()
    build(g, module, {"initial_state": initial_state})
    graph = onnx.helper.make_graph(g.nodes, f"rnnkit_{type(module).__name__}", g.inputs,
                                   g.outputs, g.initializers)
    opset_id = onnx.helper.make_opsetid("", int(opset))
    model = onnx.helper.make_model(
        graph, opset_imports=[opset_id], producer_name="rnnkit",
        # the oldest IR version that carries this opset: older runtimes can load the file
        ir_version=onnx.helper.find_min_ir_version_for([opset_id]))
    onnx.helper.set_model_props(model, g.metadata)
    onnx.checker.check_model(model, full_check=True)
    return model


def export(module, path: str | os.PathLike, opset: int | None = None, *,
           initial_state: bool = False) -> Path:
    """Write ``module`` (an RNN / LSTM / GRU layer, or a model an application registered: a
    language model, a forecaster, a classifier) as an ONNX file.

    opset: ONNX operator set, default 17, at least 14.  initial_state (layers only): add h0
    (and c0) inputs; a language model always has them, since generation carries its state.
    The file appears complete or not at all (temporary file + rename).  Returns the path.
    """
    return write_atomic(path, to_onnx(module, opset, initial_state=initial_state).SerializeToString())

"""Export rnnkit layers and models to ONNX, built on the ONNX ``RNN / LSTM / GRU`` operators.

``export(module, path, opset=None)`` writes one ``.onnx`` file (atomically: a temporary file in
the same folder, then a rename).  The graphs (N and T dynamic)::

    RNN / LSTM / GRU layer      inputs   x (N, T, I) float32, lengths (N,) int32
                                         [h0 (L*D, N, H) [, c0] with initial_state=True]
                                outputs  y (N, T, D*H), h_n (L*D, N, H) [, c_n for an LSTM]
    language model              inputs   ids (N, T) int64, h0 (L, N, H) [, c0 for an LSTM]
    (rnnkit.apps.lm)            outputs  logits (N, T, V), h_n (L, N, H) [, c_n]
    forecasting network         inputs   x (N, T, F) float32, extra (N, E) float32 (scaled)
    (ForecastNet)               outputs  mean (N, H), var (N, H) (scaled units)
    forecaster: the ensemble    inputs   context (N, C) float64, scale (N,) float64
    with scaling, calibration            [, calendar (N, C+H, 2c)] [, covariates (N, C, k)]
    (Forecaster)                outputs  mean, sd, lower_80, upper_80, lower_95, upper_95
                                         (N, H) float64, in the series' units

with the semantics of ``layer.forward(x, state, lengths)``: padded steps (t >= lengths[n]) of y
are 0, the state is the one at each sequence's last valid step, and the reverse direction runs
over the valid part only (the operators' ``sequence_lens``).  Pass ``lengths = T`` for full rows.
A forecaster's graph is ``Forecaster.forecast`` after the part that needs each whole series
(``Forecaster.onnx_inputs(data)`` makes its feeds; see ``_build_forecaster``); its scaling and
mixing run in float64, its networks in float32, and the file's metadata_props record context,
horizon, frequency and season.

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

A new model kind plugs in by adding one builder to ``EXPORTERS`` (keyed by the class's qualified
name): a function ``(graph, model, options)`` that declares its inputs and outputs and adds its
nodes with ``recurrent_stack`` and the ``Graph`` helpers.
"""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..nn import GRU, LSTM
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


def _build_language_model(g: Graph, model, options: dict) -> None:
    """ids -> Embedding -> recurrent stack -> Linear; dropout is the identity at inference."""
    T = g.onnx.TensorProto
    rnn, cfg = model.rnn, model.cfg
    L, H, V = rnn.num_layers, rnn.hidden_size, cfg.vocab_size
    ids = g.input("ids", T.INT64, ["N", "T"])
    h0 = g.input("h0", T.FLOAT, [L, "N", H])
    c0 = g.input("c0", T.FLOAT, [L, "N", H]) if _kind(rnn) == "lstm" else ""
    ids_tm = g.op("Transpose", [ids], base="ids_tm", perm=[1, 0])  # (T, N)
    emb = g.const("embed_weight", np.asarray(model.embed.params["weight"], np.float32))
    x_tm = g.op("Gather", [emb, ids_tm], base="embedded", axis=0)  # (T, N, E)
    y_tm, h_n, c_n = recurrent_stack(g, rnn, x_tm, "", h0, c0)
    head = model.head.params
    logits = g.op("MatMul", [y_tm, g.const("head_weight_t",
                                           np.asarray(head["weight"], np.float32).T)], base="head")
    if "bias" in head:
        logits = g.op("Add", [logits, g.const("head_bias", np.asarray(head["bias"], np.float32))],
                      base="head_bias_add")
    logits = g.op("Transpose", [logits], base="logits_bf", perm=[1, 0, 2])  # (N, T, V)
    g.output("logits", logits, T.FLOAT, ["N", "T", V])
    g.output("h_n", h_n, T.FLOAT, [L, "N", H])
    if c_n is not None:
        g.output("c_n", c_n, T.FLOAT, [L, "N", H])


def _forecast_net(g: Graph, net, x_tm: str, extra: str, prefix: str = "") -> tuple[str, str]:
    """One ForecastNet's nodes: x_tm (T, N, F) and extra (N, E) -> recurrent stack -> [last
    output, extra] -> Linear -> mean (N, H), var = softplus(raw) + var_floor (N, H)."""
    H = net.cfg.horizon
    y_tm, _, _ = recurrent_stack(g, net.rnn, x_tm, prefix=f"{prefix}rnn")
    last = g.op("Gather", [y_tm, g.shared("index_m1", np.array(-1, np.int64))],
                base=f"{prefix}last_h", axis=0)  # (N, hidden): the output at the last step
    u = g.op("Concat", [last, extra], base=f"{prefix}head_input", axis=1)  # (N, hidden + E)
    head = net.head.params
    o = g.op("MatMul", [u, g.const(f"{prefix}head_weight_t",
                                   np.asarray(head["weight"], np.float32).T)], base=f"{prefix}head")
    o = g.op("Add", [o, g.const(f"{prefix}head_bias", np.asarray(head["bias"], np.float32))],
             base=f"{prefix}head_out")  # (N, 2H)
    mean, raw = g.op("Split", [o, g.shared(f"split_{H}_{H}", np.array([H, H], np.int64))],
                     base=f"{prefix}split", n_out=2, axis=1)
    var = g.op("Add", [g.op("Softplus", [raw], base=f"{prefix}softplus"),
                       g.const(f"{prefix}var_floor", np.array(net.cfg.var_floor, np.float32))],
               base=f"{prefix}variance")
    return mean, var


def _build_forecast_net(g: Graph, net, options: dict) -> None:
    """The forecaster's network alone, on scaled inputs: x (N, T, F), extra (N, E) -> mean, var."""
    T = g.onnx.TensorProto
    cfg, H = net.cfg, net.cfg.horizon
    x = g.input("x", T.FLOAT, ["N", "T", cfg.input_size])
    extra = g.input("extra", T.FLOAT, ["N", cfg.extra_size])
    x_tm = g.op("Transpose", [x], base="x_tm", perm=[1, 0, 2])  # (T, N, F)
    mean, var = _forecast_net(g, net, x_tm, extra)
    g.output("mean", mean, T.FLOAT, ["N", H])
    g.output("var", var, T.FLOAT, ["N", H])


def _build_forecaster(g: Graph, fc, options: dict) -> None:
    """A whole forecaster (``rnnkit.apps.forecast.train.Forecaster``): window inputs in original
    units -> scaling -> every member -> mixture -> calibration -> forecasts in original units.

    The graph repeats ``assemble`` and ``Forecaster.forecast``: z = (context - level) / scale,
    x = [z, calendar of the context, covariates], extra = [z, future calendar]; the members'
    Gaussians combine as an equal mixture (mean of means; mean of second moments minus the
    squared mean, at least the smallest variance), the variance is multiplied by var_scale and
    mean = level + scale * mean_z, sd = scale * sqrt(var).  Scaling and mixing run in float64
    (a series at level 1e6 with steps of 1 keeps its digits), the networks in float32.
    """
    from ..apps.forecast.train import Z80, Z95

    if not fc.nets:
        raise ValueError("cannot export an untrained forecaster: it has no networks")
    T = g.onnx.TensorProto
    C, H = fc.context, fc.horizon
    shapes = {"context": ["N", C], "scale": ["N"], "covariates": ["N", C, fc.n_covariates],
              "calendar": ["N", C + H, 2 * fc.freq.calendar_size]}
    inp = {name: g.input(name, T.DOUBLE, shapes[name]) for name in fc.input_names}

    def steps(source, start, stop, base):  # source[:, start:stop]
        return g.op("Slice", [source, g.const(f"{base}_start", np.array([start], np.int64)),
                              g.const(f"{base}_stop", np.array([stop], np.int64)),
                              g.shared("axis1", np.array([1], np.int64))], base=base)

    level = steps(inp["context"], C - 1, C, "level")  # (N, 1): the last context value
    scale = g.op("Unsqueeze", [inp["scale"], g.shared("axis1", np.array([1], np.int64))],
                 base="scale_col")  # (N, 1)
    z = g.op("Div", [g.op("Sub", [inp["context"], level], base="change"), scale], base="z64")
    z = g.op("Cast", [z], base="z", to=T.FLOAT)  # (N, C)
    x = [g.op("Unsqueeze", [z, g.shared("axis2", np.array([2], np.int64))], base="z_steps")]
    extra = [z]
    if "calendar" in inp:
        cal = g.op("Cast", [inp["calendar"]], base="calendar32", to=T.FLOAT)  # (N, C + H, 2c)
        x.append(steps(cal, 0, C, "calendar_context"))  # (N, C, 2c)
        extra.append(g.op("Reshape", [steps(cal, C, C + H, "calendar_future"),
                                      g.shared("shape_0m1", np.array([0, -1], np.int64))],
                          base="calendar_future_flat"))  # (N, H * 2c)
    if "covariates" in inp:
        x.append(g.op("Cast", [inp["covariates"]], base="covariates32", to=T.FLOAT))  # (N, C, k)
    x = g.op("Concat", x, base="x", axis=2) if len(x) > 1 else x[0]  # (N, C, F)
    extra = g.op("Concat", extra, base="extra", axis=1) if len(extra) > 1 else extra[0]  # (N, E)
    x_tm = g.op("Transpose", [x], base="x_tm", perm=[1, 0, 2])  # (C, N, F)

    means, variances = [], []
    for k, net in enumerate(fc.nets):
        mean_k, var_k = _forecast_net(g, net, x_tm, extra, prefix=f"member{k}_")
        means.append(g.op("Cast", [mean_k], base=f"member{k}_mean64", to=T.DOUBLE))
        variances.append(g.op("Cast", [var_k], base=f"member{k}_var64", to=T.DOUBLE))
    count = g.const("members", np.array(len(fc.nets), np.float64))
    m = g.op("Div", [g.op("Sum", means, base="mean_sum"), count], base="mean_z")
    second = [g.op("Add", [v, g.op("Mul", [mu, mu], base=f"member{k}_mean_sq")],
                   base=f"member{k}_second") for k, (mu, v) in enumerate(zip(means, variances))]
    second = g.op("Div", [g.op("Sum", second, base="second_sum"), count], base="second")
    var = g.op("Sub", [second, g.op("Mul", [m, m], base="mean_z_sq")], base="mixture_var")
    var = g.op("Max", [var, g.op("Min", variances, base="min_var")], base="var_z")
    var = g.op("Mul", [var, g.const("var_scale", np.asarray(fc.var_scale, np.float64))],
               base="var_calibrated")
    mean = g.op("Add", [level, g.op("Mul", [scale, m], base="scaled_mean")], base="mean_y")
    sd = g.op("Mul", [g.op("Sqrt", [var], base="sd_z"), scale], base="sd_y")
    g.output("mean", mean, T.DOUBLE, ["N", H])
    g.output("sd", sd, T.DOUBLE, ["N", H])
    for level_name, q in (("80", Z80), ("95", Z95)):  # the intervals mean -/+ q sd
        half = g.op("Mul", [sd, g.const(f"z{level_name}", np.array(q, np.float64))],
                    base=f"half_{level_name}")
        for side, op in (("lower", "Sub"), ("upper", "Add")):
            name = f"{side}_{level_name}"
            g.output(name, g.op(op, [mean, half], base=f"{name}_y"), T.DOUBLE, ["N", H])
    g.metadata.update({"rnnkit.model": "forecaster", "context": str(C), "horizon": str(H),
                       "frequency": json.dumps(fc.freq.to_json()), "season": str(fc.season),
                       "members": str(len(fc.nets)), "inputs": ", ".join(fc.input_names)})


# class (module.qualname) -> builder; a new model kind adds one entry
EXPORTERS: dict[str, Callable[[Graph, Any, dict], None]] = {
    "rnnkit.nn.recurrent.RNN": _build_recurrent,
    "rnnkit.nn.recurrent.LSTM": _build_recurrent,
    "rnnkit.nn.recurrent.GRU": _build_recurrent,
    "rnnkit.apps.lm.model.LanguageModel": _build_language_model,
    "rnnkit.apps.forecast.model.ForecastNet": _build_forecast_net,
    "rnnkit.apps.forecast.train.Forecaster": _build_forecaster,
}


def _builder(module):
    for cls in type(module).__mro__:
        fn = EXPORTERS.get(f"{cls.__module__}.{cls.__qualname__}")
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
    """Write ``module`` (an RNN / LSTM / GRU layer, a language model, a forecasting network or a
    whole ``Forecaster``) as an ONNX file.

    opset: ONNX operator set, default 17, at least 14.  initial_state (layers only): add h0
    (and c0) inputs; a language model always has them, since generation carries its state.
    The file appears complete or not at all (temporary file + rename).  Returns the path.
    """
    data = to_onnx(module, opset, initial_state=initial_state).SerializeToString()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:  # same folder, so the rename below is atomic
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path

"""The classifier's ONNX exporter, registered with rnnkit.interop.

Imported by ``rnnkit.apps.classify`` itself, so a classifier always exports; onnx is imported
only when a conversion runs.  The graph (N and T dynamic)::

    inputs   x (N, T, F) float32 raw features, zero-padded (text: ids (N, T) int64)
             lengths (N,) int64 in [1, T]
    output   probabilities (N, C) float32: the members' softmax averaged

and inside it what `Classifier.predict` does: per-channel scaling (padded steps set to 0),
frames glued in groups of ``stack`` (lengths -> ceil(lengths / stack)), the input layer, the
recurrent stack over the valid steps, the masked pooling, the head.  Feeds for a file come from
``Classifier.onnx_inputs(path)``.
"""
from __future__ import annotations

import numpy as np

from ...interop import onnx as _onnx
from ...interop.onnx import Graph, recurrent_stack
from .model import Ensemble, SequenceNet
from .train import Classifier


def _f32(a) -> np.ndarray:
    return np.asarray(a, np.float32)


def _mask(g: Graph, lengths: str, ref: str, base: str) -> str:
    """(N, T') bool: t < lengths[n], with T' = ref's axis 1."""
    T = g.op("Gather", [g.op("Shape", [ref], base=f"{base}_shape"),
                        g.shared("one_i64", np.array(1, np.int64))], base=f"{base}_T", axis=0)
    steps = g.op("Range", [g.shared("zero_i64", np.array(0, np.int64)), T,
                           g.shared("one_i64", np.array(1, np.int64))], base=f"{base}_steps")
    return g.op("Less", [g.op("Unsqueeze", [steps, g.shared("axis0", np.array([0], np.int64))],
                              base=f"{base}_row"),
                         g.op("Unsqueeze", [lengths, g.shared("axis1", np.array([1], np.int64))],
                              base=f"{base}_col")], base=base)


def _linear(g: Graph, x: str, lin, base: str) -> str:
    y = g.op("MatMul", [x, g.const(f"{base}_weight_t", _f32(lin.params["weight"]).T)], base=base)
    if "bias" in lin.params:
        y = g.op("Add", [y, g.const(f"{base}_bias", _f32(lin.params["bias"]))], base=f"{base}_b")
    return y


def _sum_t(g: Graph, x: str, base: str) -> str:
    return g.op("ReduceSum", [x, g.shared("axis1", np.array([1], np.int64))], base=base,
                keepdims=0)


def _pool(g: Graph, pool, y: str, mask: str, lengths: str, prefix: str) -> str:
    """The masked pooling of y (N, T', D) -> (N, D); see model.Pool."""
    T = g.onnx.TensorProto
    if pool.kind == "concat":
        return g.op("Concat", [_pool(g, part, y, mask, lengths, f"{prefix}{part.kind}_")
                               for part in pool.parts], base=f"{prefix}concat", axis=1)
    ax2 = g.shared("axis2", np.array([2], np.int64))
    maskf = g.op("Cast", [mask], base=f"{prefix}maskf", to=T.FLOAT)          # (N, T')
    if pool.kind == "mean":
        total = _sum_t(g, g.op("Mul", [y, g.op("Unsqueeze", [maskf, ax2], base=f"{prefix}m3")],
                               base=f"{prefix}masked"), f"{prefix}sum")
        count = g.op("Cast", [g.op("Unsqueeze", [lengths, g.shared("axis1", np.array([1], np.int64))],
                                   base=f"{prefix}len_col")], base=f"{prefix}count", to=T.FLOAT)
        return g.op("Div", [total, count], base=f"{prefix}mean")
    if pool.kind == "max":
        low = g.shared("lowest", np.array(np.finfo(np.float32).min, np.float32))
        masked = g.op("Where", [g.op("Unsqueeze", [mask, ax2], base=f"{prefix}m3"), y, low],
                      base=f"{prefix}masked")
        arg = g.op("ArgMax", [masked], base=f"{prefix}argmax", axis=1, keepdims=1)  # (N, 1, D)
        best = g.op("GatherElements", [y, arg], base=f"{prefix}gather", axis=1)
        return g.op("Squeeze", [best, g.shared("axis1", np.array([1], np.int64))],
                    base=f"{prefix}max")
    if pool.kind == "last":
        steps = g.op("Range", [g.shared("zero_i64", np.array(0, np.int64)),
                               g.op("Gather", [g.op("Shape", [y], base=f"{prefix}shape"),
                                               g.shared("one_i64", np.array(1, np.int64))],
                                    base=f"{prefix}T", axis=0),
                               g.shared("one_i64", np.array(1, np.int64))], base=f"{prefix}steps")
        last = g.op("Sub", [lengths, g.shared("one_i64", np.array(1, np.int64))],
                    base=f"{prefix}last_step")
        onehot = g.op("Cast", [g.op("Equal", [
            g.op("Unsqueeze", [steps, g.shared("axis0", np.array([0], np.int64))],
                 base=f"{prefix}row"),
            g.op("Unsqueeze", [last, g.shared("axis1", np.array([1], np.int64))],
                 base=f"{prefix}col")], base=f"{prefix}is_last")], base=f"{prefix}onehot",
            to=T.FLOAT)
        p = _sum_t(g, g.op("Mul", [y, g.op("Unsqueeze", [onehot, ax2], base=f"{prefix}oh3")],
                           base=f"{prefix}at_last"), f"{prefix}last")
        if pool.directions == 2:
            half = pool.size // 2
            first = g.op("Gather", [y, g.shared("zero_i64", np.array(0, np.int64))],
                         base=f"{prefix}first", axis=1)                       # (N, D)
            fwd = g.op("Slice", [p, g.const(f"{prefix}s0", np.array([0], np.int64)),
                                 g.const(f"{prefix}e0", np.array([half], np.int64)),
                                 g.shared("axis1", np.array([1], np.int64))], base=f"{prefix}fwd")
            rev = g.op("Slice", [first, g.const(f"{prefix}s1", np.array([half], np.int64)),
                                 g.const(f"{prefix}e1", np.array([2 * half], np.int64)),
                                 g.shared("axis1", np.array([1], np.int64))], base=f"{prefix}rev")
            p = g.op("Concat", [fwd, rev], base=f"{prefix}last_both", axis=1)
        return p
    e = g.op("Tanh", [_linear(g, y, pool.attn, f"{prefix}attn")], base=f"{prefix}e")  # (N, T', A)
    s = g.op("MatMul", [e, g.const(f"{prefix}v", _f32(pool.params["v"]))], base=f"{prefix}score")
    s = g.op("Where", [mask, s, g.shared("minus_inf", np.array(-np.inf, np.float32))],
             base=f"{prefix}score_masked")                                    # (N, T')
    a = g.op("Softmax", [s], base=f"{prefix}weights", axis=1)                 # exactly 0 padded
    return _sum_t(g, g.op("Mul", [y, g.op("Unsqueeze", [a, ax2], base=f"{prefix}a3")],
                          base=f"{prefix}weighted"), f"{prefix}attended")


def _net(g: Graph, net: SequenceNet, h: str, lengths: str, lengths32: str, mask: str,
         prefix: str) -> str:
    """One member: inputs h (N, T', F') -> class probabilities (N, C)."""
    if net.embed is not None:
        if net.cfg.tokens:
            h = g.op("Gather", [g.const(f"{prefix}embed", _f32(net.embed.params["weight"])), h],
                     base=f"{prefix}embedded", axis=0)
        else:
            h = _linear(g, h, net.embed, f"{prefix}input")
    h_tm = g.op("Transpose", [h], base=f"{prefix}x_tm", perm=[1, 0, 2])       # (T', N, F')
    y_tm, _, _ = recurrent_stack(g, net.rnn, h_tm, lengths32, prefix=f"{prefix}rnn")
    y = g.op("Transpose", [y_tm], base=f"{prefix}y", perm=[1, 0, 2])          # (N, T', D)
    p = _pool(g, net.pool, y, mask, lengths, f"{prefix}pool_")
    return g.op("Softmax", [_linear(g, p, net.head, f"{prefix}head")], base=f"{prefix}probs",
                axis=1)


def _build_ensemble(g: Graph, model: Ensemble, inputs, options: dict) -> None:
    T = g.onnx.TensorProto
    cfg = model.cfg
    lengths = g.input("lengths", T.INT64, ["N"])
    if cfg.tokens:
        h = g.input("x", T.INT64, ["N", "T"])
    else:
        F = inputs.channels if inputs is not None else cfg.input_size
        x = g.input("x", T.FLOAT, ["N", "T", F])
        h = x
        if inputs is not None:
            z = g.op("Div", [g.op("Sub", [x, g.const("scale_mean", _f32(inputs.scaler.mean))],
                                  base="centred"),
                             g.const("scale_sd", _f32(inputs.scaler.sd))], base="scaled")
            keep = g.op("Cast", [g.op("Unsqueeze", [_mask(g, lengths, x, "raw_mask"),
                                                    g.shared("axis2", np.array([2], np.int64))],
                                      base="raw_mask3")], base="raw_keep", to=T.FLOAT)
            h = g.op("Mul", [z, keep], base="scaled_masked")                  # 0 where padded
            k = inputs.stack
            if k > 1:
                # pad T up to a multiple of k, then (N, T, F) -> (N, T / k, k F)
                T_ = g.op("Gather", [g.op("Shape", [x], base="x_shape"),
                                     g.shared("one_i64", np.array(1, np.int64))], base="T", axis=0)
                kk = g.const("stack", np.array(k, np.int64))
                extra = g.op("Mod", [g.op("Sub", [kk, g.op("Mod", [T_, kk], base="T_mod")],
                                          base="k_minus"), kk], base="pad_T")
                pads = g.op("Concat", [g.const("pads_head", np.zeros(4, np.int64)),
                                       g.op("Unsqueeze", [extra, g.shared("axis0", np.array([0], np.int64))],
                                            base="pad_T1"),
                                       g.const("pads_tail", np.zeros(1, np.int64))],
                            base="pads", axis=0)
                h = g.op("Pad", [h, pads], base="padded")
                h = g.op("Reshape", [h, g.const("stacked_shape", np.array([0, -1, k * F], np.int64))],
                         base="stacked")
                lengths = g.op("Div", [g.op("Add", [lengths, g.const("k_minus_1", np.array(k - 1, np.int64))],
                                            base="len_up"), kk], base="stacked_lengths")
    mask = _mask(g, lengths, h, "mask")
    lengths32 = g.op("Cast", [lengths], base="lengths_i32", to=T.INT32)
    probs = [_net(g, net, h, lengths, lengths32, mask, f"m{k}_") for k, net in enumerate(model.members)]
    total = probs[0] if len(probs) == 1 else g.op("Sum", probs, base="probs_sum")
    out = g.op("Mul", [total, g.const("one_over_members", np.array(1 / len(probs), np.float32))],
               base="probs_mean")
    g.output("probabilities", out, T.FLOAT, ["N", cfg.classes])
    g.metadata["classes"] = "\n".join(options.get("classes", []))


def _build_classifier(g: Graph, clf: Classifier, options: dict) -> None:
    """A trained classifier (``rnnkit.load``): raw inputs in, probabilities out."""
    _build_ensemble(g, clf.model, None if clf.inputs.kind == "text" else clf.inputs,
                    {**options, "classes": clf.classes})


def _build_bare(g: Graph, model: Ensemble, options: dict) -> None:
    """An Ensemble alone: inputs already scaled and stacked (x (N, T, input_size))."""
    _build_ensemble(g, model, None, options)


_onnx.register_exporter(Ensemble, _build_bare)
_onnx.register_exporter(Classifier, _build_classifier)

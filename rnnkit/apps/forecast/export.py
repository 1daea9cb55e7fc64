"""The forecaster's exporters: ONNX graphs (network, whole forecaster) and the network's torch
twin, registered with rnnkit.interop.

Imported by ``rnnkit.apps.forecast`` itself; onnx and torch are imported only when a conversion
runs.
"""
from __future__ import annotations

import functools
import json

import numpy as np

from ...interop import onnx as _onnx
from ...interop import torch as _torch
from ...interop.onnx import Graph, recurrent_stack
from ...interop.torch import copy_to_torch, require_torch, torch_dtype, torch_rnn, with_weights_of
from .esrnn_train import ESRNNForecaster
from .model import ForecastNet, NetConfig
from .train import Z80, Z95, Forecaster


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
    """A whole forecaster (`Forecaster`): window inputs in original
    units -> scaling -> every member -> mixture -> calibration -> forecasts in original units.

    The graph repeats ``assemble`` and ``Forecaster.forecast``: z = (context - level) / scale,
    x = [z, calendar of the context, covariates], extra = [z, future calendar]; the members'
    Gaussians combine as an equal mixture (mean of means; mean of second moments minus the
    squared mean, at least the smallest variance), the variance is multiplied by var_scale and
    mean = level + scale * mean_z, sd = scale * sqrt(var).  Scaling and mixing run in float64
    (a series at level 1e6 with steps of 1 keeps its digits), the networks in float32.
    """
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


@functools.cache
def torch_forecast_net_class():
    """``TorchForecastNet``: torch's twin of ``rnnkit.apps.forecast.model.ForecastNet``.

    ``TorchForecastNet(input_size, extra_size, horizon, cell="lstm", hidden=32, layers=1,
    dropout=0.0, var_floor=1e-4, dtype=torch.float32)`` (the fields of ``NetConfig``);
    ``forward(x (N, T, F), extra (N, E)) -> (mean (N, H), var (N, H))``::

        h = RNN(x)[:, -1];  o = head([h, extra]);  mean = o[:, :H]
        var = softplus(o[:, H:]) + var_floor

    with the same parameter names (``rnn.weight_ih_l0``, ..., ``head.weight``, ``head.bias``).
    Its inputs are scaled windows (see ``rnnkit.apps.forecast.windows.assemble``).  Created on first
    use so that importing rnnkit never imports torch.
    """
    torch = require_torch()

    class TorchForecastNet(torch.nn.Module):
        def __init__(self, input_size: int, extra_size: int, horizon: int, cell: str = "lstm",
                     hidden: int = 32, layers: int = 1, dropout: float = 0.0,
                     var_floor: float = 1e-4, dtype=torch.float32) -> None:
            super().__init__()
            # what rebuilds the rnnkit network (from_torch): NetConfig's fields but dtype
            self.config = dict(input_size=input_size, extra_size=extra_size, horizon=horizon,
                               cell=cell, hidden=hidden, layers=layers, dropout=dropout,
                               var_floor=var_floor)
            self.horizon, self.var_floor = horizon, var_floor
            self.rnn = torch_rnn(cell, input_size, hidden, layers, dropout, dtype)
            self.head = torch.nn.Linear(hidden + extra_size, 2 * horizon, dtype=dtype)

        def forward(self, x, extra):
            y, _ = self.rnn(x)                                       # (N, T, hidden)
            o = self.head(torch.cat([y[:, -1], extra], dim=1))       # (N, 2H)
            H = self.horizon
            return o[:, :H], torch.nn.functional.softplus(o[:, H:]) + self.var_floor

    TorchForecastNet.__module__, TorchForecastNet.__qualname__ = __name__, "TorchForecastNet"
    return TorchForecastNet


def _forecast_net_to_torch(net: ForecastNet):
    cfg = net.cfg.to_json()
    m = torch_forecast_net_class()(**{**cfg, "dtype": torch_dtype(np.dtype(cfg["dtype"]))})
    return copy_to_torch(m, net.state_dict()).train(net.training)


def _forecast_net_from_torch(m, dtype) -> ForecastNet:
    cfg = NetConfig(**{**m.config, "dtype": np.dtype(dtype).name})
    return with_weights_of(ForecastNet(cfg, np.random.default_rng(0)), m, dtype)


def _build_esrnn(g: Graph, fc, options: dict) -> None:
    """An ES-RNN forecaster (`ESRNNForecaster`): the members' networks, the forecasts in the
    series' units, the ensemble average and the intervals, from the feeds of
    ``ESRNNForecaster.onnx_inputs`` (which runs each member's smoothing recursion over each
    whole series, the part that reads a whole history, as a direct forecaster's feeds do)::

        h_k  = RNN_k(x[k]) at each series' last position (steps)          (N, hidden)
        o_k  = W_2 tanh(W_1 h_k + b_1) + b_2                              (N, H, Q)
        q    = mean_k sort_Q(exp(o_k) level[k] season[k]) - shift
        mean = median = q[..., Q // 2], lower/upper 80/95 = the other quantiles,
        sd = (upper_80 - lower_80) / (2 z_0.9)
    """
    from .esrnn import ESRNN
    from .esrnn_train import Z80 as EZ80

    if not fc.members:
        raise ValueError("cannot export an untrained ES-RNN forecaster: it has no members")
    T = g.onnx.TensorProto
    M, H = len(fc.members), fc.horizon
    cfg = fc.config(len(fc.ids))
    Q, C = len(cfg.quantiles), cfg.context
    x = g.input("x", T.FLOAT, [M, "N", "P", C])
    steps = g.input("steps", T.INT32, ["N"])
    level = g.input("level", T.DOUBLE, [M, "N"])
    season = g.input("season", T.DOUBLE, [M, "N", H])
    shift = g.input("shift", T.DOUBLE, ["N"])
    net = ESRNN(cfg, np.random.default_rng(0))
    total = []
    for k, state in enumerate(fc.members):
        net.load_state_dict(state)
        pick = g.const(f"member{k}_index", np.array(k, np.int64))
        xk = g.op("Gather", [x, pick], base=f"member{k}_x", axis=0)             # (N, P, C)
        x_tm = g.op("Transpose", [xk], base=f"member{k}_x_tm", perm=[1, 0, 2])  # (P, N, C)
        _, h_n, _ = recurrent_stack(g, net.rnn, x_tm, steps, prefix=f"member{k}_rnn")
        last = g.const(f"member{k}_top", np.array(net.rnn.num_layers - 1, np.int64))
        h = g.op("Gather", [h_n, last], base=f"member{k}_h", axis=0)            # (N, hidden)
        for name, lin in (("hid", net.hid), ("out", net.out)):
            h = g.op("MatMul", [h, g.const(f"member{k}_{name}_w",
                                           np.asarray(lin.params["weight"], np.float32).T)],
                     base=f"member{k}_{name}")
            h = g.op("Add", [h, g.const(f"member{k}_{name}_b",
                                        np.asarray(lin.params["bias"], np.float32))],
                     base=f"member{k}_{name}_biased")
            if name == "hid":
                h = g.op("Tanh", [h], base=f"member{k}_tanh")
        o = g.op("Reshape", [h, g.shared("shape_0HQ", np.array([0, H, Q], np.int64))],
                 base=f"member{k}_o")                                               # (N, H, Q)
        o = g.op("Exp", [g.op("Cast", [o], base=f"member{k}_o64", to=T.DOUBLE)],
                 base=f"member{k}_ratio")
        lev = g.op("Gather", [level, pick], base=f"member{k}_level", axis=0)     # (N,)
        lev = g.op("Unsqueeze", [lev, g.shared("axes12", np.array([1, 2], np.int64))],
                   base=f"member{k}_level3")                                    # (N, 1, 1)
        sea = g.op("Gather", [season, pick], base=f"member{k}_season", axis=0)   # (N, H)
        sea = g.op("Unsqueeze", [sea, g.shared("axis2", np.array([2], np.int64))],
                   base=f"member{k}_season3")                                   # (N, H, 1)
        fk = g.op("Mul", [o, g.op("Mul", [lev, sea], base=f"member{k}_base")],
                  base=f"member{k}_forecast")
        fk, _ = g.op("TopK", [fk, g.shared("quantile_count", np.array([Q], np.int64))],
                     base=f"member{k}_sorted", n_out=2, axis=2, largest=0, sorted=1)
        total.append(fk)  # each member's quantiles sorted (never crossed), then averaged
    mean = g.op("Div", [g.op("Sum", total, base="forecast_sum"),
                        g.const("members", np.array(M, np.float64))], base="forecast_mean")
    q = g.op("Sub", [mean, g.op("Unsqueeze", [shift, g.shared("axes12", np.array([1, 2], np.int64))],
                              base="shift3")], base="quantiles")            # (N, H, Q)

    def column(j, base):
        return g.op("Gather", [q, g.const(f"{base}_index", np.array(j, np.int64))], base=base,
                    axis=2)

    lo95, lo80, med, up80, up95 = (column(j, f"q{j}") for j in range(Q))
    sd = g.op("Div", [g.op("Sub", [up80, lo80], base="width_80"),
                      g.const("two_z80", np.array(2 * EZ80, np.float64))], base="sd_y")
    for name, src in (("mean", med), ("median", med), ("sd", sd), ("lower_80", lo80),
                      ("upper_80", up80), ("lower_95", lo95), ("upper_95", up95)):
        g.output(name, src, T.DOUBLE, ["N", H])
    g.metadata.update({"rnnkit.model": "esrnn", "context": str(C), "horizon": str(H),
                       "frequency": json.dumps(fc.freq.to_json()), "season": str(fc.season),
                       "members": str(M), "inputs": ", ".join(fc.input_names)})


_onnx.register_exporter(ForecastNet, _build_forecast_net)
_onnx.register_exporter(ESRNNForecaster, _build_esrnn)
_onnx.register_exporter(Forecaster, _build_forecaster)
_torch.register_torch(ForecastNet, _forecast_net_to_torch, f"{__name__}.TorchForecastNet",
                      _forecast_net_from_torch)

"""The single-step cell modules RNNCell, LSTMCell and GRUCell (decoders, streaming inference).

Each call runs one step of ``cells.py`` (the same step functions the recurrent drivers run, with
the compiled twins when numba is installed) and keeps its cache; ``backward`` consumes the caches
last-in first-out, so a decoder may call a cell once per step before one backward pass.
"""
from __future__ import annotations

import numpy as np

from . import _accel
from .cells import (GATES, gru_input_bias, gru_pointwise, gru_pointwise_backward, gru_step,
                    gru_step_backward, lstm_pointwise, lstm_pointwise_backward,
                    lstm_preactivation, lstm_sigmoid_columns, lstm_step_backward, outer_sum_,
                    prepare_weights, rnn_pointwise_backward, rnn_step, rnn_step_backward)
from .init import torch_default
from .module import Module, as_input, check_dtype


class _Cell(Module):
    """Parameters of a single-step cell (torch's names weight_ih, weight_hh, bias_ih, bias_hh)."""

    kind = "rnn"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *,
                 dtype=np.float32, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise ValueError(f"input_size and hidden_size must be >= 1, got {input_size}, {hidden_size}")
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.dtype = check_dtype(dtype)
        rng = rng if rng is not None else np.random.default_rng()
        gH = GATES[self.kind] * hidden_size
        names = [("weight_ih", (gH, input_size)), ("weight_hh", (gH, hidden_size))]
        if bias:
            names += [("bias_ih", (gH,)), ("bias_hh", (gH,))]
        for name, shape in names:
            self._add_param(name, torch_default(shape, hidden_size, rng, self.dtype))
        self._zero_bias = np.zeros(gH, self.dtype)  # stands in for the biases when bias=False

    def _b(self, name: str) -> np.ndarray:
        return self.params[name] if self.bias else self._zero_bias

    def _check(self, x, h, name="h"):
        x = as_input(x, self.dtype)
        if x.ndim != 2 or x.shape[1] != self.input_size:
            raise ValueError(f"{type(self).__name__} expects x of shape (N, {self.input_size}), "
                             f"got {x.shape}")
        size = (x.shape[0], self.hidden_size)
        if h is None:
            return x, np.zeros(size, self.dtype)
        h = as_input(h, self.dtype, name)
        if h.shape != size:
            raise ValueError(f"{name} has shape {h.shape}, expected {size}")
        return x, h

    def _weight_grads(self, x, h_prev, dg_in, dg_hh, rh=None):
        """Accumulate one step's parameter gradients and return dx = dg_in W_ih.  rh: GRU's
        reset-before form, where W_hn multiplies r * h_prev instead of h_prev."""
        g = self.grads
        outer_sum_(g["weight_ih"], dg_in, x)
        if rh is None:
            outer_sum_(g["weight_hh"], dg_hh, h_prev)
        else:
            H = self.hidden_size
            outer_sum_(g["weight_hh"][: 2 * H], dg_hh[:, : 2 * H], h_prev)
            outer_sum_(g["weight_hh"][2 * H :], dg_hh[:, 2 * H :], rh)
        if self.bias:
            g["bias_ih"] += dg_in.sum(axis=0)
            g["bias_hh"] += dg_hh.sum(axis=0)
        return dg_in @ self.params["weight_ih"]


class RNNCell(_Cell):
    """One Elman RNN step (backward in ``cells.rnn_step``)::

        h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh),   act = tanh or relu

    ``forward(x (N, I), h (N, H) or None) -> h'``; ``backward(dh') -> (dx, dh)``."""

    kind = "rnn"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", **kw) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, bias, **kw)
        self.nonlinearity = nonlinearity

    def forward(self, x, h=None):
        x, h = self._check(x, h)
        xg = x @ self.params["weight_ih"].T + (self._b("bias_ih") + self._b("bias_hh"))  # (N, H)
        h_new = rnn_step(xg, h, self.params["weight_hh"].T, self.nonlinearity, np.empty_like(h))
        self._push((x, h, h_new))
        return h_new

    def backward(self, dh):
        x, h_prev, h = self._pop()
        fast = _accel.kernels(self.dtype)
        da = np.empty_like(h)
        dh_prev = rnn_step_backward(dh, h, self.params["weight_hh"], self.nonlinearity, da,
                                    np.empty_like(h),
                                    fast.rnn_pointwise_backward if fast else rnn_pointwise_backward)
        return self._weight_grads(x, h_prev, da, da), dh_prev


class LSTMCell(_Cell):
    """One LSTM step (gate order i, f, g, o; backward in ``lstm_step``)::

        i, f, g, o = sigma, sigma, tanh, sigma (x W_ih^T + b_ih + h W_hh^T + b_hh)
        c' = f c + i g          h' = o tanh(c')

    ``forward(x (N, I), state (h, c) or None) -> (h', c')``; ``backward(dh', dc'=None) -> (dx, (dh, dc))``."""

    kind = "lstm"

    def forward(self, x, state=None):
        h, c = (None, None) if state is None else state
        x, h = self._check(x, h)
        c = self._check(x, c, "c")[1]
        fast = _accel.kernels(self.dtype)
        # the pre-activation in full, then halved in the sigmoid columns: a cell runs once per
        # call, so it does not make the driver's scaled copies of its weights
        gates = x @ self.params["weight_ih"].T  # (N, 4H)
        (fast.lstm_preactivation if fast else lstm_preactivation)(
            gates, h @ self.params["weight_hh"].T, self._b("bias_ih"), self._b("bias_hh"),
            lstm_sigmoid_columns(self.hidden_size, self.dtype)[0])
        c_new, tc, h_new = np.empty((3,) + c.shape, self.dtype)
        (fast.lstm_pointwise if fast else lstm_pointwise)(gates, c, c_new, tc, h_new)
        self._push((x, h, c, gates, tc))
        return h_new, c_new

    def backward(self, dh, dc=None):
        x, h_prev, c_prev, gates, tc = self._pop()
        dc = np.zeros_like(c_prev) if dc is None else dc
        dgates, dc_prev = np.empty_like(gates), np.empty_like(dc)
        fast = _accel.kernels(self.dtype)
        dh_prev = lstm_step_backward(dh, dc, gates, c_prev, tc, self.params["weight_hh"], None,
                                     dgates, dc_prev, np.empty_like(dh), None, np.empty_like(gates),
                                     fast.lstm_pointwise_backward if fast else lstm_pointwise_backward)
        return self._weight_grads(x, h_prev, dgates, dgates), (dh_prev, dc_prev)


class GRUCell(_Cell):
    """One GRU step (gate order r, z, n; backward in ``gru_step``)::

        r, z = sigma(x W_ir^T + b_ir + h W_hr^T + b_hr), sigma(x W_iz^T + b_iz + h W_hz^T + b_hz)
        n = tanh(x W_in^T + b_in + r (h W_hn^T + b_hn))      h' = (1 - z) n + z h

    ``reset_after=False`` is Keras's other form, n = tanh(x W_in^T + b_in + (r h) W_hn^T + b_hn).
    ``forward(x (N, I), h (N, H) or None) -> h'``; ``backward(dh') -> (dx, dh)``."""

    kind = "gru"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 reset_after: bool = True, **kw) -> None:
        super().__init__(input_size, hidden_size, bias, **kw)
        self.reset_after = reset_after

    def forward(self, x, h=None):
        x, h = self._check(x, h)
        b_hh = self._b("bias_hh")
        b = gru_input_bias(self._b("bias_ih"), b_hh, self.reset_after)
        w_ih_t, w_hh_t, b = prepare_weights("gru", self.params["weight_ih"], self.params["weight_hh"], b)
        gates = x @ w_ih_t + b  # (N, 3H): the input part, then the activated r, z, n
        gh, h_new = np.empty_like(gates), np.empty_like(h)
        rh = None if self.reset_after else np.empty_like(h)
        fast = _accel.kernels(self.dtype)
        gru_step(gates, h, w_hh_t, b_hh[2 * self.hidden_size :], gh, h_new, rh,
                 fast.gru_pointwise if fast else gru_pointwise)
        self._push((x, h, gates, gh[:, 2 * self.hidden_size :] if rh is None else rh))
        return h_new

    def backward(self, dh):
        x, h_prev, gates, hn = self._pop()
        dgi, dgh = np.empty_like(gates), np.empty_like(gates)
        fast = _accel.kernels(self.dtype)
        dh_prev = gru_step_backward(dh, h_prev, gates, hn, self.params["weight_hh"], dgi, dgh,
                                    np.empty_like(h_prev), np.empty_like(h_prev), self.reset_after,
                                    fast.gru_pointwise_backward if fast else gru_pointwise_backward)
        return self._weight_grads(x, h_prev, dgi, dgh, None if self.reset_after else hn), dh_prev


CELLS = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}


def recurrent_cell(cell: str, *args, **kwargs) -> _Cell:
    """``RNNCell``, ``LSTMCell`` or ``GRUCell`` by its name, built with the arguments."""
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
    return CELLS[cell](*args, **kwargs)

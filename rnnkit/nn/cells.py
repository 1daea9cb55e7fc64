"""One time step of each recurrent cell, forward and backward, and the single-step cell modules.

Every step function works on a batch of N rows.  The input-side pre-activation ``xg = x W_ih^T + b``
is computed outside (the recurrent driver does it for all time steps in one GEMM), so a step only
does the recurrent matmul and the element-wise gate math.  Steps write into arrays the caller
passes (``out`` slots), so the driver can hand them views of its per-sequence buffers and the time
loop allocates little.  Gate order and parameter layout follow torch: RNN 1 gate, LSTM i, f, g, o,
GRU r, z, n; ``W_ih`` (gH, I), ``W_hh`` (gH, H).

The sigmoid is computed as ``0.5 * tanh(0.5 x) + 0.5``: it is exact algebra, needs one
transcendental and cannot overflow (``1 / (1 + exp(-x))`` overflows ``exp`` for x < -709).
"""
from __future__ import annotations

import numpy as np

from .module import Module, as_input, check_dtype
from .init import torch_default


def sigmoid_(a: np.ndarray) -> np.ndarray:
    """In-place logistic sigmoid, sigma(a) = (1 + tanh(a / 2)) / 2."""
    a *= 0.5
    np.tanh(a, out=a)
    a *= 0.5
    a += 0.5
    return a


# ------------------------------------------------------------------------------------------
# Elman RNN
# ------------------------------------------------------------------------------------------
def rnn_step(xg, h_prev, w_hh, nonlinearity, h_out):
    """h = act(xg + h_prev W_hh^T), act = tanh or relu; xg already holds b_ih + b_hh.  -> h_out (N, H)."""
    np.matmul(h_prev, w_hh.T, out=h_out)  # (N, H)
    h_out += xg
    if nonlinearity == "tanh":
        np.tanh(h_out, out=h_out)
    else:
        np.maximum(h_out, 0, out=h_out)
    return h_out


def rnn_step_backward(dh, h, w_hh, nonlinearity, da_out):
    """Given dL/dh for h = act(a):  dL/da = dh * act'(a)  (tanh' = 1 - h^2, relu' = [h > 0]);
    dL/dh_prev = dL/da W_hh.   Writes dL/da into da_out (N, H), returns dL/dh_prev."""
    if nonlinearity == "tanh":
        np.multiply(h, h, out=da_out)
        np.subtract(1, da_out, out=da_out)
        da_out *= dh
    else:
        np.multiply(dh, h > 0, out=da_out)
    return da_out @ w_hh  # (N, H)


# ------------------------------------------------------------------------------------------
# LSTM (with torch's optional projection h = (o * tanh c) W_hr^T)
# ------------------------------------------------------------------------------------------
def lstm_step(xg, h_prev, c_prev, w_hh, w_hr, gates_out, c_out, tc_out, hr_out, h_out):
    """One LSTM step (torch gate order i, f, g, o)::

        [i, f, g, o] = [sigma, sigma, tanh, sigma](xg + h_prev W_hh^T)     # (N, 4H)
        c = f * c_prev + i * g
        h = o * tanh(c)               (with projection: h = (o * tanh c) W_hr^T, size P)

    Writes activated gates, c, tanh(c), o*tanh(c) (only with projection) and h into the slots.
    """
    H = c_out.shape[-1]
    np.matmul(h_prev, w_hh.T, out=gates_out)  # (N, 4H)
    gates_out += xg
    sigmoid_(gates_out[:, : 2 * H])
    np.tanh(gates_out[:, 2 * H : 3 * H], out=gates_out[:, 2 * H : 3 * H])
    sigmoid_(gates_out[:, 3 * H :])
    i, f, g, o = (gates_out[:, k * H : (k + 1) * H] for k in range(4))
    np.multiply(f, c_prev, out=c_out)
    np.multiply(i, g, out=tc_out)  # tc_out as scratch for i * g
    c_out += tc_out
    np.tanh(c_out, out=tc_out)
    if w_hr is None:
        np.multiply(o, tc_out, out=h_out)
    else:
        np.multiply(o, tc_out, out=hr_out)
        np.matmul(hr_out, w_hr.T, out=h_out)  # (N, P)
    return h_out, c_out


def lstm_step_backward(dh, dc, gates, c_prev, tc, w_hh, w_hr, dgates_out):
    """Backward of ``lstm_step`` given dL/dh (N, P) and dL/dc from the future (N, H)::

        dm = dh W_hr   (m = o * tanh c; m = h without projection)
        do = dm * tanh(c)           dc += dm * o * (1 - tanh(c)^2)
        di = dc * g    df = dc * c_prev    dg = dc * i    dc_prev = dc * f
        pre-activations: di * i(1-i), df * f(1-f), dg * (1-g^2), do * o(1-o)   -> dgates_out (N, 4H)
        dh_prev = dgates W_hh

    Returns (dh_prev (N, P), dc_prev (N, H)).
    """
    H = tc.shape[-1]
    dm = dh if w_hr is None else dh @ w_hr  # (N, H)
    i, f, g, o = (gates[:, k * H : (k + 1) * H] for k in range(4))
    di, df, dg, do = (dgates_out[:, k * H : (k + 1) * H] for k in range(4))
    np.multiply(dm, tc, out=do)
    dc = dc + dm * o * (1 - tc * tc)
    np.multiply(dc, g, out=di)
    np.multiply(dc, c_prev, out=df)
    np.multiply(dc, i, out=dg)
    dc_prev = dc * f
    di *= i * (1 - i)
    df *= f * (1 - f)
    dg *= 1 - g * g
    do *= o * (1 - o)
    return dgates_out @ w_hh, dc_prev


# ------------------------------------------------------------------------------------------
# GRU (torch / cuDNN form: the reset gate multiplies the recurrent matmul *after* it)
# ------------------------------------------------------------------------------------------
def gru_step(xg, h_prev, w_hh, b_hh, gates_out, hn_out, h_out, reset_after=True):
    """One GRU step (torch gate order r, z, n)::

        r = sigma(xg_r + h_prev W_hr^T + b_hr)     z = sigma(xg_z + h_prev W_hz^T + b_hz)
        n = tanh(xg_n + r * (h_prev W_hn^T + b_hn))      reset_after=True  (torch, cuDNN)
        n = tanh(xg_n + (r * h_prev) W_hn^T + b_hn)      reset_after=False (Keras's other form)
        h = (1 - z) * n + z * h_prev

    xg holds b_ih only.  Writes activated r, z, n into gates_out and into hn_out what backward
    needs: gh_n = h_prev W_hn^T + b_hn (reset_after) or r * h_prev (not reset_after).
    """
    H = h_out.shape[-1]
    if reset_after:
        np.matmul(h_prev, w_hh.T, out=gates_out)  # (N, 3H): gh for now
        gates_out += b_hh
        hn_out[...] = gates_out[:, 2 * H :]
    else:
        np.matmul(h_prev, w_hh[: 2 * H].T, out=gates_out[:, : 2 * H])  # (N, 2H)
        gates_out[:, : 2 * H] += b_hh[: 2 * H]
    rz = gates_out[:, : 2 * H]
    rz += xg[:, : 2 * H]
    sigmoid_(rz)
    r, z, n = (gates_out[:, k * H : (k + 1) * H] for k in range(3))
    if reset_after:
        np.multiply(r, hn_out, out=n)
    else:
        np.multiply(r, h_prev, out=hn_out)
        np.matmul(hn_out, w_hh[2 * H :].T, out=n)
        n += b_hh[2 * H :]
    n += xg[:, 2 * H :]
    np.tanh(n, out=n)
    np.subtract(h_prev, n, out=h_out)
    h_out *= z
    h_out += n
    return h_out


def gru_step_backward(dh, h_prev, gates, hn, w_hh, dgi_out, dgh_out, reset_after=True):
    """Backward of ``gru_step`` given dL/dh (N, H)::

        dn = dh (1 - z)    dz = dh (h_prev - n)    dn_pre = dn (1 - n^2)    dz_pre = dz z (1 - z)
        reset_after:      dr_pre = dn_pre gh_n r (1 - r);  hidden-side n gradient dn_pre * r
        not reset_after:  d(rh) = dn_pre W_hn;  dr_pre = d(rh) h_prev r (1 - r);
                          hidden-side n gradient dn_pre (its weight gradient pairs with r * h_prev)
        input side  dgi = [dr_pre, dz_pre, dn_pre]                     -> dgi_out (N, 3H)
        hidden side dgh = [dr_pre, dz_pre, n gradient above]           -> dgh_out (N, 3H)
        dh_prev = dh z + dgh W_hh      (not reset_after: dh z + dgh_rz W_h(rz) + d(rh) r)

    Returns dh_prev (N, H).
    """
    H = hn.shape[-1]
    r, z, n = (gates[:, k * H : (k + 1) * H] for k in range(3))
    dr, dz, dn = (dgi_out[:, k * H : (k + 1) * H] for k in range(3))
    np.multiply(dh, 1 - z, out=dn)
    dn *= 1 - n * n
    np.subtract(h_prev, n, out=dz)
    dz *= dh
    dz *= z * (1 - z)
    if reset_after:
        np.multiply(dn, hn, out=dr)
        dr *= r * (1 - r)
        dgh_out[:, : 2 * H] = dgi_out[:, : 2 * H]
        np.multiply(dn, r, out=dgh_out[:, 2 * H :])
        return dh * z + dgh_out @ w_hh
    drh = dn @ w_hh[2 * H :]  # (N, H)
    np.multiply(drh, h_prev, out=dr)
    dr *= r * (1 - r)
    dgh_out[...] = dgi_out
    return dh * z + drh * r + dgh_out[:, : 2 * H] @ w_hh[: 2 * H]


# ------------------------------------------------------------------------------------------
# Single-step modules (decoders, streaming inference)
# ------------------------------------------------------------------------------------------
_GATES = {"rnn": 1, "lstm": 4, "gru": 3}


class _Cell(Module):
    """Shared parameter handling of the single-step cells (torch names weight_ih, weight_hh, ...)."""

    kind = "rnn"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *,
                 dtype=np.float32, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise ValueError(f"input_size and hidden_size must be >= 1, got {input_size}, {hidden_size}")
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.dtype = check_dtype(dtype)
        rng = rng if rng is not None else np.random.default_rng()
        gH = _GATES[self.kind] * hidden_size
        names = [("weight_ih", (gH, input_size)), ("weight_hh", (gH, hidden_size))]
        if bias:
            names += [("bias_ih", (gH,)), ("bias_hh", (gH,))]
        for name, shape in names:
            self._add_param(name, torch_default(shape, hidden_size, rng, self.dtype))
        self._zero_bias = np.zeros(gH, self.dtype)  # stands in for the biases when bias=False

    def _b(self, name: str) -> np.ndarray:
        return self.params[name] if self.bias else self._zero_bias

    def _check(self, x, h, size, name="h"):
        x = as_input(x, self.dtype)
        if x.ndim != 2 or x.shape[1] != self.input_size:
            raise ValueError(f"{type(self).__name__} expects x of shape (N, {self.input_size}), "
                             f"got {x.shape}")
        if h is None:
            return x, np.zeros((x.shape[0], size), self.dtype)
        h = as_input(h, self.dtype, name)
        if h.shape != (x.shape[0], size):
            raise ValueError(f"{name} has shape {h.shape}, expected {(x.shape[0], size)}")
        return x, h

    def _input_grads(self, x, dg_in, dg_hh, h_prev):
        """Accumulate the weight gradients of one step and return dx."""
        self.grads["weight_ih"] += dg_in.T @ x
        self.grads["weight_hh"] += dg_hh.T @ h_prev
        if self.bias:
            self.grads["bias_ih"] += dg_in.sum(axis=0)
            self.grads["bias_hh"] += dg_hh.sum(axis=0)
        return dg_in @ self.params["weight_ih"]


class RNNCell(_Cell):
    """One Elman RNN step: h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh), act = tanh or relu.

    ``forward(x (N, I), h (N, H) or None) -> h'``; ``backward(dh') -> (dx, dh)``.
    """

    kind = "rnn"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", **kw) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, bias, **kw)
        self.nonlinearity = nonlinearity

    def forward(self, x, h=None):
        x, h = self._check(x, h, self.hidden_size)
        xg = x @ self.params["weight_ih"].T + (self._b("bias_ih") + self._b("bias_hh"))
        out = np.empty_like(h)
        rnn_step(xg, h, self.params["weight_hh"], self.nonlinearity, out)
        self._push((x, h, out))
        return out

    def backward(self, dh):
        x, h_prev, h = self._pop()
        da = np.empty_like(h)
        dh_prev = rnn_step_backward(dh, h, self.params["weight_hh"], self.nonlinearity, da)
        return self._input_grads(x, da, da, h_prev), dh_prev


class LSTMCell(_Cell):
    """One LSTM step (gate order i, f, g, o; equations in ``lstm_step``).

    ``forward(x (N, I), state (h, c) or None) -> (h', c')``; ``backward(dh', dc'=None) -> (dx, (dh, dc))``.
    """

    kind = "lstm"

    def forward(self, x, state=None):
        h, c = (None, None) if state is None else state
        x, h = self._check(x, h, self.hidden_size)
        c = np.zeros_like(h) if c is None else self._check(x, c, self.hidden_size, "c")[1]
        xg = x @ self.params["weight_ih"].T + (self._b("bias_ih") + self._b("bias_hh"))
        N, H = h.shape
        gates = np.empty((N, 4 * H), self.dtype)
        c_new, tc, h_new = (np.empty((N, H), self.dtype) for _ in range(3))
        lstm_step(xg, h, c, self.params["weight_hh"], None, gates, c_new, tc, None, h_new)
        self._push((x, h, c, gates, tc))
        return h_new, c_new

    def backward(self, dh, dc=None):
        x, h_prev, c_prev, gates, tc = self._pop()
        dc = np.zeros_like(c_prev) if dc is None else dc
        dgates = np.empty_like(gates)
        dh_prev, dc_prev = lstm_step_backward(dh, dc, gates, c_prev, tc,
                                              self.params["weight_hh"], None, dgates)
        return self._input_grads(x, dgates, dgates, h_prev), (dh_prev, dc_prev)


class GRUCell(_Cell):
    """One GRU step (gate order r, z, n; equations in ``gru_step``).

    ``forward(x (N, I), h (N, H) or None) -> h'``; ``backward(dh') -> (dx, dh)``.
    """

    kind = "gru"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 reset_after: bool = True, **kw) -> None:
        super().__init__(input_size, hidden_size, bias, **kw)
        self.reset_after = reset_after

    def forward(self, x, h=None):
        x, h = self._check(x, h, self.hidden_size)
        xg = x @ self.params["weight_ih"].T + self._b("bias_ih")
        N, H = h.shape
        gates = np.empty((N, 3 * H), self.dtype)
        hn, h_new = np.empty((N, H), self.dtype), np.empty((N, H), self.dtype)
        gru_step(xg, h, self.params["weight_hh"], self._b("bias_hh"), gates, hn, h_new,
                 self.reset_after)
        self._push((x, h, gates, hn))
        return h_new

    def backward(self, dh):
        x, h_prev, gates, hn = self._pop()
        dgi, dgh = np.empty_like(gates), np.empty_like(gates)
        dh_prev = gru_step_backward(dh, h_prev, gates, hn, self.params["weight_hh"], dgi, dgh,
                                    self.reset_after)
        dx = self._input_grads(x, dgi, dgh, h_prev)
        if not self.reset_after:  # the n-block of W_hh multiplies r * h_prev, not h_prev
            H = self.hidden_size
            self.grads["weight_hh"][2 * H :] += dgh[:, 2 * H :].T @ (hn - h_prev)
        return dx, dh_prev

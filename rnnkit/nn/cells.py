"""One time step of each recurrent cell, forward and backward, and the single-step cell modules.

Every step function works on a batch of N rows.  The input-side pre-activation ``xg = x W_ih^T + b``
is computed outside (the recurrent driver does it for all time steps in one GEMM), so a step only
does the recurrent matmul and the element-wise gate math.  Steps write into arrays the caller
passes (``out`` slots), so the driver can hand them views of its per-sequence buffers and the time
loop allocates nothing.  Gate order and parameter layout follow torch: RNN 1 gate, LSTM i, f, g, o,
GRU r, z, n; ``W_ih`` (gH, I), ``W_hh`` (gH, H).

Two conventions make the steps cheap, both exact:

* The recurrent weight comes transposed, ``w_hh_t = W_hh^T`` (H, gH) as a contiguous copy
  (``prepare_weights``): ``h @ w_hh_t`` is the layout BLAS runs fastest, 1.3-4x faster than
  multiplying by the transposed view of ``W_hh``.  Backward multiplies by
  ``W_hh`` itself.
* The sigmoid is ``sigma(a) = (1 + tanh(a / 2)) / 2``: one transcendental, and it cannot overflow
  (``1 / (1 + exp(-a))`` overflows ``exp`` for a < -709).  The halving is folded into the
  weights: the sigmoid gates' columns of ``w_hh_t`` and of ``xg`` (weights and biases) are
  pre-multiplied by 1/2 (``gate_scale``), which is exact in floating point (a power of two), so
  the gate buffer holds ``a / 2`` for sigmoid gates and ``a`` for tanh gates and *one* ``tanh``
  call activates all LSTM gates at once.  The activated gates are then stored as usual
  (sigma(a) or tanh(a)), so backward needs no scale.

The element-wise part of each step (``*_pointwise``) is plain NumPy here, the readable reference;
``_accel.py`` has compiled twins with the same signatures that the driver passes in as
``pointwise=`` when numba is installed (tests check that both give the same numbers).
"""
from __future__ import annotations

import numpy as np

from . import _accel
from .module import Module, as_input, check_dtype
from .init import torch_default


GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def sigmoid_(a: np.ndarray) -> np.ndarray:
    """In-place logistic sigmoid, sigma(a) = (1 + tanh(a / 2)) / 2."""
    a *= 0.5
    np.tanh(a, out=a)
    a *= 0.5
    a += 0.5
    return a


def outer_sum_(out: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """out += a^T b for a (N, M), b (N, K): a weight gradient summed over a batch.  For N = 1 it
    is a broadcast product: NumPy's matmul takes a slow non-BLAS path (~100 us) when K = 1."""
    if a.shape[0] == 1:
        out += a.T * b
    else:
        out += a.T @ b
    return out


def gate_scale(kind: str, H: int, dtype) -> np.ndarray | None:
    """Per-column factor (gH,) of the pre-activations: 1/2 for sigmoid gates, 1 for tanh gates."""
    if kind == "rnn":
        return None
    s = np.full(GATES[kind] * H, 0.5, dtype)
    s[2 * H : 3 * H] = 1  # LSTM g and GRU n are tanh gates (GRU's n is activated on its own)
    return s


def prepare_stacked(kind: str, *blocks: np.ndarray) -> np.ndarray:
    """The column blocks side by side, (gH, sum of widths), sigmoid rows halved: the matrices of
    hidden-major inference, e.g. [W_ih  b  W_hh] for a = [W_ih  b  W_hh] [x; 1; h]
    (``recurrent._infer_direction``).  1-D blocks (biases) are columns."""
    blocks = [blk[:, None] if blk.ndim == 1 else blk for blk in blocks]
    gH = blocks[0].shape[0]
    s = gate_scale(kind, gH // GATES[kind], blocks[0].dtype)
    s = np.ones((gH, 1), blocks[0].dtype) if s is None else s[:, None]
    stacked = np.empty((gH, sum(blk.shape[1] for blk in blocks)), blocks[0].dtype)
    j = 0
    for blk in blocks:
        np.multiply(blk, s, out=stacked[:, j : j + blk.shape[1]])
        j += blk.shape[1]
    return stacked


def prepare_weights(kind: str, w_ih: np.ndarray, w_hh: np.ndarray, b: np.ndarray):
    """(w_ih_t (I, gH), w_hh_t (H, gH), b (gH,)): transposed contiguous copies, sigmoid columns halved.

    GRU's ``w_hh_t`` is not halved in its n-block either (n = tanh(... + r * (h W_hn^T + b_hn))).
    """
    s = gate_scale(kind, w_hh.shape[0] // GATES[kind], w_hh.dtype)
    if s is None:
        return np.ascontiguousarray(w_ih.T), np.ascontiguousarray(w_hh.T), b
    return (np.multiply(w_ih.T, s, order="C"), np.multiply(w_hh.T, s, order="C"), b * s)


# ------------------------------------------------------------------------------------------
# Elman RNN
# ------------------------------------------------------------------------------------------
def rnn_step(xg, h_prev, w_hh_t, nonlinearity, h_out):
    """h = act(xg + h_prev W_hh^T), act = tanh or relu; xg already holds b_ih + b_hh.  -> h_out (N, H)."""
    np.matmul(h_prev, w_hh_t, out=h_out)  # (N, H)
    h_out += xg
    if nonlinearity == "tanh":
        np.tanh(h_out, out=h_out)
    else:
        np.maximum(h_out, 0, out=h_out)
    return h_out


def rnn_pointwise_backward(dh, h, nonlinearity, da_out):
    """dL/da = dh * act'(a) with tanh' = 1 - h^2, relu' = [h > 0]  -> da_out (N, H)."""
    if nonlinearity == "tanh":
        np.multiply(h, h, out=da_out)
        np.subtract(1, da_out, out=da_out)
        da_out *= dh
    else:
        np.greater(h, 0, out=da_out)  # 1.0 where h > 0 (relu' at a = 0 taken as 0, as torch)
        da_out *= dh
    return da_out


def rnn_step_backward(dh, h, w_hh, nonlinearity, da_out, dh_out, pointwise=rnn_pointwise_backward):
    """Given dL/dh for h = act(a):  dL/da = dh * act'(a);  dL/dh_prev = dL/da W_hh.

    Writes dL/da into da_out (N, H) and dL/dh_prev into dh_out (N, H) (may alias dh)."""
    pointwise(dh, h, nonlinearity, da_out)
    return np.matmul(da_out, w_hh, out=dh_out)  # (N, H)


# ------------------------------------------------------------------------------------------
# LSTM (with torch's optional projection h = (o * tanh c) W_hr^T)
# ------------------------------------------------------------------------------------------
_LSTM_SHIFT = {}  # (H, dtype) -> (scale, shift) per column: (1/2, 1/2) for sigmoid gates, (1, 0) for g


def _lstm_shift_scale(H, dtype):
    """sigma(a) = tanh(a/2) * scale + shift on the sigmoid columns; g passes unchanged."""
    key = (H, np.dtype(dtype))
    if key not in _LSTM_SHIFT:
        s = gate_scale("lstm", H, dtype)
        _LSTM_SHIFT[key] = (s, np.where(s == 1, 0, 0.5).astype(dtype))
    return _LSTM_SHIFT[key]


def lstm_pointwise(gates, c_prev, c_out, tc_out, m_out):
    """LSTM gate math after the matmul (gate order i, f, g, o)::

        [i, f, g, o] = [sigma, sigma, tanh, sigma](a)     gates holds [a_i/2, a_f/2, a_g, a_o/2]
        c = f * c_prev + i * g
        m = o * tanh(c)                                    (h = m, or h = m W_hr^T with projection)

    Activates ``gates`` (N, 4H) in place; writes c, tanh(c) and m into the slots.
    """
    H = c_out.shape[-1]
    scale, shift = _lstm_shift_scale(H, gates.dtype)
    np.tanh(gates, out=gates)  # one call for all four gates (sigmoid = tanh(a/2) / 2 + 1/2)
    gates *= scale
    gates += shift
    i, f, g, o = (gates[:, k * H : (k + 1) * H] for k in range(4))
    np.multiply(f, c_prev, out=c_out)
    np.multiply(i, g, out=tc_out)  # tc_out as scratch for i * g
    c_out += tc_out
    np.tanh(c_out, out=tc_out)
    np.multiply(o, tc_out, out=m_out)
    return m_out


def lstm_pointwise_hm(gates, c_prev, c_out, tc_out, m_out):
    """``lstm_pointwise`` in hidden-major layout: gates (4H, N), states (H, N), one column a row of
    the batch.  The same arithmetic on the transposed views (inference keeps this layout)."""
    return lstm_pointwise(gates.T, c_prev.T, c_out.T, tc_out.T, m_out.T).T


def lstm_preactivation(gates, hw, b_ih, b_hh, scale):
    """A cell step's pre-activation in place: gates = (x W_ih^T + h W_hh^T + b_ih + b_hh) * scale,
    with gates holding x W_ih^T and hw = h W_hh^T (N, 4H); scale halves the sigmoid columns."""
    gates += hw
    gates += b_ih
    gates += b_hh
    gates *= scale
    return gates


def lstm_step(xg, h_prev, c_prev, w_hh_t, w_hr_t, gates_out, c_out, tc_out, m_out, h_out,
              pointwise=lstm_pointwise):
    """One LSTM step:  a = xg + h_prev W_hh^T (N, 4H), then ``lstm_pointwise``; with projection
    h = m W_hr^T (N, P).  xg and w_hh_t come halved in the sigmoid columns (``prepare_weights``).

    Without projection pass m_out = h_out.  Returns (h_out, c_out).
    """
    np.matmul(h_prev, w_hh_t, out=gates_out)  # (N, 4H)
    gates_out += xg
    pointwise(gates_out, c_prev, c_out, tc_out, m_out)
    if w_hr_t is not None:
        np.matmul(m_out, w_hr_t, out=h_out)  # (N, P)
    return h_out, c_out


def lstm_pointwise_backward(dm, dc, gates, c_prev, tc, dgates_out, dc_out, tmp):
    """Backward of ``lstm_pointwise`` given dL/dm (N, H) and dL/dc from the future (N, H)::

        do = dm * tanh(c)           dc_t = dc + dm * o * (1 - tanh(c)^2)
        di = dc_t * g    df = dc_t * c_prev    dg = dc_t * i    dc_prev = dc_t * f
        pre-activations: di * i(1-i), df * f(1-f), dg * (1-g^2), do * o(1-o)   -> dgates_out (N, 4H)

    dc_prev goes to dc_out (which may alias dc).  tmp: (N, 4H) scratch.
    """
    H = tc.shape[-1]
    i, f, g, o = (gates[:, k * H : (k + 1) * H] for k in range(4))
    di, df, dg, do = (dgates_out[:, k * H : (k + 1) * H] for k in range(4))
    dc_t = tmp[:, :H]  # the whole dL/dc of this step
    np.multiply(tc, tc, out=dc_t)
    np.subtract(1, dc_t, out=dc_t)
    dc_t *= o
    dc_t *= dm
    dc_t += dc
    np.multiply(dm, tc, out=do)
    np.multiply(dc_t, g, out=di)
    np.multiply(dc_t, c_prev, out=df)
    np.multiply(dc_t, i, out=dg)
    np.multiply(dc_t, f, out=dc_out)
    # activation derivatives of all four gates: sigma' = s (1 - s), tanh' = 1 - g^2
    np.subtract(1, gates, out=tmp)
    tmp *= gates
    t = tmp[:, 2 * H : 3 * H]
    np.multiply(g, g, out=t)
    np.subtract(1, t, out=t)
    dgates_out *= tmp
    return dgates_out


def lstm_step_backward(dh, dc, gates, c_prev, tc, w_hh, w_hr, dgates_out, dc_out, dh_out, dm_out,
                       tmp, pointwise=lstm_pointwise_backward):
    """Backward of ``lstm_step`` given dL/dh (N, P) and dL/dc (N, H)::

        dm = dh W_hr   (m = o * tanh c; m = h without projection)
        ``lstm_pointwise_backward``  -> dgates_out (N, 4H), dc_prev -> dc_out
        dh_prev = dgates W_hh                                            -> dh_out (N, P)

    Without projection pass dm_out = None (dm is dh itself).  dh_out may alias dh.
    """
    dm = dh if w_hr is None else np.matmul(dh, w_hr, out=dm_out)  # (N, H)
    pointwise(dm, dc, gates, c_prev, tc, dgates_out, dc_out, tmp)
    return np.matmul(dgates_out, w_hh, out=dh_out)  # (N, P)


# ------------------------------------------------------------------------------------------
# GRU (torch / cuDNN form: the reset gate multiplies the recurrent matmul *after* it)
# ------------------------------------------------------------------------------------------
def gru_input_bias(b_ih, b_hh, reset_after=True):
    """The bias that joins the input GEMM: b_ih plus b_hh's r, z blocks (and n block unless reset_after,
    where b_hn sits inside r * (.) and stays in the step)."""
    b = b_ih + b_hh
    if reset_after:
        H = b.shape[0] // 3
        b[2 * H :] = b_ih[2 * H :]
    return b


def gru_step(xg, h_prev, w_hh_t, b_hn, gates_out, hn_out, h_out, reset_after=True):
    """One GRU step (torch gate order r, z, n)::

        r = sigma(xg_r + h_prev W_hr^T)     z = sigma(xg_z + h_prev W_hz^T)
        n = tanh(xg_n + r * (h_prev W_hn^T + b_hn))      reset_after=True  (torch, cuDNN)
        n = tanh(xg_n + (r * h_prev) W_hn^T)             reset_after=False (Keras's other form)
        h = (1 - z) * n + z * h_prev  =  n + z * (h_prev - n)

    xg holds b_ih and every part of b_hh that adds before an activation (all of it except b_hn
    with reset_after), halved in the r, z columns like w_hh_t (``prepare_weights``).  Writes
    activated r, z, n into gates_out and into hn_out what backward needs: gh_n = h_prev W_hn^T +
    b_hn (reset_after) or r * h_prev (not reset_after).
    """
    H = h_out.shape[-1]
    rz = gates_out[:, : 2 * H]
    n = gates_out[:, 2 * H :]
    if reset_after:
        np.matmul(h_prev, w_hh_t, out=gates_out)  # (N, 3H)
        np.add(n, b_hn, out=hn_out)
    else:
        np.matmul(h_prev, w_hh_t[:, : 2 * H], out=rz)  # (N, 2H)
    rz += xg[:, : 2 * H]
    np.tanh(rz, out=rz)  # sigma(a) = tanh(a/2) / 2 + 1/2, the halving is in the weights
    rz *= 0.5
    rz += 0.5
    r, z = gates_out[:, :H], gates_out[:, H : 2 * H]
    if reset_after:
        np.multiply(r, hn_out, out=n)
    else:
        np.multiply(r, h_prev, out=hn_out)
        np.matmul(hn_out, w_hh_t[:, 2 * H :], out=n)  # (N, H)
    n += xg[:, 2 * H :]
    np.tanh(n, out=n)
    np.subtract(h_prev, n, out=h_out)
    h_out *= z
    h_out += n
    return h_out


def gru_pointwise_hm(gi, gh, h_prev, h_out, w_hn=None, rh=None):
    """GRU gate math in hidden-major layout (gates (3H, N), states (H, N)), after the GEMMs::

        gi = input part [a_r/2; a_z/2; a_n] with every bias that adds before an activation
        gh = recurrent part [h W_hr^T / 2; h W_hz^T / 2; h W_hn^T + b_hn]
        r, z = sigma(gi_rz + gh_rz)     n = tanh(gi_n + r * gh_n)     h = (h_prev - n) * z + n

    With ``w_hn`` (Keras's reset_after=False form) gh holds only the r, z rows' part and
    n = tanh(gi_n + (r * h_prev) W_hn^T), with rh (H, N) as scratch for r * h_prev.
    Activates r, z, n in gi (gh is scratch afterwards); writes h into h_out (H, N)."""
    H = h_out.shape[0]
    rz, n, gh_n = gi[: 2 * H], gi[2 * H :], gh[2 * H :]
    rz += gh[: 2 * H]
    np.tanh(rz, out=rz)  # sigma(a) = tanh(a/2) / 2 + 1/2, the halving is in the weights
    rz *= 0.5
    rz += 0.5
    if w_hn is None:
        gh_n *= gi[:H]
    else:
        np.matmul(w_hn, np.multiply(gi[:H], h_prev, out=rh), out=gh_n)
    n += gh_n
    np.tanh(n, out=n)
    np.subtract(h_prev, n, out=h_out)
    h_out *= gi[H : 2 * H]
    h_out += n
    return h_out


def gru_pointwise_backward(dh, h_prev, gates, hn, dgi_out, dgh_out, dhz_out, reset_after=True):
    """Element-wise part of ``gru_step_backward``: the gate gradients of one step::

        dn = dh (1 - z)    dz = dh (h_prev - n)    dn_pre = dn (1 - n^2)    dz_pre = dz z (1 - z)
        reset_after:  dr_pre = dn_pre gh_n r (1 - r);  hidden-side n gradient dn_pre * r
        input side  dgi = [dr_pre, dz_pre, dn_pre]     -> dgi_out (N, 3H)
        hidden side dgh = [dr_pre, dz_pre, dn_pre r]   -> dgh_out (N, 3H)  (reset_after only)
        dh z (the direct path of h = n + z (h_prev - n))  -> dhz_out (N, H)

    Not reset_after: dr_pre needs the matmul dn_pre W_hn first; it is left to the caller.
    """
    H = hn.shape[-1]
    r, z, n = (gates[:, k * H : (k + 1) * H] for k in range(3))
    dr, dz, dn = (dgi_out[:, k * H : (k + 1) * H] for k in range(3))
    np.multiply(dh, z, out=dhz_out)
    np.subtract(dh, dhz_out, out=dn)  # dh (1 - z)
    np.multiply(n, n, out=dr)  # dr as scratch
    np.subtract(1, dr, out=dr)
    dn *= dr
    np.subtract(h_prev, n, out=dz)
    dz *= dh
    np.subtract(1, z, out=dr)
    dr *= z
    dz *= dr
    if reset_after:
        np.subtract(1, r, out=dr)
        dr *= r
        dr *= hn
        dr *= dn
        dgh_out[:, : 2 * H] = dgi_out[:, : 2 * H]
        np.multiply(dn, r, out=dgh_out[:, 2 * H :])
    return dgi_out


def gru_step_backward(dh, h_prev, gates, hn, w_hh, dgi_out, dgh_out, dh_out, tmp,
                      reset_after=True, pointwise=gru_pointwise_backward):
    """Backward of ``gru_step`` given dL/dh (N, H) (``gru_pointwise_backward`` for the gates)::

        reset_after:      dh_prev = dh z + dgh W_hh
        not reset_after:  d(rh) = dn_pre W_hn;  dr_pre = d(rh) h_prev r (1 - r);  dgh = dgi
                          (the n-block's weight gradient pairs with r * h_prev, kept in hn)
                          dh_prev = dh z + dgh_rz W_h(rz) + d(rh) r

    tmp: (N, H) scratch.  Writes dL/dh_prev into dh_out (must not alias dh).
    """
    H = hn.shape[-1]
    pointwise(dh, h_prev, gates, hn, dgi_out, dgh_out, dh_out, reset_after)  # dh_out = dh z
    if reset_after:
        dh_out += np.matmul(dgh_out, w_hh, out=tmp)
        return dh_out
    r = gates[:, :H]
    dr, dn = dgi_out[:, :H], dgi_out[:, 2 * H :]
    drh = np.matmul(dn, w_hh[2 * H :], out=tmp)  # (N, H)
    np.subtract(1, r, out=dr)
    dr *= r
    dr *= h_prev
    dr *= drh
    drh *= r
    dh_out += drh
    dgh_out[...] = dgi_out
    dh_out += np.matmul(dgh_out[:, : 2 * H], w_hh[: 2 * H], out=tmp)
    return dh_out


# ------------------------------------------------------------------------------------------
# Single-step modules (decoders, streaming inference)
# ------------------------------------------------------------------------------------------
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
        gH = GATES[self.kind] * hidden_size
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
        outer_sum_(self.grads["weight_ih"], dg_in, x)
        outer_sum_(self.grads["weight_hh"], dg_hh, h_prev)
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
        rnn_step(xg, h, self.params["weight_hh"].T, self.nonlinearity, out)
        self._push((x, h, out))
        return out

    def backward(self, dh):
        x, h_prev, h = self._pop()
        da = np.empty_like(h)
        dh_prev = rnn_step_backward(dh, h, self.params["weight_hh"], self.nonlinearity, da,
                                    np.empty_like(h))
        return self._input_grads(x, da, da, h_prev), dh_prev


class LSTMCell(_Cell):
    """One LSTM step (gate order i, f, g, o; equations in ``lstm_pointwise``).

    ``forward(x (N, I), state (h, c) or None) -> (h', c')``; ``backward(dh', dc'=None) -> (dx, (dh, dc))``.
    """

    kind = "lstm"

    def forward(self, x, state=None):
        h, c = (None, None) if state is None else state
        x, h = self._check(x, h, self.hidden_size)
        c = np.zeros_like(h) if c is None else self._check(x, c, self.hidden_size, "c")[1]
        # the pre-activation in full, then halved in the sigmoid columns (see the module docstring);
        # a cell is called once per step, so it does not copy its weights as the driver does
        gates = x @ self.params["weight_ih"].T  # (N, 4H)
        fast = _accel.kernels(self.dtype)
        (fast.lstm_preactivation if fast else lstm_preactivation)(
            gates, h @ self.params["weight_hh"].T, self._b("bias_ih"), self._b("bias_hh"),
            _lstm_shift_scale(self.hidden_size, self.dtype)[0])
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
        N, H = h.shape
        b_hh = self._b("bias_hh")
        b = gru_input_bias(self._b("bias_ih"), b_hh, self.reset_after)
        w_ih_t, w_hh_t, b = prepare_weights("gru", self.params["weight_ih"], self.params["weight_hh"], b)
        xg = x @ w_ih_t + b  # (N, 3H)
        gates = np.empty((N, 3 * H), self.dtype)
        hn, h_new = np.empty((N, H), self.dtype), np.empty((N, H), self.dtype)
        gru_step(xg, h, w_hh_t, b_hh[2 * H :], gates, hn, h_new, self.reset_after)
        self._push((x, h, gates, hn))
        return h_new

    def backward(self, dh):
        x, h_prev, gates, hn = self._pop()
        dgi, dgh = np.empty_like(gates), np.empty_like(gates)
        dh_prev = gru_step_backward(dh, h_prev, gates, hn, self.params["weight_hh"], dgi, dgh,
                                    np.empty_like(h_prev), np.empty_like(h_prev), self.reset_after)
        dx = self._input_grads(x, dgi, dgh, h_prev)
        if not self.reset_after:  # the n-block of W_hh multiplies r * h_prev, not h_prev
            H = self.hidden_size
            self.grads["weight_hh"][2 * H :] += dgh[:, 2 * H :].T @ (hn - h_prev)
        return dx, dh_prev

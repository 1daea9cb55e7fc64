"""The cells: one time step of the Elman RNN, the LSTM and the GRU, forward and backward.

This file is the math of the library; the drivers around it only move data.

Shapes, the legend of every file in ``rnnkit/nn``::

    N   batch size                        T   time steps
    I   input features                    H   hidden size (an LSTM's cell size)
    P   recurrent output size: H, or an LSTM's proj_size
    gH  gate rows, G * H: G = 1 (RNN), 4 (LSTM i, f, g, o), 3 (GRU r, z, n)
    D   directions (2 when bidirectional)  L   layers
    K   inner size of a stacked product [W_ih  b  W_hh] [x; 1; h]: I + 1 + P

Every function takes a batch.  Batch-major arrays are (N, F), a row per sequence (the training
driver and the single-step cells); the inference driver keeps hidden-major (F, N) arrays and
passes their transposes, batch-major views of the same memory, so each element-wise function
below serves both layouts.  For each cell there is

* ``<cell>_pointwise``: the gate math after the matmul, the forward equations;
* ``<cell>_step``: a batch-major step, the recurrent matmul then ``<cell>_pointwise``;
* ``<cell>_pointwise_backward`` and ``<cell>_step_backward``: the same, backward.

The modules built on them are ``cell_modules.py`` (RNNCell, LSTMCell, GRUCell, one step a call)
and ``recurrent.py`` (RNN, LSTM, GRU over whole sequences).

The input side ``xg = x W_ih^T + b`` comes in precomputed (the training driver does all time steps
in one GEMM), and outputs go to arrays the caller passes, so the time loop allocates nothing.
Gate order and parameter layout are torch's: ``W_ih`` (gH, I), ``W_hh`` (gH, P).

Two conventions, both exact:

* The recurrent weight comes transposed, ``w_hh_t = W_hh^T`` (P, gH) as a contiguous copy
  (``prepare_weights``): ``h @ w_hh_t`` is the layout BLAS runs fastest (figures in
  docs/performance.md).  Backward multiplies by ``W_hh`` itself, also the fast layout.
* The sigmoid is ``sigma(a) = tanh(a / 2) / 2 + 1/2`` (``sigmoid_from_tanh_``): no ``exp`` to
  overflow, and the halving is folded into the weights (``gate_scale``: the sigmoid gates' columns
  of ``w_hh_t`` and ``xg`` are multiplied by 1/2, exact in floating point), so a gate buffer holds
  ``a / 2`` for sigmoid gates and ``a`` for tanh gates, and *one* ``tanh`` call activates all of
  an LSTM's gates.  Gates are stored activated, so backward needs no scale.

The element-wise functions here are plain NumPy, the readable reference; ``_accel.py`` has
compiled twins with the same signatures, which the callers pass in as ``pointwise=`` when numba
is installed (``tests/nn/test_accel.py``: the same bits).
"""
from __future__ import annotations

import numpy as np

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def sigmoid_from_tanh_(t: np.ndarray, scale=0.5, shift=0.5) -> np.ndarray:
    """sigma(a) = tanh(a/2) * 1/2 + 1/2, finished in place from t = tanh(a/2).

    scale and shift may be per-column vectors that leave tanh columns as they are (scale 1,
    shift 0), so that one call finishes every gate of an LSTM buffer."""
    t *= scale
    t += shift
    return t


def gate_scale(kind: str, H: int, dtype) -> np.ndarray | None:
    """Per-column factor (gH,) of the pre-activations: 1/2 for sigmoid gates, 1 for tanh gates."""
    if kind == "rnn":
        return None
    s = np.full(GATES[kind] * H, 0.5, dtype)
    s[2 * H : 3 * H] = 1  # LSTM g and GRU n are tanh gates (GRU's n is activated on its own)
    return s


def prepare_weights(kind: str, w_ih: np.ndarray, w_hh: np.ndarray, b: np.ndarray):
    """(w_ih_t (I, gH), w_hh_t (P, gH), b (gH,)): transposed contiguous copies, sigmoid columns halved."""
    s = gate_scale(kind, w_hh.shape[0] // GATES[kind], w_hh.dtype)
    if s is None:
        return np.ascontiguousarray(w_ih.T), np.ascontiguousarray(w_hh.T), b
    return (np.multiply(w_ih.T, s, order="C"), np.multiply(w_hh.T, s, order="C"), b * s)


def prepare_stacked(kind: str, *blocks: np.ndarray) -> np.ndarray:
    """The column blocks side by side, (gH, sum of widths), sigmoid rows halved: the matrices of
    hidden-major inference, e.g. [W_ih  b  W_hh] for a = [W_ih  b  W_hh] [x; 1; h]
    (``inference.py``).  1-D blocks (biases) are columns."""
    stacked = np.concatenate([blk[:, None] if blk.ndim == 1 else blk for blk in blocks], axis=1)
    if kind != "rnn":  # gate_scale's halving, in place over whole row blocks: twice as fast
        H = stacked.shape[0] // GATES[kind]  # as a (gH, 1) factor broadcast over short rows
        stacked[: 2 * H] *= 0.5  # LSTM i, f; GRU r, z
        stacked[3 * H :] *= 0.5  # LSTM o (none for a GRU)
    return stacked


def outer_sum_(out: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """out += a^T b for a (N, M), b (N, K): a weight gradient summed over a batch.  For N = 1 a
    broadcast product: NumPy's matmul leaves BLAS for a slow loop when the summed axis is 1."""
    if a.shape[0] == 1:
        out += a.T * b
    else:
        out += a.T @ b
    return out


# ------------------------------------------------------------------------------------------
# Elman RNN
# ------------------------------------------------------------------------------------------
def rnn_pointwise(a: np.ndarray, nonlinearity: str) -> np.ndarray:
    """h = act(a), in place (``rnn_step``'s activation)."""
    if nonlinearity == "tanh":
        return np.tanh(a, out=a)
    return np.maximum(a, 0, out=a)


def rnn_step(xg, h_prev, w_hh_t, nonlinearity, h_out):
    """One Elman RNN step, forward and (``rnn_step_backward``) backward, given dh = dL/dh::

        a = xg + h_prev W_hh^T                 da = dh * act'(a):  tanh' = 1 - h^2,  relu' = [h > 0]
        h = act(a), act = tanh or relu         dh_prev = da W_hh     dW_hh += da^T h_prev     dxg = da

    with xg = x W_ih^T + b_ih + b_hh (both biases add before the activation).  -> h_out (N, H).
    """
    np.matmul(h_prev, w_hh_t, out=h_out)  # (N, H)
    h_out += xg
    return rnn_pointwise(h_out, nonlinearity)


def rnn_pointwise_backward(dh, h, nonlinearity, da_out):
    """da = dh * act'(a), with act' from h = act(a)  -> da_out (N, H)."""
    if nonlinearity == "tanh":
        np.multiply(h, h, out=da_out)
        np.subtract(1, da_out, out=da_out)
    else:
        np.greater(h, 0, out=da_out)  # 1.0 where h > 0 (relu' at a = 0 taken as 0, as torch)
    da_out *= dh
    return da_out


def rnn_step_backward(dh, h, w_hh, nonlinearity, da_out, dh_out, pointwise=rnn_pointwise_backward):
    """Backward of ``rnn_step`` (the right-hand column there): da -> da_out (N, H) and
    dh_prev -> dh_out (N, H), which may alias dh."""
    pointwise(dh, h, nonlinearity, da_out)
    return np.matmul(da_out, w_hh, out=dh_out)  # (N, H)


# ------------------------------------------------------------------------------------------
# LSTM, with torch's optional projection h = m W_hr^T
# ------------------------------------------------------------------------------------------
_LSTM_SIGMOID = {}  # (H, dtype) -> (scale, shift) per column: (1/2, 1/2) on i, f, o; (1, 0) on g


def lstm_sigmoid_columns(H: int, dtype):
    """(scale, shift), (4H,) each: ``sigmoid_from_tanh_`` on i, f, o; g passes unchanged."""
    key = (H, np.dtype(dtype))
    if key not in _LSTM_SIGMOID:
        s = gate_scale("lstm", H, dtype)
        _LSTM_SIGMOID[key] = (s, np.where(s == 1, 0, 0.5).astype(dtype))
    return _LSTM_SIGMOID[key]


def lstm_pointwise(gates, c_prev, c_out, tc_out, m_out):
    """``lstm_step``'s gate math after the matmul: i, f, g, o, c and m.  gates (N, 4H) holds
    [a_i/2, a_f/2, a_g, a_o/2] and is activated in place; c, tanh(c), m -> the slots (N, H)."""
    H = c_out.shape[-1]
    np.tanh(gates, out=gates)  # one call for all four gates
    sigmoid_from_tanh_(gates, *lstm_sigmoid_columns(H, gates.dtype))
    i, f, g, o = (gates[:, k * H : (k + 1) * H] for k in range(4))
    np.multiply(f, c_prev, out=c_out)
    np.multiply(i, g, out=tc_out)  # tc_out as scratch for i * g
    c_out += tc_out
    np.tanh(c_out, out=tc_out)
    np.multiply(o, tc_out, out=m_out)
    return m_out


def lstm_pointwise_hm(gates, c_prev, c_out, tc_out, m_out):
    """``lstm_pointwise`` in hidden-major layout: gates (4H, N), states (H, N)."""
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
    """One LSTM step (gate order i, f, g, o), forward and (``lstm_step_backward``) backward,
    given dh = dL/dh and dc = dL/dc from step t + 1::

        a = xg + h_prev W_hh^T                   dm = dh W_hr       (dm = dh without projection)
        i, f, o = sigma(a_i), sigma(a_f), sigma(a_o)
        g = tanh(a_g)                            dc_t = dc + dm o (1 - tanh(c)^2)
        c = f c_prev + i g                       di = dc_t g    df = dc_t c_prev    dg = dc_t i
        m = o tanh(c)                            do = dm tanh(c)                    dc_prev = dc_t f
        h = m, or h = m W_hr^T                   da = [di i (1 - i), df f (1 - f), dg (1 - g^2),
                                                       do o (1 - o)]
                                                 dh_prev = da W_hh    dW_hh += da^T h_prev    dxg = da
                                                 dW_hr += dh^T m

    with xg = x W_ih^T + b_ih + b_hh.  ``lstm_pointwise`` does i ... m; without a projection pass
    m_out = h_out and w_hr_t = None.  Returns (h_out (N, P), c_out (N, H)).
    """
    np.matmul(h_prev, w_hh_t, out=gates_out)  # (N, 4H)
    gates_out += xg
    pointwise(gates_out, c_prev, c_out, tc_out, m_out)
    if w_hr_t is not None:
        np.matmul(m_out, w_hr_t, out=h_out)  # (N, P)
    return h_out, c_out


def lstm_cell_grad(dm, dc, o, tc, out):
    """dc_t = dc + dm o (1 - tanh(c)^2), the whole dL/dc_t (``lstm_step``'s backward column):
    through c_{t+1} (dc) and through m = o tanh(c) (dm)  -> out (N, H)."""
    np.multiply(tc, tc, out=out)
    np.subtract(1, out, out=out)
    out *= o
    out *= dm
    out += dc
    return out


def lstm_pointwise_backward(dm, dc, gates, c_prev, tc, dgates_out, dc_out, tmp):
    """Backward of ``lstm_pointwise`` (``lstm_step``'s dc_t ... da): da -> dgates_out (N, 4H) and
    dc_prev -> dc_out (N, H), which may alias dc; tmp: (N, 4H) scratch."""
    H = tc.shape[-1]
    i, f, g, o = (gates[:, k * H : (k + 1) * H] for k in range(4))
    di, df, dg, do = (dgates_out[:, k * H : (k + 1) * H] for k in range(4))
    dc_t = lstm_cell_grad(dm, dc, o, tc, tmp[:, :H])  # the whole dL/dc of this step
    np.multiply(dm, tc, out=do)
    np.multiply(dc_t, g, out=di)
    np.multiply(dc_t, c_prev, out=df)
    np.multiply(dc_t, i, out=dg)
    np.multiply(dc_t, f, out=dc_out)
    # the activations' derivatives, all four gates at once: sigma' = s (1 - s), tanh' = 1 - g^2
    np.subtract(1, gates, out=tmp)
    tmp *= gates
    t = tmp[:, 2 * H : 3 * H]
    np.multiply(g, g, out=t)
    np.subtract(1, t, out=t)
    dgates_out *= tmp
    return dgates_out


def lstm_step_backward(dh, dc, gates, c_prev, tc, w_hh, w_hr, dgates_out, dc_out, dh_out, dm_out,
                       tmp, pointwise=lstm_pointwise_backward):
    """Backward of ``lstm_step`` (the right-hand column there): dm, ``lstm_pointwise_backward``,
    then dh_prev -> dh_out (N, P), which may alias dh.  Without a projection pass
    w_hr = dm_out = None (dm is dh)."""
    dm = dh if w_hr is None else np.matmul(dh, w_hr, out=dm_out)  # (N, H)
    pointwise(dm, dc, gates, c_prev, tc, dgates_out, dc_out, tmp)
    return np.matmul(dgates_out, w_hh, out=dh_out)  # (N, P)


# ------------------------------------------------------------------------------------------
# GRU, torch / cuDNN form: the reset gate multiplies the recurrent product *after* it
# ------------------------------------------------------------------------------------------
def gru_input_bias(b_ih, b_hh, reset_after=True):
    """The bias that joins the input GEMM: b_ih plus b_hh's r, z blocks, and its n block unless
    reset_after (there b_hn sits inside r * (.) and stays in the step)."""
    b = b_ih + b_hh
    if reset_after:
        H = b.shape[0] // 3
        b[2 * H :] = b_ih[2 * H :]
    return b


def gru_reset_update_(gi, gh):
    """r, z = sigma(gi_rz + gh_rz), activated in place in gi's first 2H columns."""
    H = gi.shape[-1] // 3
    rz = gi[:, : 2 * H]
    rz += gh[:, : 2 * H]
    np.tanh(rz, out=rz)
    return sigmoid_from_tanh_(rz)


def gru_new_state(gi, gh_n, h_prev, h_out, r=None):
    """n = tanh(gi_n + r * gh_n) into gi's n columns, then h = n + z (h_prev - n) -> h_out (N, H).
    r=None: the reset-before form, where gh_n already holds (r * h_prev) W_hn^T."""
    H = h_out.shape[-1]
    z, n = gi[:, H : 2 * H], gi[:, 2 * H :]
    if r is None:
        n += gh_n
    else:
        n += np.multiply(r, gh_n, out=h_out)  # h_out as scratch for r * gh_n
    np.tanh(n, out=n)
    np.subtract(h_prev, n, out=h_out)
    h_out *= z
    h_out += n
    return h_out


def gru_pointwise(gi, gh, h_prev, h_out):
    """``gru_step``'s gate math after the matmuls (torch's form): r, z, n and h.  Activates r, z,
    n in gi (N, 3H); gh (N, 3H) stays as it is (backward reads gh_n)."""
    gru_reset_update_(gi, gh)
    H = h_out.shape[-1]
    return gru_new_state(gi, gh[:, 2 * H :], h_prev, h_out, gi[:, :H])


def gru_pointwise_hm(gi, gh, h_prev, h_out):
    """``gru_pointwise`` in hidden-major layout: gates (3H, N), states (H, N)."""
    return gru_pointwise(gi.T, gh.T, h_prev.T, h_out.T).T


def gru_step(gi, h_prev, w_hh_t, b_hn, gh_out, h_out, rh_out=None, pointwise=gru_pointwise):
    """One GRU step (gate order r, z, n), forward and (``gru_step_backward``) backward, given
    dh = dL/dh::

        gi = x W_ih^T + b_ih + [b_hr, b_hz, 0]   dn = dh (1 - z)          dz = dh (h_prev - n)
        gh = h_prev W_hh^T + [0, 0, b_hn]        dan = dn (1 - n^2)       daz = dz z (1 - z)
        r = sigma(gi_r + gh_r)                   dar = dan gh_n r (1 - r)
        z = sigma(gi_z + gh_z)                   dgi = [dar, daz, dan]    dgh = [dar, daz, dan r]
        n = tanh(gi_n + r gh_n)                  dh_prev = dh z + dgh W_hh    dW_hh += dgh^T h_prev
        h = (1 - z) n + z h_prev = n + z (h_prev - n)

    Keras's reset-before form (reset_after=False) has b_hn in gi and
    ``n = tanh(gi_n + (r h_prev) W_hn^T)``:  d(rh) = dan W_hn,  dar = d(rh) h_prev r (1 - r),
    dh_prev = dh z + dgh_rz W_h(rz) + d(rh) r,  dW_hn += dan^T (r h_prev).

    gi (N, 3H), the input part with r, z columns halved like w_hh_t, becomes the activated gates;
    gh -> gh_out (N, 3H); h -> h_out (N, H).  Reset before, pass rh_out (N, H): it receives
    r * h_prev for backward, and gh_out's n block (r * h_prev) W_hn^T (w_hh_t's n columns are
    not halved)."""
    H = h_out.shape[-1]
    if rh_out is None:
        np.matmul(h_prev, w_hh_t, out=gh_out)  # (N, 3H)
        gh_out[:, 2 * H :] += b_hn
        return pointwise(gi, gh_out, h_prev, h_out)
    np.matmul(h_prev, w_hh_t[:, : 2 * H], out=gh_out[:, : 2 * H])  # (N, 2H)
    gru_reset_update_(gi, gh_out)
    np.multiply(gi[:, :H], h_prev, out=rh_out)
    np.matmul(rh_out, w_hh_t[:, 2 * H :], out=gh_out[:, 2 * H :])  # (N, H)
    return gru_new_state(gi, gh_out[:, 2 * H :], h_prev, h_out)


def gru_pointwise_backward(dh, h_prev, gates, hn, dgi_out, dgh_out, dhz_out, reset_after=True):
    """Backward of ``gru_pointwise`` (``gru_step``'s dn ... dgh): dgi -> dgi_out (N, 3H), dgh ->
    dgh_out (N, 3H) (reset after only) and dh z, the direct path of h = n + z (h_prev - n), ->
    dhz_out (N, H); hn is gh_n.  Reset before, dar needs the product d(rh) = dan W_hn first and is
    left to ``gru_step_backward``."""
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
    """Backward of ``gru_step`` (the right-hand column there): ``gru_pointwise_backward``, then
    dh_prev -> dh_out (N, H) (must not alias dh).  hn is gh_n (reset after) or r * h_prev (reset
    before, where dgh = dgi); tmp (N, H) scratch."""
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

"""Optional compiled kernels (numba) for the element-wise part of the cell steps.

Each public function here is a twin of a NumPy reference in ``cells.py`` with the same signature
and the same arithmetic in the same order, fused into one pass over memory instead of one NumPy
call (and one Python round trip) per operation.  At the sizes RNNs run at, a step's element-wise
work is a few thousand numbers, so the fixed cost of each NumPy call dominates it; one compiled
loop removes that.  The transcendental ``tanh`` stays with NumPy (its SIMD tanh is faster than a
compiled scalar loop).  Backward has no transcendental at all and becomes one kernel per step.
Figures: docs/performance.md.

numba is an optional extra (``pip install rnnkit[accel]``); without it, or with the environment
variable ``RNNKIT_ACCEL=0`` or ``set_enabled(False)``, the driver runs the NumPy reference.
``tests/nn/test_accel.py`` checks that both paths give the same numbers.
"""
from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np

_enabled = os.environ.get("RNNKIT_ACCEL", "1").strip().lower() not in ("0", "false", "no", "off")
_built: dict = {}  # dtype -> SimpleNamespace of kernels (or None when numba is missing)


def set_enabled(flag: bool) -> None:
    """Switch the compiled kernels on or off for the following calls (tests, comparisons)."""
    global _enabled
    _enabled = bool(flag)


def enabled() -> bool:
    """Whether the following calls use the compiled kernels (numba importable and not switched off)."""
    return kernels() is not None


def kernels(dtype=np.float32):
    """The kernels for ``dtype`` (float32 / float64), or None for the NumPy reference."""
    if not _enabled:
        return None
    dtype = np.dtype(dtype)
    if dtype not in _built:
        try:
            import numba
        except ImportError:
            _built[dtype] = None
        else:
            _built[dtype] = _build(numba, dtype.type)
    return _built[dtype]


def _build(numba, real):
    """Compile (lazily, cached on disk) the kernels with constants of type ``real``: a float64
    literal would promote float32 arithmetic to float64 and change the numbers."""
    zero, half, one = real(0), real(0.5), real(1)
    jit = numba.njit(cache=True, nogil=True)
    unit = numba.njit(cache=True, nogil=True, inline="always")  # inlined into each walker

    # The arithmetic of each gate is written once, in a unit over 1-D vectors of equal length;
    # the batch-major walker (*_rows) hands it one row of the batch per call, the hidden-major
    # walker (*_hm) one hidden unit across the batch.  A unit runs short loops over a few arrays
    # each: LLVM vectorises a loop only when it can check at run time that its arrays do not
    # overlap, and gives up beyond a handful of them (one loop over every array of the LSTM
    # backward stayed scalar).  The arithmetic is the NumPy reference's, in the same order.

    @unit
    def sigmoid_from_tanh(t):  # t = tanh(a/2) -> sigma(a), as cells.sigmoid_from_tanh_
        for k in range(t.shape[0]):
            t[k] = t[k] * half + half

    @unit
    def lstm_unit(i, f, g, o, c_prev, c):  # the sigmoids of i, f, o; c = f c_prev + i g
        sigmoid_from_tanh(i)
        sigmoid_from_tanh(f)
        sigmoid_from_tanh(o)
        for k in range(c.shape[0]):
            c[k] = f[k] * c_prev[k] + i[k] * g[k]

    @unit
    def gru_unit_gates(r, z, n, gh_n):  # the sigmoids of r, z; n's pre-activation gi_n + r gh_n
        sigmoid_from_tanh(r)
        sigmoid_from_tanh(z)
        for k in range(n.shape[0]):
            n[k] = n[k] + r[k] * gh_n[k]

    @unit
    def gru_unit_out(z, n, h_prev, h):  # h = n + z (h_prev - n)
        for k in range(h.shape[0]):
            h[k] = (h_prev[k] - n[k]) * z[k] + n[k]

    @jit
    def lstm_rows(gates, c_prev, c_out):
        H = c_out.shape[1]
        for n in range(c_out.shape[0]):
            a = gates[n]
            lstm_unit(a[:H], a[H : 2 * H], a[2 * H : 3 * H], a[3 * H :], c_prev[n], c_out[n])

    @jit
    def lstm_hm(gates, c_prev, c_out):
        H = c_out.shape[0]
        for j in range(H):
            lstm_unit(gates[j], gates[H + j], gates[2 * H + j], gates[3 * H + j], c_prev[j], c_out[j])

    @jit
    def gru_gates_rows(gi, gh):
        H = gi.shape[1] // 3
        for n in range(gi.shape[0]):
            a = gi[n]
            gru_unit_gates(a[:H], a[H : 2 * H], a[2 * H :], gh[n, 2 * H :])

    @jit
    def gru_out_rows(gi, h_prev, h_out):
        H = h_out.shape[1]
        for n in range(h_out.shape[0]):
            gru_unit_out(gi[n, H : 2 * H], gi[n, 2 * H :], h_prev[n], h_out[n])

    @jit
    def gru_gates_hm(gi, gh):
        H = gi.shape[0] // 3
        for j in range(H):
            gru_unit_gates(gi[j], gi[H + j], gi[2 * H + j], gh[2 * H + j])

    @jit
    def gru_out_hm(gi, h_prev, h_out):
        H = h_out.shape[0]
        for j in range(H):
            gru_unit_out(gi[H + j], gi[2 * H + j], h_prev[j], h_out[j])

    @jit
    def lstm_preact(gates, hw, b_ih, b_hh, scale):
        N, G = gates.shape
        for n in range(N):
            a, r = gates[n], hw[n]
            for j in range(G):
                a[j] = (((a[j] + r[j]) + b_ih[j]) + b_hh[j]) * scale[j]

    @jit
    def lstm_backward(dm, dc, gates, c_prev, tc, dgates, dc_out):
        N, H = tc.shape
        for n in range(N):
            i, f, g, o = gates[n, :H], gates[n, H : 2 * H], gates[n, 2 * H : 3 * H], gates[n, 3 * H :]
            di, df, dg, do = (dgates[n, :H], dgates[n, H : 2 * H], dgates[n, 2 * H : 3 * H],
                              dgates[n, 3 * H :])
            m, t, dcn, cp, dcp = dm[n], tc[n], dc[n], c_prev[n], dc_out[n]
            for j in range(H):
                do[j] = m[j] * t[j] * ((one - o[j]) * o[j])
            for j in range(H):  # the whole dL/dc of the step, parked in the df slot
                df[j] = (one - t[j] * t[j]) * o[j] * m[j] + dcn[j]
            for j in range(H):
                di[j] = df[j] * g[j] * ((one - i[j]) * i[j])
            for j in range(H):
                dg[j] = df[j] * i[j] * (one - g[j] * g[j])
            for j in range(H):  # dc_out may be dc: it was read above
                dcp[j] = df[j] * f[j]
            for j in range(H):
                df[j] = df[j] * cp[j] * ((one - f[j]) * f[j])

    @jit
    def gru_backward(dh, h_prev, gates, hn, dgi, dgh, dhz, reset_after):
        N, H = hn.shape
        for n in range(N):
            r, z, nn = gates[n, :H], gates[n, H : 2 * H], gates[n, 2 * H :]
            dr, dz, dn = dgi[n, :H], dgi[n, H : 2 * H], dgi[n, 2 * H :]
            d, hp, dz_h = dh[n], h_prev[n], dhz[n]
            for j in range(H):
                dz_h[j] = d[j] * z[j]
            for j in range(H):
                dn[j] = (d[j] - dz_h[j]) * (one - nn[j] * nn[j])
            for j in range(H):
                dz[j] = (hp[j] - nn[j]) * d[j] * ((one - z[j]) * z[j])
            if reset_after:
                gn, dgh_n = hn[n], dgh[n, 2 * H :]
                for j in range(H):
                    dr[j] = (one - r[j]) * r[j] * gn[j] * dn[j]
                for j in range(H):
                    dgh_n[j] = dn[j] * r[j]
                dgh[n, : 2 * H] = dgi[n, : 2 * H]

    @jit
    def rnn_backward(dh, h, relu, da):
        N, H = h.shape
        for n in range(N):
            d, y, a = dh[n], h[n], da[n]
            if relu:
                for j in range(H):
                    a[j] = (one if y[j] > zero else zero) * d[j]
            else:
                for j in range(H):
                    a[j] = (one - y[j] * y[j]) * d[j]

    # The twins.  ``tanh`` stays with NumPy, whose SIMD tanh beats a compiled scalar loop.

    def lstm_pointwise(gates, c_prev, c_out, tc_out, m_out):
        """Twin of ``cells.lstm_pointwise``."""
        H = c_out.shape[-1]
        np.tanh(gates, out=gates)
        lstm_rows(gates, c_prev, c_out)
        np.tanh(c_out, out=tc_out)
        np.multiply(gates[:, 3 * H :], tc_out, out=m_out)
        return m_out

    def lstm_pointwise_hm(gates, c_prev, c_out, tc_out, m_out):
        """Twin of ``cells.lstm_pointwise_hm``."""
        H = c_out.shape[0]
        np.tanh(gates, out=gates)
        lstm_hm(gates, c_prev, c_out)
        np.tanh(c_out, out=tc_out)
        np.multiply(gates[3 * H :], tc_out, out=m_out)
        return m_out

    def gru_pointwise(gi, gh, h_prev, h_out):
        """Twin of ``cells.gru_pointwise``."""
        H = h_out.shape[-1]
        rz, n = gi[:, : 2 * H], gi[:, 2 * H :]
        np.add(rz, gh[:, : 2 * H], out=rz)
        np.tanh(rz, out=rz)
        gru_gates_rows(gi, gh)
        np.tanh(n, out=n)
        gru_out_rows(gi, h_prev, h_out)
        return h_out

    def gru_pointwise_hm(gi, gh, h_prev, h_out):
        """Twin of ``cells.gru_pointwise_hm``."""
        H = h_out.shape[0]
        rz, n = gi[: 2 * H], gi[2 * H :]
        np.add(rz, gh[: 2 * H], out=rz)
        np.tanh(rz, out=rz)
        gru_gates_hm(gi, gh)
        np.tanh(n, out=n)
        gru_out_hm(gi, h_prev, h_out)
        return h_out

    def lstm_preactivation(gates, hw, b_ih, b_hh, scale):
        """Twin of ``cells.lstm_preactivation``."""
        lstm_preact(gates, hw, b_ih, b_hh, scale)
        return gates

    def lstm_pointwise_backward(dm, dc, gates, c_prev, tc, dgates_out, dc_out, tmp):
        """Twin of ``cells.lstm_pointwise_backward`` (tmp unused)."""
        lstm_backward(dm, dc, gates, c_prev, tc, dgates_out, dc_out)
        return dgates_out

    def gru_pointwise_backward(dh, h_prev, gates, hn, dgi_out, dgh_out, dhz_out, reset_after=True):
        """Twin of ``cells.gru_pointwise_backward``."""
        gru_backward(dh, h_prev, gates, hn, dgi_out, dgh_out, dhz_out, reset_after)
        return dgi_out

    def rnn_pointwise_backward(dh, h, nonlinearity, da_out):
        """Twin of ``cells.rnn_pointwise_backward``."""
        rnn_backward(dh, h, nonlinearity == "relu", da_out)
        return da_out

    return SimpleNamespace(lstm_pointwise=lstm_pointwise, lstm_pointwise_hm=lstm_pointwise_hm,
                           lstm_preactivation=lstm_preactivation, gru_pointwise=gru_pointwise,
                           gru_pointwise_hm=gru_pointwise_hm,
                           lstm_pointwise_backward=lstm_pointwise_backward,
                           gru_pointwise_backward=gru_pointwise_backward,
                           rnn_pointwise_backward=rnn_pointwise_backward)

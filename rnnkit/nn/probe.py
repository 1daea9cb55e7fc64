"""Gradient flow through time: record ||dL/dh_t|| (and ||dL/dc_t||) inside backpropagation.

Backpropagation through time computes dL/dh_t at every step anyway (``recurrent.py``,
``_train_direction_backward``); inside ``record_gradients()`` the driver also writes down its
norm, per sequence, for every layer, direction and time step, with what the forward pass left in
the cache (gate saturation, state norms) and the recurrent weights' largest singular values::

    with rnnkit.nn.record_gradients() as probe:
        y, _ = lstm(x, lengths=lengths)
        lstm.backward(dy)
    rec = probe.records[0]            # one Record per recurrent backward while recording
    rec.directions["l0"].dh           # (N, T) ||dL/dh_t|| of each sequence; NaN at padded steps
    rec.mean("l1_reverse")            # (T,) the mean over the sequences valid at each step
    summarize(rec)["l0"]["horizon"]   # the summary numbers below, per layer and direction

Outside the block nothing is recorded and nothing is computed: the driver reads ``active()``
once per backward call.  Recording changes no number of the backward pass.

The numbers (docs/diagnostics.md has the derivations):

* **dL/dh_t** is the gradient of the layer's output at step t in full, from the loss at t and
  from every later step; for an LSTM **dL/dc_t** is the cell state's, through h_t and c_{t+1}.
  Reverse directions are mapped back to time positions.
* ``last_step_only=True`` keeps, of the gradient arriving at a recurrent call's outputs, only
  each direction's last step that receives one (the last valid position forward, the first
  backward, where a loss sits at every step or at the end; the final state's gradient is kept
  too, as it sits at that step; an earlier step where the last ones have no target): the
  backward of a loss on that step alone, from which the **gradient horizon** is measured.  Each recurrent call is measured
  as if the loss sat at its own last step (a measurement, not a training pass).
* **profile** g(k): the geometric mean over sequences of ||dL/dh|| k steps back from the loss
  step (the last step, in the direction's order, with a gradient), relative to its value there; **horizon**: the number of steps back over which
  g stays at or above ``threshold`` (1e-3), the whole sequence when it never falls below;
  **decay**: the geometric mean of the per-step ratio ||dL/dh_{t-1}|| / ||dL/dh_t|| (in the
  direction's own order); **growth**: max_k g(k) (> 1: the norm grows going back).
* **sigma**: the largest singular value of each gate's block of W_hh, beside Pascanu, Mikolov &
  Bengio (2013)'s bound 1/gamma (gamma bounds the derivative of the gate's nonlinearity: 1 for
  tanh and relu, 1/4 for the sigmoid): below it, that path's gradient must vanish.
* **saturation**: the fraction of sigmoid gates within 0.02 of 0 or 1 and of tanh units beyond
  |0.98| over the valid steps (a relu RNN: the fraction of units at 0); mean and largest
  ||h_t|| and, for an LSTM, ||c_t||.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np

from .cells import GATES, lstm_cell_grad

GATE_NAMES = {"rnn": ("h",), "lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}
SIGMOID = {"i", "f", "o", "r", "z"}  # the gates activated by the sigmoid; the rest are tanh
SATURATED = 0.02   # a sigmoid gate within this of 0 or 1, a tanh unit beyond 1 - this
THRESHOLD = 1e-3   # the horizon: steps back while the gradient stays above this fraction
_active: "GradientProbe | None" = None


@contextlib.contextmanager
def record_gradients(last_step_only: bool = False):
    """Record the gradient flow of every recurrent backward inside the block; yields the
    `GradientProbe` whose ``records`` fill up (see the module docstring)."""
    global _active
    probe = GradientProbe(last_step_only)
    previous, _active = _active, probe
    try:
        yield probe
    finally:
        _active = previous


def active() -> "GradientProbe | None":
    """The probe recording now, or None (the driver's one check per backward call)."""
    return _active


@dataclass
class DirectionRecord:
    """One direction of one layer: per-sequence gradient norms and what the forward pass left."""

    layer: int
    reverse: bool
    dh: np.ndarray                  # (N, T) ||dL/dh_t||, NaN at padded steps
    dc: np.ndarray | None           # (N, T) ||dL/dc_t|| (LSTM), else None
    sigma: dict[str, float]         # largest singular value of each gate's W_hh block
    bound: dict[str, float]         # 1 / gamma of each gate
    saturation: dict[str, float]    # fraction of saturated units of each gate (and tanh(c))
    hidden_norm: tuple[float, float]  # (mean, largest) ||h_t|| over the valid steps
    cell_norm: tuple[float, float] | None  # the same for ||c_t|| (LSTM)


@dataclass
class Record:
    """One recurrent backward call (one module call): its directions by torch's suffixes,
    ``l0``, ``l0_reverse``, ``l1``, ..."""

    kind: str
    nonlinearity: str
    lengths: np.ndarray             # (N,) valid steps of each sequence
    last_step_only: bool
    params: dict                    # the parameter dict of the call (tells which module it was)
    directions: dict[str, DirectionRecord] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """(N, T)."""
        return next(iter(self.directions.values())).dh.shape

    def mean(self, name: str, which: str = "dh") -> np.ndarray:
        """(T,) the mean norm over the sequences valid at each step (NaN where none is)."""
        return _nanmean(getattr(self.directions[name], which), axis=0)


class GradientProbe:
    """What ``record_gradients`` yields: ``records``, one `Record` per recurrent backward."""

    def __init__(self, last_step_only: bool = False) -> None:
        self.last_step_only = bool(last_step_only)
        self.records: list[Record] = []

    def begin(self, cache: dict) -> Record:
        """A new record for the backward of ``cache`` (called by ``recurrent_backward``)."""
        N, T = cache["layers"][0][0].shape[1], cache["layers"][0][0].shape[0]
        lengths = cache["lengths"]
        lengths = np.full(N, T, np.int64) if lengths is None else np.asarray(lengths, np.int64)
        rec = Record(cache["kind"], cache["nonlinearity"], lengths, self.last_step_only,
                     cache["params"])
        self.records.append(rec)
        return rec


class DirectionProbe:
    """The recorder of one direction's backward loop; ``recurrent_backward`` makes one per
    direction, ``_train_direction_backward`` calls it at each step."""

    def __init__(self, record: Record, layer: int, reverse: bool, cache: dict, top: bool) -> None:
        T, N, _ = cache["H"].shape
        self.record, self.layer, self.reverse, self.cache = record, layer, reverse, cache
        self.top = top
        self.dh = np.empty((T, N))
        self.dc = np.empty((T, N)) if cache["kind"] == "lstm" else None

    def input_gradient(self, dy: np.ndarray, dh: np.ndarray | None) -> np.ndarray:
        """dy (T, N, P) in the loop's order, dh (N, P) the final state's gradient or None; with
        last_step_only, at the top layer, only each sequence's last step that receives a
        gradient: its last valid step where the final state has one, else the last step where
        dy is not 0 (a task with no target on its last steps)."""
        if not (self.record.last_step_only and self.top):
            return dy
        T, N, _ = dy.shape
        lengths = self.record.lengths
        hit = np.any(dy != 0, axis=2)  # (T, N)
        last = np.where(hit.any(axis=0), T - 1 - np.argmax(hit[::-1], axis=0), -1)
        if dh is not None:
            last = np.where(np.any(np.asarray(dh) != 0, axis=1), lengths - 1, last)
        keep = np.zeros((T, N, 1), dy.dtype)
        rows = np.flatnonzero(last >= 0)
        keep[last[rows], rows] = 1
        return dy * keep

    def step(self, t: int, dh: np.ndarray, dc: np.ndarray | None) -> None:
        """Step t of the loop: dh = dL/dh_t in full; dc (LSTM) = dL/dc_t through step t + 1."""
        self.dh[t] = _row_norms(dh)
        if self.dc is not None:
            c = self.cache
            H = c["C"].shape[-1]
            hr = c["w"]["hr"]
            dm = dh if hr is None else dh @ hr  # (N, H): the gradient of m = o tanh(c)
            # the whole dL/dc_t: through c_{t+1} (dc) and through h_t (dm o tanh'(c_t))
            self.dc[t] = _row_norms(lstm_cell_grad(dm, dc, c["G"][t][:, 3 * H :], c["TC"][t],
                                                   np.empty_like(dc)))

    def finish(self, rev: np.ndarray | None) -> None:
        """Back to time positions (``rev``: the driver's reverse index, None without lengths),
        the padded steps NaN, and the forward-side numbers; adds the DirectionRecord."""
        c, rec = self.cache, self.record
        mask = c["mask"]
        norms = []
        for a in (self.dh, self.dc):
            if a is not None and self.reverse:
                if rev is None:
                    a = a[::-1]
                else:
                    back = np.empty_like(a)
                    back[rev, np.arange(a.shape[1])[None, :]] = a
                    a = back
            if a is not None and mask is not None:
                a = np.where(mask[:, :, 0], a, np.nan)
            norms.append(None if a is None else np.ascontiguousarray(a.T))
        sigma, bound = _singular_values(c["kind"], c["w"]["hh"], rec.nonlinearity)
        name = f"l{self.layer}" + ("_reverse" if self.reverse else "")
        rec.directions[name] = DirectionRecord(
            self.layer, self.reverse, norms[0], norms[1], sigma, bound,
            _saturation(c, rec.nonlinearity), _state_norm(c["H"], mask),
            _state_norm(c["C"], mask) if c["kind"] == "lstm" else None)
        # backward runs from the top layer down; the record lists l0, l0_reverse, l1, ...
        rec.directions = dict(sorted(rec.directions.items(),
                                     key=lambda kv: (kv[1].layer, kv[1].reverse)))


# ------------------------------------------------------------------------------------------
# The forward side: singular values, saturation, state norms
# ------------------------------------------------------------------------------------------
def _row_norms(a: np.ndarray) -> np.ndarray:
    """||a_n|| of each row, in float64."""
    a = np.asarray(a, np.float64)
    return np.sqrt(np.einsum("np,np->n", a, a))


def _singular_values(kind: str, w_hh: np.ndarray, nonlinearity: str):
    """({gate: largest singular value of its W_hh block}, {gate: 1 / gamma})."""
    H = w_hh.shape[0] // GATES[kind]
    sigma, bound = {}, {}
    for k, gate in enumerate(GATE_NAMES[kind]):
        block = np.asarray(w_hh[k * H : (k + 1) * H], np.float64)
        sigma[gate] = float(np.linalg.svd(block, compute_uv=False)[0])
        bound[gate] = 4.0 if gate in SIGMOID else 1.0  # sigma' <= 1/4; tanh', relu' <= 1
    return sigma, bound


def _fraction(hit: np.ndarray, mask: np.ndarray | None) -> float:
    """The fraction of True in hit (T, N, H) over the valid steps."""
    if mask is None:
        return float(hit.mean()) if hit.size else 0.0
    valid = int(mask.sum()) * hit.shape[-1]
    return float((hit & mask).sum() / valid) if valid else 0.0


def _saturation(c: dict, nonlinearity: str) -> dict[str, float]:
    kind, mask = c["kind"], c["mask"]
    if kind == "rnn":
        h = c["H"]
        if nonlinearity == "relu":
            return {"h=0": _fraction(h == 0, mask)}
        return {"h": _fraction(np.abs(h) > 1 - SATURATED, mask)}
    G = c["G"]  # the activated gates (T, N, gH)
    H = G.shape[-1] // GATES[kind]
    out = {}
    for k, gate in enumerate(GATE_NAMES[kind]):
        a = G[..., k * H : (k + 1) * H]
        hit = ((a < SATURATED) | (a > 1 - SATURATED)) if gate in SIGMOID else \
            (np.abs(a) > 1 - SATURATED)
        out[gate] = _fraction(hit, mask)
    if kind == "lstm":
        out["tanh(c)"] = _fraction(np.abs(c["TC"]) > 1 - SATURATED, mask)
    return out


def _state_norm(S: np.ndarray, mask: np.ndarray | None) -> tuple[float, float]:
    """(mean, largest) ||s_t|| over the valid steps of S (T, N, F)."""
    norms = np.sqrt(np.einsum("tnf,tnf->tn", S, S, dtype=np.float64))
    if mask is not None:
        norms = norms[mask[:, :, 0]]
    if not norms.size:
        return (0.0, 0.0)
    return (float(norms.mean()), float(norms.max()))


# ------------------------------------------------------------------------------------------
# Summary numbers
# ------------------------------------------------------------------------------------------
def _nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    """np.nanmean without its warning on an all-NaN slice (NaN there)."""
    ok = ~np.isnan(a)
    count = ok.sum(axis=axis)
    total = np.where(ok, a, 0.0).sum(axis=axis)
    out = np.full(count.shape, np.nan)
    np.divide(total, count, out=out, where=count > 0)
    return out


def steps_back(norms: np.ndarray, lengths: np.ndarray, reverse: bool) -> np.ndarray:
    """(N, T) norms at time positions -> (N, T) the same counted back from each sequence's loss
    step, the last step (in the direction's own order) with a norm above 0: column k is k steps
    back from it (NaN beyond the sequence's start, and for a sequence without gradient)."""
    N, T = norms.shape
    k = np.arange(T)[None, :]
    lengths = lengths[:, None]
    inside = k < lengths
    pos = np.broadcast_to(lengths - 1 - k if reverse else k, (N, T))  # step k's position
    steps = np.where(inside, np.take_along_axis(norms, np.clip(pos, 0, T - 1), axis=1), np.nan)
    hit = steps > 0  # NaN compares False
    tau = np.where(hit.any(axis=1), T - 1 - np.argmax(hit[:, ::-1], axis=1), -1)[:, None]
    back = np.take_along_axis(steps, np.clip(tau - k, 0, T - 1), axis=1)
    return np.where(k <= tau, back, np.nan)


def profile(norms: np.ndarray, lengths: np.ndarray, reverse: bool = False) -> np.ndarray:
    """g(k), k = 0 .. T-1: the geometric mean over sequences of the norm k steps back from the
    loss step (`steps_back`) relative to the norm there; NaN where no sequence reaches that far.
    Sequences without gradient are left out; a norm of 0 counts as the smallest positive float."""
    back = steps_back(norms, lengths, reverse)
    tiny = np.finfo(np.float64).tiny
    at_loss = back[:, :1]
    use = (at_loss > 0)[:, 0]
    logs = np.log(np.maximum(back[use], tiny)) - np.log(at_loss[use])
    return np.exp(_nanmean(logs, axis=0)) if use.any() else np.full(norms.shape[1], np.nan)


def horizon(g: np.ndarray, threshold: float = THRESHOLD) -> tuple[int | None, bool]:
    """(steps back over which g stays >= threshold, whether that is the whole sequence); (None,
    False) when no gradient reached the loss step (g all NaN)."""
    g = g[~np.isnan(g)]
    if not g.size:
        return None, False
    below = np.flatnonzero(g < threshold)
    return (int(below[0]), False) if below.size else (int(g.size), True)


def decay_ratio(norms: np.ndarray, lengths: np.ndarray, reverse: bool = False) -> float:
    """The geometric mean of ||dL/dh_{t-1}|| / ||dL/dh_t|| over the steps from each sequence's
    loss step back to its start (the direction's own order; sequences with a gradient and at
    least one step before the loss step)."""
    back = steps_back(norms, lengths, reverse)
    tiny = np.finfo(np.float64).tiny
    span = np.sum(~np.isnan(back), axis=1) - 1  # steps from the loss step back to the start
    use = (span >= 1) & (back[:, 0] > 0)
    if not use.any():
        return float("nan")
    first = np.maximum(back[use, span[use]], tiny)  # the step farthest from the loss
    logs = (np.log(first) - np.log(back[use, 0])) / span[use]
    return float(np.exp(logs.mean()))


def summarize(record: Record, threshold: float = THRESHOLD) -> dict[str, dict]:
    """Per direction (``l0``, ``l0_reverse``, ...): horizon, horizon_full, decay, growth,
    profile (g(k)), sigma, bound, saturation, hidden_norm, cell_norm (see the module docstring).
    Where no gradient reaches the loss step (a head that ignores the layer) the horizon is None
    and decay, growth and profile NaN."""
    out = {}
    for name, d in record.directions.items():
        g = profile(d.dh, record.lengths, d.reverse)
        h, full = horizon(g, threshold)
        finite = g[~np.isnan(g)]
        out[name] = {
            "horizon": h, "horizon_full": full,
            "decay": decay_ratio(d.dh, record.lengths, d.reverse),
            "growth": float(finite.max()) if finite.size else float("nan"),
            "profile": g, "sigma": d.sigma, "bound": d.bound, "saturation": d.saturation,
            "hidden_norm": d.hidden_norm, "cell_norm": d.cell_norm}
    return out


__all__ = ["record_gradients", "active", "GradientProbe", "Record", "DirectionRecord",
           "summarize", "profile", "horizon", "decay_ratio", "steps_back", "THRESHOLD"]

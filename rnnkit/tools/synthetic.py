"""The long-range problems of the vanishing-gradient literature, as tasks of the shared loop.

Each problem draws its batches from a generator seeded by (seed, step), so a run is a function
of its seed, and scores against a stated baseline, the loss of the best answer that ignores the
long-range dependency:

* **adding** (Hochreiter & Schmidhuber 1997; the form of Le et al. 2015): a sequence of pairs
  (value ~ U[0, 1), marker); one marker in the first half and one in the second half are 1; the
  target is the sum of the two marked values, read from the last step.  Always predicting the
  mean 1 scores MSE = Var(u1 + u2) = 2/12 ~ 0.167.
* **copy** (Arjovsky, Shah & Bengio 2016): 10 symbols from 8, then T - 1 blanks, a delimiter
  and 10 blanks (T + 20 steps in all); the output is blank until the delimiter, then the 10
  symbols again; the loss is the cross-entropy at every step.  Predicting blanks, then a uniform
  guess over the 8 symbols, scores 10 log 8 / (T + 20) nats.
* **temporal-order** (Hochreiter & Schmidhuber 1997, experiment 6a): random distractors a-d
  between a start B and an end E; X or Y at one position in [0.1 T, 0.2 T) and at one in
  [0.5 T, 0.6 T); the class (XX, XY, YX, YY) is read from the last step.  Guessing scores
  log 4 nats.

The model is one recurrent layer (``cell``) and a Linear head on the last step (every step for
copy).  ``init`` options: ``orthogonal`` (every gate's W_hh block orthogonal), ``irnn`` (a relu
RNN with W_hh = I and zero biases, Le et al. 2015; the rnn cell only), ``forget-bias`` (an
LSTM's forget-gate bias 1, Gers et al. 2000; the lstm cell only).
"""
from __future__ import annotations

import math

import numpy as np

from ..nn import GRU, LSTM, RNN, CrossEntropyLoss, Linear, Module, MSELoss, no_grad
from ..nn.init import recurrent_orthogonal
from ..train.task import Task

PROBLEMS = ("adding", "copy", "temporal-order")
INITS = ("default", "orthogonal", "irnn", "forget-bias")
CELLS = {"rnn": RNN, "gru": GRU, "lstm": LSTM}
GATES = {"rnn": 1, "gru": 3, "lstm": 4}
COPY_SYMBOLS, COPY_LEN = 8, 10


def sizes(problem: str) -> tuple[int, int]:
    """(input features, outputs) of a problem."""
    return {"adding": (2, 1), "copy": (COPY_SYMBOLS + 2, COPY_SYMBOLS + 1),
            "temporal-order": (8, 4)}[problem]


def baseline(problem: str, T: int) -> float:
    """The loss of the best answer that ignores the long-range dependency (module docstring)."""
    if problem == "adding":
        return 2 / 12
    if problem == "copy":
        return COPY_LEN * math.log(COPY_SYMBOLS) / (T + 2 * COPY_LEN)
    return math.log(4)


def steps_of(problem: str, T: int) -> int:
    """Time steps of a sequence of length parameter T (copy: T + 20)."""
    return T + 2 * COPY_LEN if problem == "copy" else T


def make_batch(problem: str, T: int, n: int, rng: np.random.Generator):
    """(x (n, steps, I) float64, target): adding (n, 1) floats; copy (n, T + 20) classes;
    temporal-order (n,) classes."""
    if problem == "adding":
        if T < 2:
            raise ValueError("the adding problem needs sequences of 2 steps or more")
        x = np.zeros((n, T, 2))
        x[:, :, 0] = rng.random((n, T))
        half = T // 2
        first = rng.integers(0, half, n)
        second = rng.integers(half, T, n)
        rows = np.arange(n)
        x[rows, first, 1] = x[rows, second, 1] = 1
        return x, (x[rows, first, 0] + x[rows, second, 0])[:, None]
    if problem == "copy":
        S = T + 2 * COPY_LEN
        symbols = rng.integers(1, COPY_SYMBOLS + 1, (n, COPY_LEN))
        ids = np.zeros((n, S), np.int64)
        ids[:, :COPY_LEN] = symbols
        ids[:, COPY_LEN + T - 1] = COPY_SYMBOLS + 1  # the delimiter
        x = np.eye(COPY_SYMBOLS + 2)[ids]
        target = np.zeros((n, S), np.int64)
        target[:, -COPY_LEN:] = symbols
        return x, target
    if T < 10:
        raise ValueError("the temporal-order problem needs sequences of 10 steps or more")
    ids = rng.integers(0, 4, (n, T))  # distractors a, b, c, d
    ids[:, 0], ids[:, -1] = 6, 7      # B ... E
    t1 = rng.integers(max(int(0.1 * T), 1), max(int(0.2 * T), int(0.1 * T) + 1, 2), n)
    t2 = rng.integers(int(0.5 * T), max(int(0.6 * T), int(0.5 * T) + 1), n)
    a, b = rng.integers(0, 2, n), rng.integers(0, 2, n)  # 0 = X, 1 = Y
    rows = np.arange(n)
    ids[rows, t1], ids[rows, t2] = 4 + a, 4 + b
    return np.eye(8)[ids], 2 * a + b


class Net(Module):
    """One recurrent layer and a Linear head on the last step (every step with ``every``)."""

    def __init__(self, cell: str, inputs: int, hidden: int, outputs: int, every: bool,
                 init: tuple[str, ...], rng: np.random.Generator, dtype=np.float32) -> None:
        super().__init__()
        kw = {"nonlinearity": "relu"} if cell == "rnn" and "irnn" in init else {}
        self.rnn = CELLS[cell](inputs, hidden, dtype=dtype, rng=rng, **kw)
        self.head = Linear(hidden, outputs, dtype=dtype, rng=rng)
        self.every = every
        p, H = self.rnn.params, hidden
        if "orthogonal" in init:
            p["weight_hh_l0"][...] = recurrent_orthogonal((GATES[cell] * H, H), GATES[cell], rng)
        if cell == "rnn" and "irnn" in init:
            p["weight_hh_l0"][...] = np.eye(H)
            p["bias_ih_l0"][...] = p["bias_hh_l0"][...] = 0
        if cell == "lstm" and "forget-bias" in init:
            p["bias_ih_l0"][H : 2 * H] = 1  # the two biases add: their sum is 1
            p["bias_hh_l0"][H : 2 * H] = 0

    def forward(self, x):
        y, _ = self.rnn.forward(x)  # (N, T, H)
        self._push(y.shape)
        return self.head.forward(y if self.every else y[:, -1])

    def backward(self, dout):
        shape = self._pop()
        dz = self.head.backward(dout)
        if self.every:
            self.rnn.backward(dz)
            return
        dy = np.zeros(shape, dz.dtype)
        dy[:, -1] = dz
        self.rnn.backward(dy)


def parameters(cell: str, hidden: int, problem: str) -> int:
    """The parameters of ``Net`` (recurrent layer and head)."""
    inputs, outputs = sizes(problem)
    return GATES[cell] * hidden * (inputs + hidden + 2) + outputs * (hidden + 1)


def matched_hidden(cell: str, target: int, problem: str) -> int:
    """The hidden size whose parameter count is nearest ``target``."""
    return min(range(1, 2049), key=lambda h: (abs(parameters(cell, h, problem) - target), h))


class ProblemTask(Task):
    """One problem at one length for one cell, on the shared loop (rnnkit.train.engine.fit)."""

    app = "diagnose"

    def __init__(self, problem: str, T: int, cell: str, hidden: int, init: tuple[str, ...],
                 seed: int, batch: int = 32, val: int = 256, dtype=np.float32) -> None:
        self.problem, self.T, self.seed, self.batch_size = problem, T, seed, batch
        self.dtype = np.dtype(dtype)
        inputs, outputs = sizes(problem)
        self.model = Net(cell, inputs, hidden, outputs, problem == "copy", init,
                         np.random.default_rng([seed, 0]), self.dtype)
        self.loss_fn = MSELoss() if problem == "adding" else CrossEntropyLoss()
        self.val = self._data(np.random.default_rng([seed, 2]), val)
        self.metric = "loss"

    def _data(self, rng, n):
        x, y = make_batch(self.problem, self.T, n, rng)
        return x.astype(self.dtype), (y.astype(self.dtype) if self.problem == "adding" else y)

    def batch(self, step: int):
        return self._data(np.random.default_rng([self.seed, 1, step]), self.batch_size)

    def loss(self, batch) -> float:
        x, y = batch
        loss = float(self.loss_fn.forward(self.model.forward(x), y))
        self.model.backward(self.loss_fn.backward())
        return loss

    def evaluate(self) -> dict[str, float]:
        x, y = self.val
        self.model.eval()
        with no_grad():
            out = self.model.forward(x)
        self.model.train()
        loss = MSELoss() if self.problem == "adding" else CrossEntropyLoss()
        return {"loss": float(loss.forward(out, y))}

"""The adding problem (Hochreiter & Schmidhuber, 1997) in one page: the whole training loop.

Each input is a sequence of pairs (value in [0, 1), marker in {0, 1}); exactly two markers are 1
and the target is the sum of the two marked values.  Always predicting 1.0 gives MSE ~ 0.167;
a small LSTM brings it near zero.  Run:  python examples/adding_problem.py
"""
import argparse

import numpy as np

import rnnkit
from rnnkit.nn.optim import Adam, clip_grad_norm


def batch(rng, n, T):
    values = rng.random((n, T))
    markers = np.zeros((n, T))
    for row in markers:  # two distinct marked positions per sequence
        row[rng.choice(T, 2, replace=False)] = 1
    x = np.stack([values, markers], axis=-1).astype(np.float32)  # (N, T, 2)
    y = (values * markers).sum(axis=1, keepdims=True).astype(np.float32)  # (N, 1)
    return x, y


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--T", type=int, default=30, help="sequence length")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)

    lstm = rnnkit.LSTM(2, 32, rng=rng)  # x (N, T, 2) -> y (N, T, 32)
    head = rnnkit.Linear(32, 1, rng=rng)  # last step's output -> the sum
    loss_fn = rnnkit.MSELoss()
    opt = Adam(lr=1e-2)
    params = lambda: [*lstm.named_parameters("lstm."), *head.named_parameters("head.")]  # noqa: E731

    for step in range(1, args.steps + 1):
        x, target = batch(rng, 64, args.T)
        # forward: LSTM over the sequence, Linear on the last output, MSE
        y, _ = lstm.forward(x)
        pred = head.forward(y[:, -1])
        loss = loss_fn.forward(pred, target)
        # backward, in reverse order; only the last step receives a gradient
        dpred = loss_fn.backward()
        dy = np.zeros_like(y)
        dy[:, -1] = head.backward(dpred)
        lstm.backward(dy)
        # update: clip by global norm, one optimizer step, clear the gradients
        clip_grad_norm(params(), 1.0)
        opt.step(params())
        lstm.zero_grad()
        head.zero_grad()
        if step % 100 == 0 or step == 1:
            print(f"step {step:5d}  mse {float(loss):.5f}")

    x, target = batch(np.random.default_rng(12345), 1000, args.T)
    with rnnkit.no_grad():
        pred = head.forward(lstm.forward(x)[0][:, -1])
    print(f"held-out mse {float(np.mean((pred - target) ** 2)):.5f} (predicting 1.0 gives ~0.167)")


if __name__ == "__main__":
    main()

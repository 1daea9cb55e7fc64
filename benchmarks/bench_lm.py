#!/usr/bin/env python
"""End-to-end language-model training speed: rnnkit's ``rnnkit lm train`` model against the same
char-LSTM written in PyTorch, in one process, same threads, same data.

Both sides run the default ``rnnkit lm train`` configuration: Embedding(V, 64) -> 2-layer LSTM(256)
(dropout 0.1 between the layers) -> Dropout(0.1) -> Linear(256, V), batch 32 streams x seq 100
characters of the bundled corpus, state carried between windows (truncated BPTT), cross-entropy,
global-norm clipping at 5, Adam (lr 3e-3).  rnnkit's step is exactly ``Trainer.train_step``'s
(forward, loss, backward, clip, Adam step, zero_grad); torch's is the textbook loop (forward,
loss, backward, clip_grad_norm_, Adam step, zero_grad, state detached).

Each side is timed in blocks of its own with the other's threads idle (``fair.py``: a pause, a
warm-up step, then ``--steps`` timed steps; block order alternated); the median of the block
medians gives characters per second (batch * seq / step time) and the ratio.  Then generation:
the same models in eval mode, one character per call with the state carried (``rnnkit lm
sample``'s loop, greedy), in blocks the same way, time per character.

    python benchmarks/bench_lm.py                   # 2 threads, float32
    python benchmarks/bench_lm.py --threads 1 --rounds 5 --steps 3
    python benchmarks/bench_lm.py --cell gru
    python benchmarks/bench_lm.py --generate 0      # training only (default also times generation)
    python benchmarks/bench_lm.py --no-frozen       # generation without rnnkit.frozen(), for an A/B

A standalone script: never collected by pytest.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fair  # noqa: E402  (imports neither NumPy nor torch)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="LM training chars/s: rnnkit vs an equivalent PyTorch loop.")
    p.add_argument("--threads", type=int, default=2, help="threads for torch and NumPy's BLAS (default 2)")
    p.add_argument("--cell", choices=("lstm", "gru", "rnn"), default="lstm")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--embed", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=100)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--rounds", type=int, default=5, help="blocks per side (default 5)")
    p.add_argument("--steps", type=int, default=5, help="timed training steps per block (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per block first (default 2)")
    p.add_argument("--generate", type=int, default=200, metavar="CHARS",
                   help="also time generation: CHARS one-character steps per round, state carried, "
                        "in eval mode without gradients, as `rnnkit lm sample` runs (0: skip)")
    p.add_argument("--no-frozen", action="store_true",
                   help="generate under plain rnnkit.no_grad() (a fresh weight copy each call), "
                        "not inside rnnkit.frozen() as lm sample does")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:  # the thread count must reach the BLAS before NumPy (or torch) is imported
    fair.set_thread_env(ARGS.threads)

import math  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rnnkit.apps.lm.model import LanguageModel, ModelConfig  # noqa: E402
from rnnkit.data.text import StreamBatcher, Vocab, default_corpus_path, read_text  # noqa: E402
from rnnkit.nn import CrossEntropyLoss  # noqa: E402
from rnnkit.nn import _accel, frozen, no_grad  # noqa: E402
from rnnkit.nn.optim import Adam, clip_grad_norm  # noqa: E402


class RnnkitLM:
    """The model and step of ``rnnkit lm train`` (``Trainer.train_step`` without the schedule)."""

    def __init__(self, args, V: int, batcher: StreamBatcher):
        cfg = ModelConfig(vocab_size=V, cell=args.cell, embed=args.embed, hidden=args.hidden,
                          layers=args.layers, dropout=0.1, dtype=args.dtype)
        self.model = LanguageModel(cfg, np.random.default_rng(args.seed),
                                   np.random.default_rng([args.seed, 1]))
        self.loss_fn, self.opt = CrossEntropyLoss(), Adam(lr=3e-3)
        self.batcher, self.k, self.state = batcher, 0, None
        self.scope = no_grad if args.no_frozen else frozen

    def generate(self, chars: int) -> None:
        """``chars`` steps of one character (N = 1, T = 1), feeding back the argmax."""
        model, state, token = self.model, None, np.zeros((1, 1), np.int64)
        model.eval()
        with self.scope():  # frozen(), as ``rnnkit lm sample`` runs: weight copies once per text
            for _ in range(chars):
                logits, state = model.forward(token, state)
                token = logits[:, -1:].argmax(axis=-1)
        model.train()

    def step(self) -> float:
        model = self.model
        x, y = self.batcher.window(self.k % len(self.batcher))
        self.k += 1
        logits, self.state = model.forward(x, self.state)
        loss = float(self.loss_fn.forward(logits, y))
        model.backward(self.loss_fn.backward())
        params = list(model.named_parameters())
        clip_grad_norm(params, 5.0)
        self.opt.step(params)
        model.zero_grad()
        return loss


class TorchLM:
    """The same model and loop in PyTorch."""

    def __init__(self, args, V: int, batcher: StreamBatcher):
        import torch
        self.torch = torch
        torch.manual_seed(args.seed)
        nn = torch.nn
        dtype = torch.float32 if args.dtype == "float32" else torch.float64
        rnn_cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[args.cell]

        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.embed = nn.Embedding(V, args.embed)
                self.rnn = rnn_cls(args.embed, args.hidden, num_layers=args.layers, dropout=0.1,
                                   batch_first=True)
                self.drop = nn.Dropout(0.1)
                self.head = nn.Linear(args.hidden, V)

            def forward(self, ids, state):
                h, state = self.rnn(self.embed(ids), state)
                return self.head(self.drop(h)), state

        self.model = Model().to(dtype)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=3e-3)
        self.loss_fn = nn.CrossEntropyLoss()
        self.batcher, self.k, self.state = batcher, 0, None

    def generate(self, chars: int) -> None:
        torch, model, state = self.torch, self.model, None
        token = torch.zeros((1, 1), dtype=torch.int64)
        model.eval()
        with torch.inference_mode():
            for _ in range(chars):
                logits, state = model(token, state)
                token = logits[:, -1:].argmax(dim=-1)
        model.train()

    def step(self) -> float:
        torch = self.torch
        x, y = self.batcher.window(self.k % len(self.batcher))
        self.k += 1
        x, y = torch.from_numpy(x), torch.from_numpy(y)
        logits, state = self.model(x, self.state)
        loss = self.loss_fn(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.opt.step()
        self.state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        return loss.item()


def main(args) -> int:
    try:
        import torch
    except ImportError:
        print("bench_lm.py needs torch to compare against", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    text = read_text(str(default_corpus_path()))
    vocab = Vocab.from_text(text, kind="char")
    ids = vocab.encode(text)
    batcher = StreamBatcher(ids, args.batch, args.seq_len)
    ours, theirs = RnnkitLM(args, len(vocab), batcher), TorchLM(args, len(vocab), batcher)
    chars = args.batch * args.seq_len

    print("rnnkit lm train vs PyTorch char-LM training (CPU, same process, same data)")
    print(f"  model      Embedding({len(vocab)}, {args.embed}) -> {args.layers}-layer {args.cell.upper()}"
          f"({args.hidden}) -> Linear({args.hidden}, {len(vocab)}); dropout 0.1; Adam; clip 5")
    print(f"  batch      {args.batch} x {args.seq_len} chars, state carried (truncated BPTT); {args.dtype}")
    print(f"  threads    {args.threads} (torch.set_num_threads and OPENBLAS/OMP/MKL_NUM_THREADS); "
          f"numba kernels {'on' if _accel.enabled() else 'off'}; torch {torch.__version__}, "
          f"numpy {np.__version__}")
    for line in fair.describe(torch, _accel.enabled(), f"--threads {args.threads}, --dtype "
                              f"{args.dtype}, {args.rounds} blocks x {args.steps} steps, warm-up "
                              f"{args.warmup} steps per block"):
        print(line)
    losses = ([], [])
    res = fair.time_blocks(lambda: losses[0].append(ours.step()),
                           lambda: losses[1].append(theirs.step()), blocks=args.rounds,
                           samples=args.steps, target=0.0, warmup=args.warmup)
    a, b = res["ours_s"], res["theirs_s"]
    print(f"  loss       rnnkit {losses[0][-1]:.3f}, torch {losses[1][-1]:.3f} nats/char after "
          f"{len(losses[0])} steps (both learn; different initialisations)")
    print()
    print(f"{'':8s} {'ms/step':>9s} {'chars/s':>9s}")
    print(f"{'rnnkit':8s} {a * 1e3:9.1f} {chars / a:9.0f}")
    print(f"{'torch':8s} {b * 1e3:9.1f} {chars / b:9.0f}")
    print(f"time ratio rnnkit / torch = {res['ratio']:.2f} +- {res['spread']:.2f} (< 1: rnnkit is "
          f"faster); medians of {res['blocks']} blocks x {args.steps} steps")
    if args.generate > 0:
        res = fair.time_blocks(lambda: ours.generate(args.generate),
                               lambda: theirs.generate(args.generate), blocks=args.rounds,
                               samples=3, target=0.0, warmup=1)
        a, b = res["ours_s"] / args.generate, res["theirs_s"] / args.generate
        print()
        print(f"generation, one character per call (N = 1, T = 1), {args.generate} per sample:")
        print(f"{'':8s} {'us/char':>9s} {'chars/s':>9s}")
        print(f"{'rnnkit':8s} {a * 1e6:9.1f} {1 / a:9.0f}")
        print(f"{'torch':8s} {b * 1e6:9.1f} {1 / b:9.0f}")
        print(f"time ratio rnnkit / torch = {res['ratio']:.2f} +- {res['spread']:.2f}; medians of "
              f"{res['blocks']} blocks")
    if not all(math.isfinite(v) for v in losses[0] + losses[1]):
        print("a loss was not finite", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))

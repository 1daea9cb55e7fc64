"""Progress display and loss-curve plots.  tqdm and matplotlib are optional extras."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path


class Progress:
    """A progress bar over ``total`` steps with a postfix of metrics (tqdm when installed).

    Without tqdm (or when stderr is not a terminal and ``every`` is set) it prints one line
    every ``every`` updates instead.
    """

    def __init__(self, total: int, initial: int = 0, desc: str = "", every: int = 100,
                 enabled: bool = True) -> None:
        self.total, self.n, self.every, self.enabled = total, initial, every, enabled
        self.desc = desc
        self._bar = None
        self._last = time.monotonic()
        if enabled and sys.stderr.isatty():
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True,
                                 file=sys.stderr)

    def update(self, n: int = 1, **metrics) -> None:
        self.n += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix(metrics, refresh=False)
            self._bar.update(n)
        elif self.n % self.every == 0 or self.n == self.total:
            parts = " ".join(f"{k} {v}" for k, v in metrics.items())
            print(f"{self.desc} step {self.n}/{self.total} {parts}", file=sys.stderr, flush=True)

    def set_total(self, total: int) -> None:
        self.total = total
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def write(self, message: str) -> None:
        if self._bar is not None:
            self._bar.write(message, file=sys.stderr)
        elif self.enabled:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def plot_curves(path: str | os.PathLike, curves: dict[str, tuple[list, list]], xlabel: str = "step",
                ylabel: str = "loss", title: str = "") -> bool:
    """Draw named (x, y) curves to a PNG, written atomically.  Returns False without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, (xs, ys) in curves.items():
        if xs:
            ax.plot(xs, ys, label=name, marker="o" if len(xs) < 30 else None)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)
    return True


def plot_history(path: str | os.PathLike, history: dict, task, best_step: int,
                 title: str = "") -> bool:
    """The training curve of a run: the training loss at every logged interval, the validation
    loss at every evaluation, the best step marked; a validation metric other than the loss
    (an error rate, an accuracy) on a second axis.  Returns False without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    ev, steps = history["eval"], history["eval_step"]
    ax.plot(history["train_step"], history["train"], label=f"training {task.loss_name}",
            color="tab:blue", alpha=0.8)
    if "loss" in ev:
        ax.plot(steps, ev["loss"], label=f"validation {task.loss_name}", color="tab:orange",
                marker="o" if len(steps) < 30 else None)
    ax.set_xlabel("step")
    ax.set_ylabel(task.loss_name)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if task.metric != "loss" and task.metric in ev:
        ax2 = ax.twinx()
        ax2.plot(steps, ev[task.metric], label=f"validation {task.metric}", color="tab:green",
                 marker="o" if len(steps) < 30 else None)
        ax2.set_ylabel(task.metric)
        more = ax2.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    if steps:
        line = ax.axvline(best_step, color="gray", linestyle="--", linewidth=1)
        handles.append(line)
        labels.append(f"best (step {best_step})")
    ax.legend(handles, labels, loc="upper right")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path)
    return True


def save_figure(fig, path: str | os.PathLike, dpi: int = 100) -> None:
    """Write a matplotlib figure to a PNG atomically (temporary name, then rename) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    try:
        fig.savefig(tmp, dpi=dpi)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()

"""``classify eval --plot``: the confusion matrix beside the run's training curves."""
from __future__ import annotations

import os

import numpy as np


def plot_evaluation(path: str | os.PathLike, result: dict, history: dict | None,
                    best_step: int | None) -> bool:
    """Draw to a PNG (atomically); returns False without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    from ...train.progress import save_figure

    m = np.asarray(result["confusion"])
    names = list(result["per_class"])
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 5))
    rows = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, str(m[i, j]), ha="center", va="center",
                    color="white" if rows[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {result['accuracy']:.3f}, macro F1 {result['macro_f1']:.3f} "
                 f"(n = {result['n']})")
    if history and history.get("train_step"):
        bx.plot(history["train_step"], history["train"], label="training cross-entropy")
        ev = history.get("eval", {})
        if "loss" in ev:
            bx.plot(history["eval_step"], ev["loss"], label="validation cross-entropy",
                    marker="o" if len(history["eval_step"]) < 30 else None)
        if best_step:
            bx.axvline(best_step, color="gray", linestyle="--", linewidth=1,
                       label=f"best (step {best_step})")
        bx.set_xlabel("step")
        bx.set_ylabel("cross-entropy")
        bx.grid(alpha=0.3)
        bx.legend()
    else:
        bx.axis("off")
    fig.tight_layout()
    save_figure(fig, path)
    return True

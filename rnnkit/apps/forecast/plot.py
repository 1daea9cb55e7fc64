"""PNG plots of history, forecasts and prediction intervals (matplotlib is an optional extra)."""
from __future__ import annotations

import os

import numpy as np

from ...data.series import Frequency
from ...train.progress import save_figure

MAX_PANELS = 6


def plot_forecasts(path: str | os.PathLike, panels: list[dict], freq: Frequency,
                   title: str = "") -> bool:
    """Draw one panel per series, written atomically; False (and no file) without matplotlib.

    Each panel: {"id", "history_start", "history" (values), "forecasts": [forecast dicts with
    start, mean, lower_80, upper_80, lower_95, upper_95 and optionally actual]}.
    """
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, MaxNLocator
    except ImportError:
        return False
    shown = panels[:MAX_PANELS]
    fig, axes = plt.subplots(len(shown), 1, figsize=(9, 2.8 * len(shown) + 0.6), squeeze=False)
    step = freq.step
    for ax, panel in zip(axes[:, 0], shown):
        hist = np.asarray(panel["history"], np.float64)
        t_hist = panel["history_start"] + step * np.arange(len(hist))
        ax.plot(t_hist, hist, color="black", lw=1.2, label="history")
        for k, f in enumerate(panel["forecasts"]):
            t = f["start"] + step * np.arange(len(f["mean"]))
            first = k == 0
            ax.fill_between(t, f["lower_95"], f["upper_95"], color="tab:blue", alpha=0.15, lw=0,
                            label="95% interval" if first else None)
            ax.fill_between(t, f["lower_80"], f["upper_80"], color="tab:blue", alpha=0.3, lw=0,
                            label="80% interval" if first else None)
            ax.plot(t, f["mean"], color="tab:blue", lw=1.6, label="forecast" if first else None)
            if f.get("actual") is not None:
                ax.plot(t, f["actual"], color="tab:orange", lw=1.2, ls="--",
                        label="actual" if first else None)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: freq.format(int(round(x)))))
        ax.grid(alpha=0.3)
        if panel.get("id"):
            ax.set_title(str(panel["id"]), fontsize=10, loc="left")
        ax.legend(fontsize=8, loc="upper left")
    if title or len(panels) > len(shown):
        more = f" (first {len(shown)} of {len(panels)} series)" if len(panels) > len(shown) else ""
        fig.suptitle(title + more, fontsize=11)
    fig.tight_layout()
    save_figure(fig, path)
    return True

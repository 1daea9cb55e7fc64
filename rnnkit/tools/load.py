"""``rnnkit.load(path)``: the trained model of any application's run folder.

The checkpoint's ``config.json`` names the application; its package's ``load(path, which)``
rebuilds the model with everything it needs for its job:

=========  ====================  ===============================================
app        returns               its job
=========  ====================  ===============================================
lm         ``TextModel``         ``generate(prime, length, ...)``, ``evaluate(text)``
forecast   ``Forecaster``        ``forecast(series_set)``
translate  ``Translator``        ``translate(texts, beam=...)``, ``evaluate(pairs)``
asr        ``Recognizer``        ``transcribe(wav_paths, beam=...)``, ``evaluate(manifest)``
classify   ``Classifier``        ``predict(data)``, ``evaluate(data)``
=========  ====================  ===============================================
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path

# the "app" of a checkpoint -> the package whose load() rebuilds its model
APPS = {
    "lm": "rnnkit.apps.lm",
    "forecast": "rnnkit.apps.forecast",
    "translate": "rnnkit.apps.seq2seq",
    "asr": "rnnkit.apps.asr",
    "classify": "rnnkit.apps.classify",
}


def app_of(path: str | os.PathLike) -> str:
    """The application that wrote the run folder ``path`` (checked like any checkpoint)."""
    from ..train.checkpoint import load_checkpoint

    config, _, _ = load_checkpoint(path)
    app = config.get("app")
    if app not in APPS:
        raise ValueError(f"{path}: not a run folder of a known application (app {app!r}; known: "
                         + ", ".join(sorted(APPS)) + ")")
    return app


def load(path: str | os.PathLike, which: str = "best"):
    """The trained model of the run folder ``path``: its best parameters, or the latest with
    ``which="latest"`` (see the table in this module's docstring for what each app returns)."""
    if which not in ("best", "latest"):
        raise ValueError(f"which must be 'best' or 'latest', got {which!r}")
    if not Path(path).exists():
        raise ValueError(f"{path}: no such run folder")
    module = importlib.import_module(APPS[app_of(path)])
    return module.load(path, which)

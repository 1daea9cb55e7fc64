"""The forecasting models behind one interface: ``--model direct`` (`train.Forecaster`) and
``--model esrnn`` (`esrnn.ESRNNForecaster`), built from settings or loaded from a checkpoint;
``--model auto`` (the default) picks one from the data, as `choose_model` says."""
from __future__ import annotations

import dataclasses

from ...data.series import Frequency, SeriesSet
from ...train.checkpoint import checkpoint_format, load_checkpoint
from .esrnn_train import ESRNNForecaster
from .train import Forecaster, ForecastSettings


# "auto" takes the ES-RNN for a seasonal collection of at least this many series (one batch of
# its default --es-batch): a global network and per-series seasonality need many series to
# learn from.  benchmarks/forecast_quality.py: the ES-RNN wins on the seasonal collections (M3
# quarterly, M1 and Tourism monthly; level with Theta on M3 monthly), the direct model on the
# yearly ones and on every bundled single series (docs/forecast.md).
COLLECTION = 32


def choose_model(settings: ForecastSettings, data: SeriesSet) -> ForecastSettings:
    """``settings`` with ``model`` "auto" made "esrnn" for a seasonal collection (season > 1,
    at least COLLECTION series, no covariates: the ES-RNN reads none) and "direct" otherwise;
    any other ``model`` is returned as it is."""
    if settings.model != "auto":
        return settings
    season = settings.season if settings.season is not None else data.freq.season
    collection = season > 1 and len(data) >= COLLECTION and not data.covariates
    return dataclasses.replace(settings, model="esrnn" if collection else "direct")


def build_forecaster(settings: ForecastSettings, freq: Frequency, n_covariates: int):
    """An untrained forecaster of the kind ``settings.model`` names ("auto": resolve it from the
    data with `choose_model` first)."""
    if settings.model == "auto":
        raise ValueError("--model auto is chosen from the data: call choose_model(settings, data) "
                         "first")
    if settings.model == "esrnn":
        return ESRNNForecaster(settings, freq, n_covariates)
    return Forecaster(settings, freq, n_covariates)


def load_forecaster(directory):
    """(forecaster, data options) from a checkpoint written by either model's ``save``."""
    config, _, _ = load_checkpoint(directory)
    if config.get("app") != "forecast":
        raise ValueError(f"{directory} is not a forecasting checkpoint")
    if checkpoint_format(directory) < 2:
        raise ValueError(f"{directory} was written by an older rnnkit (checkpoint format 1), "
                         "whose forecasters this version does not read: train it again")
    settings = config.get("settings")
    if config.get("model") == "esrnn" or (isinstance(settings, dict)
                                          and settings.get("model") == "esrnn"):
        return ESRNNForecaster.load_from(directory, ForecastSettings)
    return Forecaster.load(directory)


def load_model(directory, which: str = "best"):
    """The forecaster of a run folder, for ``rnnkit.load`` and ``rnnkit export onnx`` (one set
    of parameters, so ``which`` changes nothing)."""
    return load_forecaster(directory)[0]

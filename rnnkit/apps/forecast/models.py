"""The forecasting models behind one interface: ``--model direct`` (`train.Forecaster`) and
``--model esrnn`` (`esrnn.ESRNNForecaster`), built from settings or loaded from a checkpoint."""
from __future__ import annotations

from ...data.series import Frequency
from ...train.checkpoint import load_checkpoint
from .esrnn_train import ESRNNForecaster
from .train import Forecaster, ForecastSettings


def build_forecaster(settings: ForecastSettings, freq: Frequency, n_covariates: int):
    """An untrained forecaster of the kind ``settings.model`` names."""
    if settings.model == "esrnn":
        return ESRNNForecaster(settings, freq, n_covariates)
    return Forecaster(settings, freq, n_covariates)


def load_forecaster(directory):
    """(forecaster, data options) from a checkpoint written by either model's ``save``."""
    config, _, _ = load_checkpoint(directory)
    if config.get("app") != "forecast":
        raise ValueError(f"{directory} is not a forecasting checkpoint")
    settings = config.get("settings")
    if config.get("model") == "esrnn" or (isinstance(settings, dict)
                                          and settings.get("model") == "esrnn"):
        return ESRNNForecaster.load_from(directory, ForecastSettings)
    return Forecaster.load(directory)


def load_model(directory, which: str = "best"):
    """The forecaster of a run folder, for ``rnnkit.load`` and ``rnnkit export onnx`` (one set
    of parameters, so ``which`` changes nothing)."""
    return load_forecaster(directory)[0]

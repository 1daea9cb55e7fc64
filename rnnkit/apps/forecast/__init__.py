"""Time-series forecasting: ``rnnkit forecast train | predict | backtest``.

A global LSTM / GRU / RNN encoder over a context window of per-window, per-series scaled values
(+ calendar features, + covariates), a direct multi-horizon Gaussian head (mean and variance of
all H steps at once, trained with negative log-likelihood), rolling-origin backtests against the
naive, seasonal-naive and drift baselines with M4's metrics.
"""


from . import export  # noqa: E402,F401  (registers the exporters with rnnkit.interop)


def load(directory, which: str = "best"):
    """The trained forecaster of a run folder (``forecast(series_set)``): a `Forecaster`
    (``--model direct``) or an `ESRNNForecaster` (``--model esrnn``)."""
    from .models import load_model

    return load_model(directory, which)

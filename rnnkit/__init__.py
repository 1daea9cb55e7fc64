"""rnnkit: RNN, LSTM and GRU written out in NumPy, forward and backward, exact against PyTorch."""
from . import nn
from .nn import (GRU, LSTM, RNN, CrossEntropyLoss, CTCLoss, Dropout, Embedding, GaussianNLLLoss,
                 GradcheckError, GRUCell, Linear, LSTMCell, Module, MSELoss, RNNCell, Sequential,
                 frozen, gradcheck, no_grad, record_gradients)
from .nn import init, optim  # noqa: F401  (rnnkit.optim, rnnkit.init)

__version__ = "0.1.0"


def load(path, which: str = "best"):
    """The trained model of any application's run folder (``rnnkit <app> train --out``):
    a language model's ``generate``, a forecaster's ``forecast``, a translator's ``translate``,
    a recogniser's ``transcribe``, a classifier's ``predict``.  See `rnnkit.tools.load`."""
    from .tools.load import load as _load

    return _load(path, which)

__all__ = [
    "nn", "init", "optim", "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "Linear",
    "Embedding", "Dropout", "Sequential", "Module", "CrossEntropyLoss", "MSELoss",
    "GaussianNLLLoss", "CTCLoss", "gradcheck", "GradcheckError", "no_grad", "frozen",
    "record_gradients",
    "load", "__version__",
]

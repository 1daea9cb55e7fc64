"""The math: cells, the recurrent driver, layers, losses, optimizers, initialisers, gradcheck."""
from .cell_modules import GRUCell, LSTMCell, RNNCell, recurrent_cell
from .ctc import CTCLoss
from .gradcheck import GradcheckError, gradcheck, numerical_grad
from .layers import Dropout, Embedding, Linear, Sequential
from .losses import CrossEntropyLoss, GaussianNLLLoss, MSELoss, log_softmax
from .module import Module, frozen, grad_enabled, no_grad
from .probe import record_gradients
from .recurrent import GRU, LSTM, RNN, recurrent_backward, recurrent_forward, recurrent_layer

__all__ = [
    "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "Linear", "Embedding", "Dropout",
    "Sequential", "Module", "CrossEntropyLoss", "MSELoss", "GaussianNLLLoss", "CTCLoss", "log_softmax",
    "gradcheck", "numerical_grad", "GradcheckError", "no_grad", "frozen", "grad_enabled", "record_gradients",
    "recurrent_forward", "recurrent_backward", "recurrent_layer", "recurrent_cell",
]

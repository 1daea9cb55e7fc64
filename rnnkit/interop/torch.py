"""PyTorch <-> rnnkit: layers and whole models, weights copied by name.

rnnkit keeps torch's parameter names, shapes and gate orders, so a recurrent layer converts by
copying its ``state_dict``; nothing is permuted.  Supported both ways:

=====================================  =============================================================
torch                                  rnnkit
=====================================  =============================================================
``nn.RNN / nn.LSTM / nn.GRU``          ``RNN / LSTM / GRU`` (layers, directions, ``proj_size``, bias)
``nn.Embedding``, ``nn.Linear``        ``Embedding``, ``Linear``
``TorchLanguageModel`` (below)         ``rnnkit.apps.lm.model.LanguageModel``
``TorchForecastNet`` (below)           ``rnnkit.apps.forecast.model.ForecastNet``
=====================================  =============================================================

The twins (``torch_language_model_class()``, ``torch_forecast_net_class()``) are plain torch
modules built from ``nn.Embedding``, ``nn.RNN / LSTM / GRU`` and ``nn.Linear`` with rnnkit's
parameter names.  A whole forecaster (an ensemble with scaling around it) has no torch twin:
convert its members (``forecaster.nets``) one by one, or export it to ONNX.

rnnkit is always batch-first; ``to_torch`` builds recurrent layers with ``batch_first=True``,
and ``from_torch`` accepts either setting (the weights are the same).  Outputs are equal after
conversion (``tests/interop/test_interop_torch.py``).  torch is imported inside the functions.

A new model kind plugs in by adding one converter to ``TO_TORCH`` (keyed by the rnnkit class's
qualified name) and, for the way back, a test in ``from_torch``.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

from ..nn import GRU, LSTM, RNN, Embedding, Linear, Module

_NUMPY_DTYPES = ("float32", "float64")


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------
def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("rnnkit.interop.torch needs PyTorch: pip install 'rnnkit[torch]'") from exc
    return torch


def _numpy_state(module, dtype) -> dict[str, np.ndarray]:
    """A torch module's state_dict as NumPy arrays of ``dtype``."""
    return {k: v.detach().cpu().numpy().astype(dtype) for k, v in module.state_dict().items()}


def _dtype_of(module, dtype) -> np.dtype:
    """The requested dtype, or the torch module's own (float32 / float64 only)."""
    if dtype is not None:
        return np.dtype(dtype)
    first = next(iter(module.parameters()), None)
    name = str(first.dtype).replace("torch.", "") if first is not None else "float32"
    if name not in _NUMPY_DTYPES:
        raise ValueError(f"torch parameters are {name}; rnnkit computes in float32 or float64: "
                         "pass dtype=np.float32 to convert")
    return np.dtype(name)


def _load_torch(module, params: dict[str, np.ndarray]):
    """Copy NumPy arrays into a torch module by name (strict: every name must match)."""
    torch = _torch()
    module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in params.items()}, strict=True)
    return module


def _torch_dtype(dtype: np.dtype):
    return getattr(_torch(), np.dtype(dtype).name)


# ------------------------------------------------------------------------------------------
# rnnkit -> torch
# ------------------------------------------------------------------------------------------
def _recurrent_to_torch(layer):
    torch = _torch()
    if isinstance(layer, GRU) and not layer.reset_after:
        raise ValueError("torch's nn.GRU has no reset_after=False form (reset gate before the "
                         "recurrent matmul); only reset_after=True GRUs convert to torch")
    cls = (torch.nn.LSTM if isinstance(layer, LSTM) else
           torch.nn.GRU if isinstance(layer, GRU) else torch.nn.RNN)
    kw = dict(num_layers=layer.num_layers, bias=layer.bias, batch_first=True,
              # torch warns that dropout does nothing with one layer: pass it only where it acts
              dropout=layer.dropout if layer.num_layers > 1 else 0.0,
              bidirectional=layer.bidirectional, dtype=_torch_dtype(layer.dtype))
    if isinstance(layer, RNN):
        kw["nonlinearity"] = layer.nonlinearity
    if isinstance(layer, LSTM):
        kw["proj_size"] = layer.proj_size
    m = cls(layer.input_size, layer.hidden_size, **kw)
    return _load_torch(m, layer.params).train(layer.training)


def _embedding_to_torch(e: Embedding):
    torch = _torch()
    m = torch.nn.Embedding(e.num_embeddings, e.embedding_dim, padding_idx=e.padding_idx,
                           dtype=_torch_dtype(e.dtype))
    return _load_torch(m, e.params)


def _linear_to_torch(lin: Linear):
    torch = _torch()
    m = torch.nn.Linear(lin.in_features, lin.out_features, bias="bias" in lin.params,
                        dtype=_torch_dtype(lin.dtype))
    return _load_torch(m, lin.params)


def _lm_to_torch(model):
    cfg = model.cfg
    m = torch_language_model_class()(cfg.vocab_size, cfg.cell, cfg.embed, cfg.hidden, cfg.layers,
                                     cfg.dropout, dtype=_torch_dtype(np.dtype(cfg.dtype)))
    return _load_torch(m, model.state_dict()).train(model.training)


def _forecast_net_to_torch(net):
    cfg = net.cfg.to_json()
    m = torch_forecast_net_class()(**{**cfg, "dtype": _torch_dtype(np.dtype(cfg["dtype"]))})
    return _load_torch(m, net.state_dict()).train(net.training)


# rnnkit class (module.qualname) -> converter; a new model kind adds one entry here
TO_TORCH: dict[str, Callable[[Any], Any]] = {
    "rnnkit.nn.recurrent.RNN": _recurrent_to_torch,
    "rnnkit.nn.recurrent.LSTM": _recurrent_to_torch,
    "rnnkit.nn.recurrent.GRU": _recurrent_to_torch,
    "rnnkit.nn.layers.Embedding": _embedding_to_torch,
    "rnnkit.nn.layers.Linear": _linear_to_torch,
    "rnnkit.apps.lm.model.LanguageModel": _lm_to_torch,
    "rnnkit.apps.forecast.model.ForecastNet": _forecast_net_to_torch,
}


def _converter(table: dict, obj, what: str):
    for cls in type(obj).__mro__:
        fn = table.get(f"{cls.__module__}.{cls.__qualname__}")
        if fn is not None:
            return fn
    raise ValueError(f"{what}: no converter for {type(obj).__name__}; supported: "
                     + ", ".join(sorted(k.rsplit('.', 1)[1] for k in table)))


def to_torch(module: Module):
    """The torch equivalent of an rnnkit layer or model, with the same weights and dtype.

    Recurrent layers become ``nn.RNN / nn.LSTM / nn.GRU`` with ``batch_first=True``;
    a language model becomes a ``TorchLanguageModel``, a forecasting network a
    ``TorchForecastNet``.  Raises ValueError for what torch cannot express (a GRU with
    ``reset_after=False``).
    """
    return _converter(TO_TORCH, module, "to_torch")(module)


# ------------------------------------------------------------------------------------------
# torch -> rnnkit
# ------------------------------------------------------------------------------------------
def _recurrent_from_torch(m, dtype):
    torch = _torch()
    kw = dict(num_layers=m.num_layers, bias=m.bias, bidirectional=m.bidirectional,
              dropout=float(m.dropout), dtype=dtype)
    if isinstance(m, torch.nn.LSTM):
        layer = LSTM(m.input_size, m.hidden_size, proj_size=m.proj_size, **kw)
    elif isinstance(m, torch.nn.GRU):
        layer = GRU(m.input_size, m.hidden_size, **kw)
    elif isinstance(m, torch.nn.RNN):
        layer = RNN(m.input_size, m.hidden_size, nonlinearity=m.nonlinearity, **kw)
    else:
        raise ValueError(f"from_torch: unsupported recurrent module {type(m).__name__}")
    layer.load_state_dict(_numpy_state(m, dtype))
    return layer.train(m.training)


def from_torch(module, *, dtype=None) -> Module:
    """The rnnkit equivalent of a torch module, with the same weights.

    Accepts ``nn.RNN / nn.LSTM / nn.GRU`` (any ``batch_first``; the rnnkit layer is batch-first),
    ``nn.Embedding``, ``nn.Linear``, a ``TorchLanguageModel`` and a ``TorchForecastNet``.
    ``dtype`` (float32 or float64) defaults to the torch parameters' dtype.
    """
    torch = _torch()
    dt = _dtype_of(module, dtype)
    if np.dtype(dt).name not in _NUMPY_DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {np.dtype(dt)}")
    if isinstance(module, torch.nn.RNNBase):
        return _recurrent_from_torch(module, dt)
    if isinstance(module, torch.nn.Embedding):
        e = Embedding(module.num_embeddings, module.embedding_dim, module.padding_idx, dtype=dt)
        e.load_state_dict(_numpy_state(module, dt))
        return e
    if isinstance(module, torch.nn.Linear):
        lin = Linear(module.in_features, module.out_features, bias=module.bias is not None, dtype=dt)
        lin.load_state_dict(_numpy_state(module, dt))
        return lin
    if isinstance(module, torch_language_model_class()):
        return _lm_from_torch(module, dt)
    if isinstance(module, torch_forecast_net_class()):
        return _forecast_net_from_torch(module, dt)
    raise ValueError(f"from_torch: unsupported module {type(module).__name__}; supported: "
                     "nn.RNN, nn.LSTM, nn.GRU, nn.Embedding, nn.Linear, TorchLanguageModel, "
                     "TorchForecastNet")


def _lm_from_torch(m, dtype):
    from ..apps.lm.model import LanguageModel, ModelConfig

    cfg = ModelConfig(vocab_size=m.embed.num_embeddings, cell=m.cell, embed=m.embed.embedding_dim,
                      hidden=m.rnn.hidden_size, layers=m.rnn.num_layers, dropout=float(m.drop.p),
                      dtype=np.dtype(dtype).name)
    return _with_weights_of(LanguageModel(cfg, np.random.default_rng(0)), m, dtype)


def _forecast_net_from_torch(m, dtype):
    from ..apps.forecast.model import ForecastNet, NetConfig

    cfg = NetConfig(**{**m.config, "dtype": np.dtype(dtype).name})
    return _with_weights_of(ForecastNet(cfg, np.random.default_rng(0)), m, dtype)


def _with_weights_of(model: Module, m, dtype) -> Module:
    """``model`` with the torch module ``m``'s weights (as ``dtype``) and train/eval mode."""
    model.load_state_dict(_numpy_state(m, dtype))
    return model.train(m.training)


# ------------------------------------------------------------------------------------------
# the torch twins of the language model and the forecasting network
# ------------------------------------------------------------------------------------------
def _torch_rnn(cell: str, input_size: int, hidden: int, layers: int, dropout: float, dtype):
    """A batch-first ``nn.LSTM / nn.GRU / nn.RNN`` (tanh) by rnnkit's cell name."""
    torch = _torch()
    cells = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}
    if cell not in cells:
        raise ValueError(f"cell must be one of {sorted(cells)}, got {cell!r}")
    # torch warns that dropout does nothing with one layer: pass it only where it acts
    return cells[cell](input_size, hidden, num_layers=layers, batch_first=True,
                       dropout=dropout if layers > 1 else 0.0, dtype=dtype)


@functools.cache
def torch_language_model_class():
    """``TorchLanguageModel``: torch's twin of ``rnnkit.apps.lm.model.LanguageModel``.

    ``TorchLanguageModel(vocab_size, cell, embed, hidden, layers, dropout, dtype=torch.float32)``;
    ``forward(ids (N, T) long, state=None) -> (logits (N, T, V), state)``, the same
    Embedding -> RNN/LSTM/GRU (batch-first) -> Dropout -> Linear, with the same parameter names
    (``embed.weight``, ``rnn.weight_ih_l0``, ..., ``head.weight``, ``head.bias``).  Created on first
    use so that importing rnnkit never imports torch.  Save it with ``torch.save(m.state_dict())``.
    """
    torch = _torch()

    class TorchLanguageModel(torch.nn.Module):
        def __init__(self, vocab_size: int, cell: str, embed: int, hidden: int, layers: int,
                     dropout: float, dtype=torch.float32) -> None:
            super().__init__()
            self.cell = cell
            self.embed = torch.nn.Embedding(vocab_size, embed, dtype=dtype)
            self.rnn = _torch_rnn(cell, embed, hidden, layers, dropout, dtype)
            self.drop = torch.nn.Dropout(dropout)
            self.head = torch.nn.Linear(hidden, vocab_size, dtype=dtype)

        def forward(self, ids, state=None):
            y, state = self.rnn(self.embed(ids), state)  # (N, T, H)
            return self.head(self.drop(y)), state

    return TorchLanguageModel


@functools.cache
def torch_forecast_net_class():
    """``TorchForecastNet``: torch's twin of ``rnnkit.apps.forecast.model.ForecastNet``.

    ``TorchForecastNet(input_size, extra_size, horizon, cell="lstm", hidden=32, layers=1,
    dropout=0.0, var_floor=1e-4, dtype=torch.float32)`` (the fields of ``NetConfig``);
    ``forward(x (N, T, F), extra (N, E)) -> (mean (N, H), var (N, H))``::

        h = RNN(x)[:, -1];  o = head([h, extra]);  mean = o[:, :H]
        var = softplus(o[:, H:]) + var_floor

    with the same parameter names (``rnn.weight_ih_l0``, ..., ``head.weight``, ``head.bias``).
    Its inputs are scaled windows (see ``rnnkit.apps.forecast.train.assemble``).  Created on first
    use so that importing rnnkit never imports torch.
    """
    torch = _torch()

    class TorchForecastNet(torch.nn.Module):
        def __init__(self, input_size: int, extra_size: int, horizon: int, cell: str = "lstm",
                     hidden: int = 32, layers: int = 1, dropout: float = 0.0,
                     var_floor: float = 1e-4, dtype=torch.float32) -> None:
            super().__init__()
            # what rebuilds the rnnkit network (from_torch): NetConfig's fields but dtype
            self.config = dict(input_size=input_size, extra_size=extra_size, horizon=horizon,
                               cell=cell, hidden=hidden, layers=layers, dropout=dropout,
                               var_floor=var_floor)
            self.horizon, self.var_floor = horizon, var_floor
            self.rnn = _torch_rnn(cell, input_size, hidden, layers, dropout, dtype)
            self.head = torch.nn.Linear(hidden + extra_size, 2 * horizon, dtype=dtype)

        def forward(self, x, extra):
            y, _ = self.rnn(x)                                       # (N, T, hidden)
            o = self.head(torch.cat([y[:, -1], extra], dim=1))       # (N, 2H)
            H = self.horizon
            return o[:, :H], torch.nn.functional.softplus(o[:, H:]) + self.var_floor

    return TorchForecastNet

"""PyTorch <-> rnnkit: layers and whole models, weights copied by name.

rnnkit keeps torch's parameter names, shapes and gate orders, so a recurrent layer converts by
copying its ``state_dict``; nothing is permuted.  Supported both ways:

=====================================  =============================================================
torch                                  rnnkit
=====================================  =============================================================
``nn.RNN / nn.LSTM / nn.GRU``          ``RNN / LSTM / GRU`` (layers, directions, ``proj_size``, bias)
``nn.Embedding``, ``nn.Linear``        ``Embedding``, ``Linear``
an application's model                 its torch twin (registered by the application)
=====================================  =============================================================

The applications' twins (``rnnkit.apps.lm.export.torch_language_model_class()``,
``rnnkit.apps.forecast.export.torch_forecast_net_class()``, ...) are plain torch modules built
from ``nn.Embedding``, ``nn.RNN / LSTM / GRU`` and ``nn.Linear`` with rnnkit's parameter names;
each application registers them with `register_torch`, so this module never imports one.

rnnkit is always batch-first; ``to_torch`` builds recurrent layers with ``batch_first=True``,
and ``from_torch`` accepts either setting (the weights are the same).  Outputs are equal after
conversion (``tests/interop/test_interop_torch.py``).  torch is imported inside the functions.

A new model kind plugs in with ``register_torch(cls, to_torch, twin, from_torch)``.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..nn import GRU, LSTM, RNN, Embedding, Linear, Module

_NUMPY_DTYPES = ("float32", "float64")


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------
def require_torch():
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


def copy_to_torch(module, params: dict[str, np.ndarray]):
    """Copy NumPy arrays into a torch module by name (strict: every name must match)."""
    torch = require_torch()
    module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in params.items()}, strict=True)
    return module


def torch_dtype(dtype: np.dtype):
    return getattr(require_torch(), np.dtype(dtype).name)


# ------------------------------------------------------------------------------------------
# rnnkit -> torch
# ------------------------------------------------------------------------------------------
def _recurrent_to_torch(layer):
    torch = require_torch()
    if isinstance(layer, GRU) and not layer.reset_after:
        raise ValueError("torch's nn.GRU has no reset_after=False form (reset gate before the "
                         "recurrent matmul); only reset_after=True GRUs convert to torch")
    cls = (torch.nn.LSTM if isinstance(layer, LSTM) else
           torch.nn.GRU if isinstance(layer, GRU) else torch.nn.RNN)
    kw = dict(num_layers=layer.num_layers, bias=layer.bias, batch_first=True,
              # torch warns that dropout does nothing with one layer: pass it only where it acts
              dropout=layer.dropout if layer.num_layers > 1 else 0.0,
              bidirectional=layer.bidirectional, dtype=torch_dtype(layer.dtype))
    if isinstance(layer, RNN):
        kw["nonlinearity"] = layer.nonlinearity
    if isinstance(layer, LSTM):
        kw["proj_size"] = layer.proj_size
    m = cls(layer.input_size, layer.hidden_size, **kw)
    return copy_to_torch(m, layer.params).train(layer.training)


def _embedding_to_torch(e: Embedding):
    torch = require_torch()
    m = torch.nn.Embedding(e.num_embeddings, e.embedding_dim, padding_idx=e.padding_idx,
                           dtype=torch_dtype(e.dtype))
    return copy_to_torch(m, e.params)


def _linear_to_torch(lin: Linear):
    torch = require_torch()
    m = torch.nn.Linear(lin.in_features, lin.out_features, bias="bias" in lin.params,
                        dtype=torch_dtype(lin.dtype))
    return copy_to_torch(m, lin.params)


def qualname(cls: type) -> str:
    """The key of a class in the registries: ``module.QualifiedName``."""
    return f"{cls.__module__}.{cls.__qualname__}"


# rnnkit class -> converter to torch; the layers are here, applications register their models
TO_TORCH: dict[str, Callable[[Any], Any]] = {
    **{qualname(cls): _recurrent_to_torch for cls in (RNN, LSTM, GRU)},
    qualname(Embedding): _embedding_to_torch,
    qualname(Linear): _linear_to_torch,
}
# torch class (by qualified name) -> converter from torch(module, dtype); filled by applications
# for their torch twins (the torch.nn layers are handled in `from_torch` itself)
FROM_TORCH: dict[str, Callable[[Any, Any], Module]] = {}


def register_torch(cls: type, to_torch: Callable[[Any], Any], twin: str,
                   from_torch: Callable[[Any, Any], Module]) -> None:
    """Register an application's model: ``to_torch(model)`` builds its torch twin, whose class
    is named ``twin`` (``module.QualifiedName``), and ``from_torch(twin, dtype)`` converts back."""
    TO_TORCH[qualname(cls)] = to_torch
    FROM_TORCH[twin] = from_torch


def _converter(table: dict, cls: type, what: str):
    for c in cls.__mro__:
        fn = table.get(qualname(c))
        if fn is not None:
            return fn
    raise ValueError(f"{what}: no converter for {cls.__name__}; supported: "
                     + ", ".join(sorted(k.rsplit('.', 1)[1] for k in table)))


def to_torch(module: Module):
    """The torch equivalent of an rnnkit layer or model, with the same weights and dtype.

    Recurrent layers become ``nn.RNN / nn.LSTM / nn.GRU`` with ``batch_first=True``; an
    application's model becomes its registered twin (a language model a ``TorchLanguageModel``).
    Raises ValueError for what torch cannot express (a GRU with ``reset_after=False``).
    """
    return _converter(TO_TORCH, type(module), "to_torch")(module)


# ------------------------------------------------------------------------------------------
# torch -> rnnkit
# ------------------------------------------------------------------------------------------
def _recurrent_from_torch(m, dtype):
    torch = require_torch()
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
    ``nn.Embedding``, ``nn.Linear`` and the twins the applications register
    (``TorchLanguageModel``, ``TorchForecastNet``, ...).
    ``dtype`` (float32 or float64) defaults to the torch parameters' dtype.
    """
    torch = require_torch()
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
    if any(qualname(c) in FROM_TORCH for c in type(module).__mro__):
        return _converter(FROM_TORCH, type(module), "from_torch")(module, dt)
    raise ValueError(f"from_torch: unsupported module {type(module).__name__}; supported: "
                     "nn.RNN, nn.LSTM, nn.GRU, nn.Embedding, nn.Linear, "
                     + ", ".join(sorted(k.rsplit('.', 1)[1] for k in FROM_TORCH)))


def with_weights_of(model: Module, m, dtype) -> Module:
    """``model`` with the torch module ``m``'s weights (as ``dtype``) and train/eval mode."""
    model.load_state_dict(_numpy_state(m, dtype))
    return model.train(m.training)


def torch_rnn(cell: str, input_size: int, hidden: int, layers: int, dropout: float, dtype):
    """A batch-first ``nn.LSTM / nn.GRU / nn.RNN`` (tanh) by rnnkit's cell name."""
    torch = require_torch()
    cells = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}
    if cell not in cells:
        raise ValueError(f"cell must be one of {sorted(cells)}, got {cell!r}")
    # torch warns that dropout does nothing with one layer: pass it only where it acts
    return cells[cell](input_size, hidden, num_layers=layers, batch_first=True,
                       dropout=dropout if layers > 1 else 0.0, dtype=dtype)

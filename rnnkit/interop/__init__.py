"""Interoperability: PyTorch and Keras weights in, PyTorch and ONNX out.

* ``rnnkit.interop.torch``: ``from_torch(module)``, ``to_torch(layer_or_model)``
* ``rnnkit.interop.keras``: ``load(path)``, ``load_layers(path)``, ``stack(layers)`` for Keras 3
  ``.keras`` / ``.weights.h5`` files, read with h5py alone
* ``rnnkit.interop.onnx``: ``export(module, path, opset=None)``, ``to_onnx(module)``
* ``rnnkit.interop.gates``: the one table of gate orders and permutations

These modules import only NumPy; torch, h5py and onnx are imported inside the functions that use
them (install the extras ``rnnkit[torch]``, ``rnnkit[keras]``, ``rnnkit[onnx]``).
"""
from .keras import load as load_keras
from .keras import load_layers as load_keras_layers
from .onnx import export as export_onnx
from .torch import from_torch, to_torch

__all__ = ["from_torch", "to_torch", "load_keras", "load_keras_layers", "export_onnx"]

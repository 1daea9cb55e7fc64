"""The language model's exporters: ONNX graph and torch twin, registered with rnnkit.interop.

Imported by ``rnnkit.apps.lm`` itself, so a language model always exports; onnx and torch are
imported only when a conversion runs.
"""
from __future__ import annotations

import functools

import numpy as np

from ...nn import LSTM
from ...interop import onnx as _onnx
from ...interop import torch as _torch
from ...interop.onnx import Graph, recurrent_stack
from ...interop.torch import copy_to_torch, require_torch, torch_dtype, torch_rnn, with_weights_of
from .generate import TextModel
from .model import LanguageModel, ModelConfig


def _build_language_model(g: Graph, model, options: dict) -> None:
    """ids -> Embedding -> recurrent stack -> Linear; dropout is the identity at inference."""
    T = g.onnx.TensorProto
    rnn, cfg = model.rnn, model.cfg
    L, H, V = rnn.num_layers, rnn.hidden_size, cfg.vocab_size
    ids = g.input("ids", T.INT64, ["N", "T"])
    h0 = g.input("h0", T.FLOAT, [L, "N", H])
    c0 = g.input("c0", T.FLOAT, [L, "N", H]) if isinstance(rnn, LSTM) else ""
    ids_tm = g.op("Transpose", [ids], base="ids_tm", perm=[1, 0])  # (T, N)
    emb = g.const("embed_weight", np.asarray(model.embed.params["weight"], np.float32))
    x_tm = g.op("Gather", [emb, ids_tm], base="embedded", axis=0)  # (T, N, E)
    y_tm, h_n, c_n = recurrent_stack(g, rnn, x_tm, "", h0, c0)
    head = model.head.params
    logits = g.op("MatMul", [y_tm, g.const("head_weight_t",
                                           np.asarray(head["weight"], np.float32).T)], base="head")
    if "bias" in head:
        logits = g.op("Add", [logits, g.const("head_bias", np.asarray(head["bias"], np.float32))],
                      base="head_bias_add")
    logits = g.op("Transpose", [logits], base="logits_bf", perm=[1, 0, 2])  # (N, T, V)
    g.output("logits", logits, T.FLOAT, ["N", "T", V])
    g.output("h_n", h_n, T.FLOAT, [L, "N", H])
    if c_n is not None:
        g.output("c_n", c_n, T.FLOAT, [L, "N", H])


def _build_text_model(g: Graph, model: TextModel, options: dict) -> None:
    """A loaded run (``rnnkit.load``): its language model's graph."""
    _build_language_model(g, model.model, options)


@functools.cache
def torch_language_model_class():
    """``TorchLanguageModel``: torch's twin of ``rnnkit.apps.lm.model.LanguageModel``.

    ``TorchLanguageModel(vocab_size, cell, embed, hidden, layers, dropout, dtype=torch.float32)``;
    ``forward(ids (N, T) long, state=None) -> (logits (N, T, V), state)``, the same
    Embedding -> RNN/LSTM/GRU (batch-first) -> Dropout -> Linear, with the same parameter names
    (``embed.weight``, ``rnn.weight_ih_l0``, ..., ``head.weight``, ``head.bias``).  Created on first
    use so that importing rnnkit never imports torch.  Save it with ``torch.save(m.state_dict())``.
    """
    torch = require_torch()

    class TorchLanguageModel(torch.nn.Module):
        def __init__(self, vocab_size: int, cell: str, embed: int, hidden: int, layers: int,
                     dropout: float, dtype=torch.float32) -> None:
            super().__init__()
            self.cell = cell
            self.embed = torch.nn.Embedding(vocab_size, embed, dtype=dtype)
            self.rnn = torch_rnn(cell, embed, hidden, layers, dropout, dtype)
            self.drop = torch.nn.Dropout(dropout)
            self.head = torch.nn.Linear(hidden, vocab_size, dtype=dtype)

        def forward(self, ids, state=None):
            y, state = self.rnn(self.embed(ids), state)  # (N, T, H)
            return self.head(self.drop(y)), state

    TorchLanguageModel.__module__, TorchLanguageModel.__qualname__ = __name__, "TorchLanguageModel"
    return TorchLanguageModel


def _lm_to_torch(model: LanguageModel):
    cfg = model.cfg
    m = torch_language_model_class()(cfg.vocab_size, cfg.cell, cfg.embed, cfg.hidden, cfg.layers,
                                     cfg.dropout, dtype=torch_dtype(np.dtype(cfg.dtype)))
    return copy_to_torch(m, model.state_dict()).train(model.training)


def _lm_from_torch(m, dtype) -> LanguageModel:
    cfg = ModelConfig(vocab_size=m.embed.num_embeddings, cell=m.cell, embed=m.embed.embedding_dim,
                      hidden=m.rnn.hidden_size, layers=m.rnn.num_layers, dropout=float(m.drop.p),
                      dtype=np.dtype(dtype).name)
    return with_weights_of(LanguageModel(cfg, np.random.default_rng(0)), m, dtype)


_onnx.register_exporter(LanguageModel, _build_language_model)
_onnx.register_exporter(TextModel, _build_text_model)
_torch.register_torch(LanguageModel, _lm_to_torch, f"{__name__}.TorchLanguageModel", _lm_from_torch)

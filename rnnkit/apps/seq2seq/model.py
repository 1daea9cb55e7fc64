"""The attention encoder-decoder: a (bi)GRU/LSTM encoder and a decoder of cells stepping with attention.

Shapes: N sentences, S source and T target positions, E embedding size, H hidden units,
D = 2 for a bidirectional encoder (else 1), M = D*H memory size, L layers, V target vocabulary::

    memory, final = Encoder(SrcEmbed(src), lengths)              (N, S, M); final (L*D, N, H)
    h0_l          = tanh(W_b [final_l,fwd; final_l,bwd] + b_b)    (N, H) per decoder layer l
    c0_l          = 0                                              (LSTM)
    for t = 1..T:                                                  (teacher forcing: y_{t-1} given)
        context_t, a_t = Attention(h_{t-1}^top, memory, mask)     (N, M), (N, S)
        x = [TgtEmbed(y_{t-1}); context_t]                         (N, E + M)
        h_t^l = Cell_l(x, h_{t-1}^l); x = h_t^l                    (N, H)
    o_t      = tanh(W_c [h_t^top; context_t] + b_c)               (N, H)   (Luong's attentional state)
    logits_t = W_o o_t + b_o                                      (N, V)

Bahdanau's additive score and Luong's dot / general scores all use the previous decoder state
as the query (Bahdanau's timing; Luong's paper queries with the new state) so that one decoder
serves every score.  ``attention="none"`` is the plain encoder-decoder: no context, the
encoder's final state alone carries the sentence.  The loop over target positions is the only
Python loop; everything is vectorised over the batch, and the output layers run once over all
T positions after the loop.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ...nn import (Dropout, Embedding, Linear, Module, log_softmax, recurrent_cell,
                   recurrent_layer)
from ...nn.attention import Attention, lengths_mask

PAD, BOS, EOS, UNK = 0, 1, 2, 3  # special ids shared by both vocabularies
ATTENTIONS = ("bahdanau", "luong", "none")


@dataclass
class ModelConfig:
    """Sizes of a `Seq2Seq` (saved in checkpoints; the defaults live in the translate settings)."""

    src_vocab: int
    tgt_vocab: int
    cell: str
    embed: int
    hidden: int
    layers: int
    bidirectional: bool
    attention: str
    score: str  # Luong's score when attention == "luong": general or dot
    dtype: str
    dropout: float = 0.0  # between encoder layers and before the output layer

    def to_json(self) -> dict:
        return asdict(self)


class Seq2Seq(Module):
    """Encoder-decoder with attention; ``forward(src, src_len, tgt_in) -> logits (N, T, V)``.

    ``src`` (N, S) and ``tgt_in`` (N, T) are int ids padded with PAD; ``tgt_in`` starts with BOS.
    ``feed`` (optional, (N, T) bool): where False the decoder reads its own previous greedy
    prediction instead of ``tgt_in`` (scheduled sampling / a teacher-forcing ratio below 1).
    ``backward(dlogits)`` accumulates every parameter gradient.
    """

    def __init__(self, cfg: ModelConfig, rng: np.random.Generator,
                 dropout_rng: np.random.Generator | None = None) -> None:
        super().__init__()
        if cfg.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {cfg.attention!r}")
        if cfg.layers < 1 or cfg.hidden < 1 or cfg.embed < 1:
            raise ValueError("layers, hidden and embed must be >= 1")
        self.cfg = cfg
        dt = self.dtype = np.dtype(cfg.dtype)
        H, E, L = cfg.hidden, cfg.embed, cfg.layers
        D = 2 if cfg.bidirectional else 1
        self.M = M = D * H
        self.src_embed = Embedding(cfg.src_vocab, E, padding_idx=PAD, dtype=dt, rng=rng)
        self.encoder = recurrent_layer(cfg.cell, E, H, num_layers=L, bidirectional=cfg.bidirectional,
                                          dropout=cfg.dropout, dtype=dt, rng=rng)
        self.bridge = Linear(D * H, H, dtype=dt, rng=rng)
        self.tgt_embed = Embedding(cfg.tgt_vocab, E, padding_idx=PAD, dtype=dt, rng=rng)
        self.C = C = 0 if cfg.attention == "none" else M  # context size fed to the decoder
        if cfg.attention != "none":
            score = "bahdanau" if cfg.attention == "bahdanau" else cfg.score
            self.attention = Attention(H, M, H, score=score, dtype=dt, rng=rng)
        self.cells = [recurrent_cell(cfg.cell, E + C if l == 0 else H, H, dtype=dt, rng=rng)
                      for l in range(L)]
        self.combine = Linear(H + C, H, dtype=dt, rng=rng)
        self.drop = Dropout(cfg.dropout)
        self.out = Linear(H, cfg.tgt_vocab, dtype=dt, rng=rng)
        self.lstm = cfg.cell == "lstm"
        self.set_rng(dropout_rng if dropout_rng is not None else np.random.default_rng())

    def set_rng(self, rng: np.random.Generator) -> None:
        """One generator for every dropout mask (its state goes into checkpoints)."""
        self.rng = self.encoder.rng = self.drop.rng = rng

    # -- the encoder ---------------------------------------------------------------------------
    def encode(self, src, src_len):
        """-> (memory (N, S, M), mask (N, S), keys or None, decoder state: list per layer)."""
        src = np.asarray(src)
        src_len = np.asarray(src_len, np.int64)
        if src.ndim != 2 or src_len.shape != (src.shape[0],):
            raise ValueError(f"src must be (N, S) ids and src_len (N,), got {src.shape}, {src_len.shape}")
        if np.any(src_len < 1) or np.any(src_len > src.shape[1]):
            raise ValueError("every source needs 1 <= length <= S tokens")
        memory, final = self.encoder.forward(self.src_embed.forward(src), lengths=src_len)
        h_final = final[0] if self.lstm else final  # (L*D, N, H)
        L, H = self.cfg.layers, self.cfg.hidden
        N = src.shape[0]
        D = h_final.shape[0] // L
        cat = h_final.reshape(L, D, N, H).transpose(0, 2, 1, 3).reshape(L, N, D * H)
        h0 = np.tanh(self.bridge.forward(cat))  # (L, N, H)
        self._push(h0)
        state = [(h0[l], np.zeros_like(h0[l])) if self.lstm else h0[l] for l in range(L)]
        mask = lengths_mask(src_len, src.shape[1])
        keys = self.attention.prepare(memory) if self.C else None
        return memory, mask, keys, state

    def _encode_backward(self, dmemory, dh0):
        """dh0 (L, N, H): gradient for the bridged initial decoder states."""
        h0 = self._pop()
        dcat = self.bridge.backward(dh0 * (1 - h0 * h0))  # (L, N, D*H)
        L, N, DH = dcat.shape
        H = self.cfg.hidden
        D = DH // H
        dh_final = dcat.reshape(L, N, D, H).transpose(0, 2, 1, 3).reshape(L * D, N, H)
        dstate = (dh_final, np.zeros_like(dh_final)) if self.lstm else dh_final
        dx, _ = self.encoder.backward(dmemory, dstate)
        self.src_embed.backward(dx)

    # -- one decoder step (training and decoding) ----------------------------------------------
    def step(self, emb, memory, mask, keys, state):
        """emb (N, E) -> (top hidden (N, H), context (N, C) or None, weights or None, new state)."""
        top = state[-1][0] if self.lstm else state[-1]
        if self.C:
            context, weights = self.attention.step(top, memory, keys, mask)
            x = np.concatenate([emb, context], axis=1)  # (N, E + M)
        else:
            context = weights = None
            x = emb
        new = []
        for cell, s in zip(self.cells, state):
            s = cell.forward(x, s)
            new.append(s)
            x = s[0] if self.lstm else s
        return x, context, weights, new

    def head(self, h, context):
        """logits (..., V) from the top hidden state and the context."""
        z = h if context is None else np.concatenate([h, context], axis=-1)
        o = np.tanh(self.combine.forward(z))
        self._push(o)
        return self.out.forward(self.drop.forward(o))

    def _head_backward(self, dlogits):
        o = self._pop()
        dz = self.combine.backward(self.drop.backward(self.out.backward(dlogits)) * (1 - o * o))
        H = self.cfg.hidden
        return dz[..., :H], (dz[..., H:] if self.C else None)

    # -- training ------------------------------------------------------------------------------
    def forward(self, src, src_len, tgt_in, feed=None):
        tgt_in = np.asarray(tgt_in)
        memory, mask, keys, state = self.encode(src, src_len)
        N, T = tgt_in.shape
        emb_all = self.tgt_embed.forward(tgt_in)  # (N, T, E)
        H = self.cfg.hidden
        hs = np.empty((N, T, H), self.dtype)
        ctxs = np.empty((N, T, self.C), self.dtype) if self.C else None
        prev_pred = None
        W = self.tgt_embed.params["weight"]
        own = []
        for t in range(T):
            emb = emb_all[:, t]
            if feed is not None and t > 0 and not feed[:, t].all():
                # the rows not fed the truth read the model's own previous prediction; the
                # prediction is an argmax (a constant), so only the embedding row gets a gradient
                use = ~feed[:, t]
                emb = emb.copy()
                emb[use] = W[prev_pred[use]]
                own.append((t, use, prev_pred[use]))
            h, ctx, _, state = self.step(emb, memory, mask, keys, state)
            hs[:, t] = h
            if self.C:
                ctxs[:, t] = ctx
            if feed is not None:
                prev_pred = self._greedy(h, ctx)
        self._push((N, T, memory.shape, own))
        return self.head(hs, ctxs)

    def _greedy(self, h, ctx):
        """Argmax prediction from one step's outputs without caching anything."""
        z = h if ctx is None else np.concatenate([h, ctx], axis=1)
        o = np.tanh(z @ self.combine.params["weight"].T + self.combine.params["bias"])
        return np.argmax(o @ self.out.params["weight"].T + self.out.params["bias"], axis=1)

    def backward(self, dlogits):
        dlogits = np.asarray(dlogits, self.dtype)
        dhs, dctxs = self._head_backward(dlogits)
        N, T, mshape, own = self._pop()
        L, H, E = self.cfg.layers, self.cfg.hidden, self.cfg.embed
        dmemory = np.zeros(mshape, self.dtype)
        dkeys = None
        dh = [np.zeros((N, H), self.dtype) for _ in range(L)]
        dc = [np.zeros((N, H), self.dtype) for _ in range(L)] if self.lstm else None
        demb = np.empty((N, T, E), self.dtype)
        for t in reversed(range(T)):
            dx = dhs[:, t]
            for l in reversed(range(L)):
                g = dh[l] + dx
                if self.lstm:
                    dx, (dh[l], dc[l]) = self.cells[l].backward(g, dc[l])
                else:
                    dx, dh[l] = self.cells[l].backward(g)
            demb[:, t] = dx[:, :E]
            if self.C:
                dq, dm, dk = self.attention.step_backward(dctxs[:, t] + dx[:, E:])
                dmemory += dm
                dkeys = dk if dkeys is None else dkeys + dk
                dh[-1] = dh[-1] + dq  # the query was the previous top hidden state
        if own:  # embedding rows read for the model's own predictions
            W_grad = self.tgt_embed.grads["weight"]
            for t, use, ids in own:
                real = ids != PAD  # the padding row is a constant, as in Embedding
                np.add.at(W_grad, ids[real], demb[use, t][real])
                demb[use, t] = 0
        self.tgt_embed.backward(demb)
        if self.C:
            dmemory += self.attention.prepare_backward(dkeys)
        self._encode_backward(dmemory, np.stack(dh))
        return None

    # -- inference -----------------------------------------------------------------------------
    def start(self, src, src_len):
        """Encode for decoding (call inside ``no_grad()``): the decoder's starting context."""
        memory, mask, keys, state = self.encode(src, src_len)
        return {"memory": memory, "mask": mask, "keys": keys, "state": state}

    def decode_step(self, ids, ctx):
        """ids (B,) previous tokens -> (log-probabilities (B, V) float64, weights, new state)."""
        emb = self.tgt_embed.params["weight"][ids]
        h, context, weights, state = self.step(emb, ctx["memory"], ctx["mask"], ctx["keys"], ctx["state"])
        logits = self.head(h, context)
        self.clear_caches()
        return log_softmax(logits.astype(np.float64)), weights, state


def select(ctx: dict, rows: np.ndarray) -> dict:
    """The decoding context restricted to / reordered by ``rows`` (beam search bookkeeping)."""
    def take(s):
        return tuple(a[rows] for a in s) if isinstance(s, tuple) else s[rows]
    return {"memory": ctx["memory"][rows], "mask": ctx["mask"][rows],
            "keys": None if ctx["keys"] is None else ctx["keys"][rows],
            "state": [take(s) for s in ctx["state"]]}

"""Keras 3 recurrent weights -> rnnkit layers, read with h5py alone (no TensorFlow, no Keras).

Reads ``SimpleRNN``, ``LSTM`` and ``GRU`` layers (``reset_after`` True or False), plain or
wrapped in ``Bidirectional``, from

* a ``.keras`` file (a zip of ``config.json`` + ``model.weights.h5``): the config says each
  layer's options (activation, ``reset_after``, ``merge_mode``, ``return_sequences``...), and
  every option rnnkit cannot reproduce is refused with a clear error;
* a ``.weights.h5`` file (``model.save_weights``): weights only.  The layer kind and GRU
  ``reset_after`` follow from the array shapes; what the file does not record is assumed to be
  Keras's default (tanh; Bidirectional ``merge_mode="concat"``) or given as an argument
  (``nonlinearity="relu"`` for a relu SimpleRNN; ``reset_after`` for a GRU without bias).

Keras -> torch/rnnkit layout: ``kernel`` (I, gH) and ``recurrent_kernel`` (H, gH) are transposed
and re-stacked from Keras's gate order (GRU z, r, h) to torch's (r, z, n) with ``gates.py``;
Keras's single LSTM / SimpleRNN bias becomes ``bias_ih`` (``bias_hh`` = 0); a ``reset_after``
GRU's bias (2, 3H) is [input; recurrent] = [``bias_ih``; ``bias_hh``]; a ``reset_after=False``
GRU becomes ``rnnkit.GRU(..., reset_after=False)`` with ``bias_ih`` = its bias, ``bias_hh`` = 0.

Only the recurrent layers are read (Dense, Embedding... are left to the user), from the top
level of the model.  Keras masking repeats the last valid output into padded steps, where
rnnkit (like torch and ONNX) puts zeros: compare valid steps only.
"""
from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..nn import GRU, LSTM, RNN, Module
from .gates import permutation, permute_blocks

# Keras layer classes read here, by the snake-case name Keras gives their weight group
KINDS = {"SimpleRNN": "rnn", "LSTM": "lstm", "GRU": "gru"}
GATES = {1: "rnn", 4: "lstm", 3: "gru"}  # gH / H -> kind
CLASSES = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
# layers that are the identity at inference: allowed between two layers that ``load`` stacks
PASS_THROUGH = {"Dropout", "SpatialDropout1D", "GaussianDropout", "GaussianNoise", "AlphaDropout",
                "ActivityRegularization"}


def _h5py():
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("reading Keras files needs h5py: pip install 'rnnkit[keras]'") from exc
    return h5py


@dataclass
class _Spec:
    """One Keras recurrent layer as read from the file."""

    name: str
    kind: str
    directions: list  # per direction: [kernel, recurrent_kernel, bias or None]
    nonlinearity: str = "tanh"
    reset_after: bool | None = None
    return_sequences: bool | None = None
    between: list = field(default_factory=list)  # class names of the layers before it


# ------------------------------------------------------------------------------------------
# reading the files
# ------------------------------------------------------------------------------------------
def _snake(name: str) -> str:
    """Keras's ``naming.to_snake_case``: the weight-group name of a layer class."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _vars(group, where: str) -> list[np.ndarray]:
    """The arrays of a ``.../cell/vars`` group in order (kernel, recurrent_kernel[, bias])."""
    if "cell" not in group or "vars" not in group["cell"]:
        raise ValueError(f"{where}: no cell/vars group; not a Keras 3 recurrent layer")
    v = group["cell"]["vars"]
    keys = sorted(v.keys(), key=int)
    if len(keys) not in (2, 3):
        raise ValueError(f"{where}: expected kernel, recurrent_kernel and bias, found {len(keys)} arrays")
    arrays = [np.asarray(v[k]) for k in keys]
    return arrays + [None] * (3 - len(arrays))


def _group_name(group) -> str | None:
    """The Keras layer name some Keras versions store as an attribute of the ``vars`` group."""
    if "vars" in group and "name" in group["vars"].attrs:
        value = group["vars"].attrs["name"]
        return value.decode() if isinstance(value, bytes) else str(value)
    return None


def _open(path: Path):
    """(h5py.File of the weights, config dict or None)."""
    h5py = _h5py()
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if not {"config.json", "model.weights.h5"} <= names:
                raise ValueError(f"{path}: not a Keras 3 .keras file (needs config.json and "
                                 f"model.weights.h5, found {sorted(names)})")
            config = json.loads(z.read("config.json"))
            data = z.read("model.weights.h5")
        return h5py.File(io.BytesIO(data), "r"), config
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path}: neither a .keras zip nor an HDF5 weights file ({exc})") from None
    if "layers" not in f:
        f.close()
        raise ValueError(f"{path}: no 'layers' group: not a Keras 3 .weights.h5 file (the legacy "
                         "Keras 2 .h5 format is not read)")
    return f, None


def _specs_from_config(f, config: dict, path: Path) -> list[_Spec]:
    cfg = config.get("config", {})
    if "layers" not in cfg:
        raise ValueError(f"{path}: the model ({config.get('class_name')}) has no layer list; "
                         "subclassed models are not read")
    used: dict[str, int] = {}
    specs, between = [], []
    for layer in cfg["layers"]:
        cls, lc = layer["class_name"], layer["config"]
        base = _snake(cls)
        used[base] = used.get(base, -1) + 1
        group_name = base if used[base] == 0 else f"{base}_{used[base]}"
        inner = lc.get("layer", {}).get("class_name") if cls == "Bidirectional" else cls
        if inner not in KINDS:
            between.append(cls)
            continue
        name = lc["name"]
        where = f"{path}: layer {name!r}"
        group = f["layers"].get(group_name)
        if group is None or (_group_name(group) not in (None, name)):
            raise ValueError(f"{where}: its weights are not at layers/{group_name} in the file")
        if cls == "Bidirectional":
            if lc.get("merge_mode", "concat") != "concat":
                raise ValueError(f"{where}: Bidirectional merge_mode={lc.get('merge_mode')!r}; "
                                 "rnnkit concatenates the directions (merge_mode='concat')")
            fwd, bwd = lc["layer"]["config"], (lc.get("backward_layer") or lc["layer"])["config"]
            for key in ("units", "activation", "recurrent_activation", "use_bias", "reset_after"):
                if fwd.get(key) != bwd.get(key):
                    raise ValueError(f"{where}: the forward and backward layers differ in {key} "
                                     f"({fwd.get(key)!r} vs {bwd.get(key)!r})")
            if fwd.get("go_backwards"):
                raise ValueError(f"{where}: the forward layer has go_backwards=True")
            directions = [_vars(group["forward_layer"], where), _vars(group["backward_layer"], where)]
            options, return_sequences = fwd, lc.get("return_sequences", fwd.get("return_sequences"))
        else:
            if lc.get("go_backwards"):
                raise ValueError(f"{where}: go_backwards=True (the output runs backwards in time); "
                                 "rnnkit layers run forwards")
            directions, options, return_sequences = [_vars(group, where)], lc, lc.get("return_sequences")
        kind = KINDS[inner]
        act = options.get("activation", "tanh")
        if kind == "rnn" and act not in ("tanh", "relu"):
            raise ValueError(f"{where}: activation {act!r}; rnnkit's RNN has tanh or relu")
        if kind != "rnn" and act != "tanh":
            raise ValueError(f"{where}: activation {act!r}; rnnkit's {kind.upper()} uses tanh")
        if kind != "rnn" and options.get("recurrent_activation", "sigmoid") != "sigmoid":
            raise ValueError(f"{where}: recurrent_activation {options['recurrent_activation']!r}; "
                             "rnnkit's gates use sigmoid")
        specs.append(_Spec(name, kind, directions, nonlinearity=act,
                           reset_after=bool(options.get("reset_after", True)) if kind == "gru" else None,
                           return_sequences=return_sequences, between=between))
        between = []
    return specs


def _natural(name: str):
    base, _, n = re.match(r"^(.*?)(_(\d+))?$", name).groups()
    return base, int(n) if n else 0


def _specs_from_weights(f, path: Path, nonlinearity: str | None,
                        reset_after: bool | None) -> list[_Spec]:
    specs = []
    for group_name in sorted(f["layers"].keys(), key=_natural):
        group, where = f["layers"][group_name], f"{path}: layers/{group_name}"
        if "forward_layer" in group and "backward_layer" in group:
            directions = [_vars(group["forward_layer"], where), _vars(group["backward_layer"], where)]
        elif "cell" in group:
            directions = [_vars(group, where)]
        else:
            continue  # not a recurrent layer
        K, U, b = directions[0]
        H, gH = U.shape
        if U.ndim != 2 or K.ndim != 2 or K.shape[1] != gH or gH % H or gH // H not in GATES:
            raise ValueError(f"{where}: kernel {K.shape} and recurrent_kernel {U.shape} fit no "
                             "SimpleRNN / LSTM / GRU")
        kind = GATES[gH // H]
        ra = None
        if kind == "gru":
            if b is not None:
                ra = b.ndim == 2  # reset_after=True keeps separate input and recurrent biases
                if reset_after is not None and reset_after != ra:
                    raise ValueError(f"{where}: the GRU bias {b.shape} means reset_after={ra}, "
                                     f"but reset_after={reset_after} was given")
            elif reset_after is None:
                raise ValueError(f"{where}: a GRU without bias: the file does not say whether "
                                 "reset_after is True or False; pass reset_after=")
            else:
                ra = reset_after
        specs.append(_Spec(group_name, kind, directions, reset_after=ra,
                           nonlinearity=(nonlinearity or "tanh") if kind == "rnn" else "tanh"))
    return specs


# ------------------------------------------------------------------------------------------
# Keras arrays -> rnnkit layers
# ------------------------------------------------------------------------------------------
def _to_layer(spec: _Spec, dtype) -> Module:
    kind = spec.kind
    p = permutation(kind, "keras", "torch")
    K0, U0, b0 = spec.directions[0]
    I, (H, gH) = K0.shape[0], U0.shape
    kw = dict(bias=b0 is not None, bidirectional=len(spec.directions) == 2, dtype=dtype)
    if kind == "rnn":
        kw["nonlinearity"] = spec.nonlinearity
    if kind == "gru":
        kw["reset_after"] = spec.reset_after
    layer = CLASSES[kind](I, H, **kw)
    params = {}
    for sfx, (K, U, b) in zip(("", "_reverse"), spec.directions):
        if K.shape != (I, gH) or U.shape != (H, gH):
            raise ValueError(f"layer {spec.name!r}: kernel {K.shape} / recurrent_kernel {U.shape}, "
                             f"expected {(I, gH)} / {(H, gH)}")
        params[f"weight_ih_l0{sfx}"] = permute_blocks(K.T, p)  # (gH, I)
        params[f"weight_hh_l0{sfx}"] = permute_blocks(U.T, p)  # (gH, H)
        if b is not None:
            if kind == "gru" and spec.reset_after:
                if b.shape != (2, gH):
                    raise ValueError(f"layer {spec.name!r}: a reset_after GRU's bias is (2, {gH}), "
                                     f"got {b.shape}")
                b_ih, b_hh = permute_blocks(b[0], p), permute_blocks(b[1], p)
            else:
                if b.shape != (gH,):
                    raise ValueError(f"layer {spec.name!r}: bias {b.shape}, expected {(gH,)}")
                # one bias: it adds before the nonlinearity (for a reset_after=False GRU, outside
                # r * (.)), which is where rnnkit's bias_ih sits
                b_ih, b_hh = permute_blocks(b, p), np.zeros(gH)
            params[f"bias_ih_l0{sfx}"], params[f"bias_hh_l0{sfx}"] = b_ih, b_hh
    layer.load_state_dict({k: np.ascontiguousarray(v, dtype=layer.dtype) for k, v in params.items()})
    return layer


def _read(path, dtype, nonlinearity, reset_after):
    path = Path(path)
    f, config = _open(path)
    try:
        if config is not None:
            if nonlinearity is not None or reset_after is not None:
                raise ValueError(f"{path}: a .keras file records each layer's options; "
                                 "nonlinearity= and reset_after= are for .weights.h5 files")
            specs = _specs_from_config(f, config, path)
        else:
            if nonlinearity not in (None, "tanh", "relu"):
                raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
            specs = _specs_from_weights(f, path, nonlinearity, reset_after)
        return specs, [_to_layer(s, dtype) for s in specs], config is not None
    finally:
        f.close()


def load_layers(path, *, dtype=np.float32, nonlinearity: str | None = None,
                reset_after: bool | None = None) -> dict[str, Module]:
    """Every SimpleRNN / LSTM / GRU (plain or Bidirectional) of a Keras file as an rnnkit layer.

    path: a ``.keras`` file or a ``.weights.h5`` file.  Returns {name: layer}, in model order for
    a ``.keras`` file, keyed by Keras layer name; for a ``.weights.h5`` file keyed by weight-group
    name (``lstm``, ``lstm_1``, ``bidirectional``...), in model order within one layer class (the
    file does not record the order across classes).  nonlinearity / reset_after: see the module
    docstring (``.weights.h5`` only).
    """
    specs, layers, _ = _read(path, dtype, nonlinearity, reset_after)
    return {s.name: layer for s, layer in zip(specs, layers)}


def load(path, *, dtype=np.float32, nonlinearity: str | None = None,
         reset_after: bool | None = None) -> Module:
    """All recurrent layers of a Keras file as one rnnkit layer.

    One Keras layer gives one rnnkit layer; k stacked Keras layers of one kind, size and
    direction (each feeding the next, only dropout between them) give one rnnkit layer with
    ``num_layers=k``, whose output is the last Keras layer's sequence output.
    """
    specs, layers, from_config = _read(path, dtype, nonlinearity, reset_after)
    if not layers:
        raise ValueError(f"{path}: no SimpleRNN, LSTM or GRU layer found")
    if from_config:
        for s in specs[1:]:
            if any(c not in PASS_THROUGH for c in s.between):
                raise ValueError(f"{path}: layer {s.name!r} follows {s.between} rather than the "
                                 "previous recurrent layer; use load_layers for such a model")
        for s in specs[:-1]:
            if not s.return_sequences:
                raise ValueError(f"{path}: layer {s.name!r} returns only its last step, so the "
                                 "next recurrent layer does not read its sequence; use load_layers")
    return layers[0] if len(layers) == 1 else stack(layers)


def stack(layers: Sequence[Module]) -> Module:
    """Layers of one kind, hidden size, direction count and options, each feeding the next,
    as one multi-layer rnnkit layer (``num_layers`` = the total), parameters copied."""
    layers = list(layers)
    if not layers:
        raise ValueError("stack needs at least one layer")
    first = layers[0]
    same = ("hidden_size", "bidirectional", "bias", "proj_size", "nonlinearity", "reset_after", "dtype")
    for k, layer in enumerate(layers[1:], 1):
        if type(layer) is not type(first):
            raise ValueError(f"cannot stack {type(first).__name__} and {type(layer).__name__} "
                             f"(layer {k}) into one rnnkit layer")
        for attr in same:
            if getattr(layer, attr) != getattr(first, attr):
                raise ValueError(f"cannot stack: layer {k} has {attr}={getattr(layer, attr)!r}, "
                                 f"layer 0 has {getattr(first, attr)!r}")
        if layer.input_size != layers[k - 1].output_size:
            raise ValueError(f"cannot stack: layer {k} reads {layer.input_size} features but "
                             f"layer {k - 1} outputs {layers[k - 1].output_size}")
    kw = {a: getattr(first, a) for a in ("bias", "bidirectional", "dtype")}
    if isinstance(first, RNN):
        kw["nonlinearity"] = first.nonlinearity
    if isinstance(first, GRU):
        kw["reset_after"] = first.reset_after
    if isinstance(first, LSTM):
        kw["proj_size"] = first.proj_size
    total = sum(layer.num_layers for layer in layers)
    out = type(first)(first.input_size, first.hidden_size, num_layers=total, **kw)
    params, offset = {}, 0
    for layer in layers:
        for name, value in layer.params.items():
            m = re.match(r"^(.*_l)(\d+)(_reverse)?$", name)
            params[f"{m.group(1)}{int(m.group(2)) + offset}{m.group(3) or ''}"] = value
        offset += layer.num_layers
    out.load_state_dict(params)
    return out

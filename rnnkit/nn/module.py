"""The module base: named parameters, their gradients, train/eval mode and a cache stack.

A module owns ``params`` and ``grads`` (two dicts with the same keys, torch names) and may own
sub-modules (attributes that are modules), whose names are joined with dots as in torch
(``lstm.weight_ih_l0``).  ``forward`` pushes one cache per call and ``backward`` pops them
last-in first-out, so a decoder may call the same cell once per step before one backward pass
(inside ``no_grad()`` nothing is cached, so inference never grows memory).
Parameters are updated in place by the optimizers, never rebound, so any reference a module
keeps to ``params[name]`` stays valid.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np

DTYPES = (np.float32, np.float64)
_grad_enabled = True


@contextlib.contextmanager
def no_grad():
    """Inside this block forward passes keep no cache for backward (inference, sampling).

    As in torch, this is separate from ``eval()``, which only switches dropout off.
    """
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def grad_enabled() -> bool:
    return _grad_enabled


class frozen:
    """Inference with the parameters held fixed: ``no_grad()``, and each recurrent layer's
    per-call weight copies (the stacked, transposed, sigmoid-halved matrices the inference driver
    multiplies by) made once and reused by every call inside::

        with rnnkit.nn.frozen():
            for batch in batches:
                y, _ = lstm(batch)

    At small sizes those copies are much of a call: a 2-layer LSTM(256) at N = 1, T = 1 (text
    generation) spends about 60% of its layer time making them (docs/performance.md).  The
    parameters behind a cached copy are made read-only until the scope is released, so an
    in-place update inside it (an optimizer step) raises instead of going unseen.  The scope is
    released at the end of the ``with`` block, or, with ``persist=True``, by ``release()``, so
    that one scope can be entered around each call of a loop that yields between calls (as
    ``lm sample`` streams text) without holding ``no_grad`` in between.
    """

    _active: list = []  # the scopes entered and not yet exited, innermost last

    def __init__(self, persist: bool = False) -> None:
        self.persist = persist
        self._cache: dict = {}  # key -> prepared weights (the key holds the parameters' ids)
        self._locked: list[np.ndarray] = []  # arrays this scope made read-only
        self._grad: list[bool] = []

    def __enter__(self) -> "frozen":
        global _grad_enabled
        self._grad.append(_grad_enabled)
        _grad_enabled = False
        frozen._active.append(self)
        return self

    def __exit__(self, *exc) -> None:
        global _grad_enabled
        frozen._active.remove(self)
        _grad_enabled = self._grad.pop()
        if not self.persist:
            self.release()

    def release(self) -> None:
        """Drop the cached copies and make the parameters writeable again."""
        for a in self._locked:
            a.flags.writeable = True
        self._locked.clear()
        self._cache.clear()

    @staticmethod
    def cached(key: tuple, arrays: tuple, make):
        """``make()`` once per key inside the innermost active scope (``arrays``: the parameters
        it reads, made read-only while cached); outside any scope, ``make()`` every time."""
        if not frozen._active:
            return make()
        scope = frozen._active[-1]
        full = key + tuple(id(a) for a in arrays)
        if full not in scope._cache:
            for a in arrays:
                if a.flags.writeable:
                    a.flags.writeable = False
                    scope._locked.append(a)
            scope._cache[full] = (make(), arrays)  # the arrays kept alive: their ids stay unique
        return scope._cache[full][0]


def check_dtype(dtype) -> np.dtype:
    """Return ``dtype`` as a NumPy dtype, refusing anything but float32 and float64."""
    dt = np.dtype(dtype)
    if dt.type not in DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    return dt


def as_input(x, dtype: np.dtype, name: str = "x") -> np.ndarray:
    """Check that ``x`` is a floating array of the module's dtype (no silent casting)."""
    x = np.asarray(x)
    if x.dtype != dtype:
        raise ValueError(f"{name} has dtype {x.dtype} but the module computes in {dtype}; "
                         f"convert it with {name}.astype(np.{dtype})")
    return x


class Module:
    """Base class: parameters and gradients by name, sub-modules, train/eval, caches.

    A subclass defines ``forward`` and ``backward``; calling the module is calling ``forward``
    (``lstm(x, lengths=lengths)`` is ``lstm.forward(x, lengths=lengths)``), as in torch and Keras.
    """

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.training = True
        self._caches: list = []

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- parameters -------------------------------------------------------------------------
    def _add_param(self, name: str, value: np.ndarray) -> None:
        self.params[name] = value
        self.grads[name] = np.zeros_like(value)

    def children(self) -> Iterator[tuple[str, "Module"]]:
        """Direct sub-modules in attribute order: (name, module)."""
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value
            elif isinstance(value, (list, tuple)):
                for k, item in enumerate(value):
                    if isinstance(item, Module):
                        yield f"{name}.{k}", item

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """Every (name, param, grad) triple of this module and its sub-modules: what optimizers take."""
        for name, p in self.params.items():
            yield prefix + name, p, self.grads[name]
        for child_name, child in self.children():
            yield from child.named_parameters(prefix + child_name + ".")

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of all parameters by (dotted) name."""
        return {name: p.copy() for name, p, _ in self.named_parameters()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Copy ``state`` into the parameters in place; names, shapes and dtypes must match exactly."""
        own = {name: p for name, p, _ in self.named_parameters()}
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(f"state_dict mismatch in {type(self).__name__}: "
                             f"missing {missing}, unexpected {unexpected}")
        for name, p in own.items():
            value = np.asarray(state[name])
            if value.shape != p.shape:
                raise ValueError(f"state_dict[{name!r}] has shape {value.shape}, "
                                 f"{type(self).__name__} expects {p.shape}")
            if value.dtype != p.dtype:
                raise ValueError(f"state_dict[{name!r}] has dtype {value.dtype}, "
                                 f"{type(self).__name__} expects {p.dtype}")
        for name, p in own.items():
            p[...] = state[name]

    def zero_grad(self) -> None:
        """Set every gradient to zero (in place) and drop caches of forwards never backpropagated."""
        for _, _, g in self.named_parameters():
            g.fill(0)
        self.clear_caches()

    def clear_caches(self) -> None:
        self._caches.clear()
        for _, child in self.children():
            child.clear_caches()

    # -- modes -----------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        self.training = mode
        for _, child in self.children():
            child.train(mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def num_parameters(self) -> int:
        return sum(p.size for _, p, _ in self.named_parameters())

    # -- caches ----------------------------------------------------------------------------
    def _push(self, cache) -> None:
        if _grad_enabled:
            self._caches.append(cache)

    def _pop(self):
        if not self._caches:
            raise RuntimeError(f"{type(self).__name__}.backward called without a matching "
                               "forward (forward passes inside no_grad() keep no cache)")
        return self._caches.pop()

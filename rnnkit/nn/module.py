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

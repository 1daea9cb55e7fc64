"""Optimizers (NumPy only); the learning-rate schedules (``schedules.py``) and gradient clipping
(``clipping.py``) are importable from here too.

Optimizers live outside the layers. Each step takes an iterable of ``(name, param, grad)``
triples, updates every ``param`` *in place* and keeps its per-parameter state keyed by
``name``::

    opt = Adam(lr=3e-4)
    lr_at = warmup(cosine_lr(3e-4, total_steps=9_000, min_lr=3e-5), warmup_steps=1_000)
    for step in range(10_000):
        ...                                                  # forward, backward
        norm = clip_grad_norm(model.named_parameters(), 1.0)  # global norm, before clipping
        opt.lr = lr_at(step)
        opt.step(model.named_parameters())                   # (name, param, grad) triples

The update rules are torch.optim's (``SGD``, ``Adagrad``, ``RMSprop``, ``Adam``, ``AdamW``):
the same formulas, default hyper-parameters and order of operations (weight decay, lerp, bias
correction), so a run matches torch to float64 rounding. Every temporary keeps the parameter's
dtype: hyper-parameters are Python floats, which NumPy casts to the array's dtype, so a
float32 model stays float32 end to end.

Notation in the docstrings: ``g`` is the gradient after weight decay, ``t`` the 1-based step
count of that parameter, ``lr`` the learning rate at this step.

``state_dict()`` is a flat ``{str: np.ndarray}`` (savable with ``np.savez``, loadable with
``allow_pickle=False``):

* ``"optimizer"``: 0-d unicode array, the class name;
* ``"step"``: 0-d int64, number of ``step()`` calls;
* one key per hyper-parameter (``"lr"``, ``"momentum"``, ``"betas"`` ...): float64 or bool;
* ``"<param name>/<slot>"`` per-parameter state (``"w/exp_avg"``, ``"w/step"`` ...), torch's
  slot names. Top-level keys never contain ``/``; parameter keys split at the last ``/``, so
  parameter names may themselves contain ``/``.

NumPy functions used here dispatch through ``__array_ufunc__`` / ``__array_function__``, so a
GPU array library can run the same code later.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ._checks import _flag, _nonneg, _unit
from .clipping import Triple, clip_grad_norm, clip_grad_value
from .schedules import constant, cosine_lr, exponential_lr, step_lr, warmup

__all__ = [
    "Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "AdamW",
    "constant", "step_lr", "exponential_lr", "cosine_lr", "warmup",
    "clip_grad_norm", "clip_grad_value",
]


def _lerp_(a: np.ndarray, b: np.ndarray, w: float) -> None:
    """a <- a + w (b - a), in place; torch's lerp kernel, which picks the form by |w|."""
    if abs(w) < 0.5:
        a += w * (b - a)
    else:
        # a = b - (b - a)(1 - w), written into a without a second temporary
        np.subtract(b, a, out=a)
        a *= 1.0 - w
        np.subtract(b, a, out=a)


# ----------------------------------------------------------------------------------------
# optimizers

class Optimizer:
    """Base class: triples in, parameters updated in place, state keyed by parameter name.

    Subclasses define ``_config()`` (constructor keyword arguments, the hyper-parameters),
    ``_slots()`` (names of the per-parameter state), ``_init_state(param)`` and
    ``_update(param, grad, state)``.
    """

    def __init__(self, lr: float) -> None:
        self.lr = lr
        self.steps = 0  # number of step() calls
        self.state: dict[str, dict[str, Any]] = {}  # name -> slot -> array ("step": int)

    @property
    def lr(self) -> float:
        """Learning rate used by the next ``step``; a schedule sets it between steps."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = _nonneg("learning rate", value)

    # -- to be defined by subclasses ---------------------------------------------------
    def _config(self) -> dict[str, Any]:
        raise NotImplementedError

    def _slots(self) -> set[str]:
        raise NotImplementedError

    def _init_state(self, param: np.ndarray) -> dict[str, Any]:
        raise NotImplementedError

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any]) -> None:
        raise NotImplementedError

    # -- public API --------------------------------------------------------------------
    def step(self, params: Iterable[Triple]) -> None:
        """Update every ``param`` in place from its ``grad`` (``grad`` is not modified).

        All triples are checked before any parameter changes, so a bad triple leaves the
        model and the optimizer untouched.
        """
        triples = list(params)
        seen: set[str] = set()
        for triple in triples:
            if not (isinstance(triple, tuple) and len(triple) == 3):
                raise ValueError(f"expected (name, param, grad) triples, got {type(triple).__name__}")
            name, param, grad = triple
            if not isinstance(name, str):
                raise ValueError(f"parameter name must be a str, got {name!r}")
            if name in seen:
                raise ValueError(f"parameter {name!r} appears twice in one step")
            seen.add(name)
            if not np.issubdtype(param.dtype, np.floating):
                raise ValueError(f"parameter {name!r} must be floating point, got {param.dtype}")
            flags = getattr(param, "flags", None)
            if flags is not None and not flags.writeable:
                raise ValueError(f"parameter {name!r} is read-only; it is updated in place")
            if grad.shape != param.shape or grad.dtype != param.dtype:
                raise ValueError(f"gradient of {name!r} is {grad.dtype}{grad.shape}, "
                                 f"parameter is {param.dtype}{param.shape}")
            for slot, value in self.state.get(name, {}).items():
                if slot != "step" and (value.shape != param.shape or value.dtype != param.dtype):
                    raise ValueError(f"optimizer state {name}/{slot} is {value.dtype}{value.shape}, "
                                     f"parameter is {param.dtype}{param.shape}")
        for name, param, grad in triples:
            if name not in self.state:
                self.state[name] = self._init_state(param)
            self._update(param, grad, self.state[name])
        self.steps += 1

    def state_dict(self) -> dict[str, np.ndarray]:
        """Flat ``{key: array}``: class name, step count, hyper-parameters, state (copies)."""
        d: dict[str, np.ndarray] = {
            "optimizer": np.array(type(self).__name__),
            "step": np.array(self.steps, dtype=np.int64),
        }
        for key, value in self._config().items():
            d[key] = np.array(value, dtype=bool if isinstance(value, bool) else np.float64)
        for name, slots in self.state.items():
            for slot, value in slots.items():
                d[f"{name}/{slot}"] = (np.array(value, dtype=np.int64) if slot == "step"
                                       else value.copy())
        return d

    def load_state_dict(self, d: Mapping[str, np.ndarray]) -> None:
        """Restore hyper-parameters, step count and state exactly (a resumed run continues
        bit for bit). Everything is checked before anything changes; ValueError names the
        first problem."""
        d = {k: np.asarray(d[k]) for k in d}  # also reads an NpzFile once
        config = self._config()
        top = {k for k in d if "/" not in k}
        expected = {"optimizer", "step", *config}
        if top != expected:
            raise ValueError(f"{type(self).__name__} state dict: missing keys {sorted(expected - top)}, "
                             f"unexpected keys {sorted(top - expected)}")
        kind = d["optimizer"]
        if kind.shape != () or kind.dtype.kind != "U" or str(kind) != type(self).__name__:
            raise ValueError(f"state dict is for optimizer {kind!r}, not {type(self).__name__}")

        kwargs: dict[str, Any] = {}
        for key, like in config.items():
            value = d[key]
            if isinstance(like, bool):
                if value.shape != () or value.dtype != bool:
                    raise ValueError(f"state dict {key!r} must be a 0-d bool array, got {value.dtype}{value.shape}")
                kwargs[key] = bool(value)
            elif isinstance(like, tuple):
                if value.shape != (len(like),) or value.dtype.kind != "f":
                    raise ValueError(f"state dict {key!r} must be a float array of shape ({len(like)},), "
                                     f"got {value.dtype}{value.shape}")
                kwargs[key] = tuple(float(v) for v in value)
            else:
                if value.shape != () or value.dtype.kind != "f":
                    raise ValueError(f"state dict {key!r} must be a 0-d float array, got {value.dtype}{value.shape}")
                kwargs[key] = float(value)
        fresh = type(self)(**kwargs)  # re-runs every hyper-parameter check

        steps = d["step"]
        if steps.shape != () or steps.dtype.kind not in "iu" or int(steps) < 0:
            raise ValueError(f"state dict 'step' must be a 0-d non-negative integer, got {steps!r}")

        slots = fresh._slots()
        grouped: dict[str, dict[str, np.ndarray]] = {}
        for key, value in d.items():
            if "/" in key:
                name, _, slot = key.rpartition("/")
                grouped.setdefault(name, {})[slot] = value
        state: dict[str, dict[str, Any]] = {}
        for name, got in grouped.items():
            if set(got) != slots:
                raise ValueError(f"state of parameter {name!r}: expected slots {sorted(slots)}, "
                                 f"got {sorted(got)}")
            arrays = {s: v for s, v in got.items() if s != "step"}
            shapes = {(v.shape, v.dtype) for v in arrays.values()}
            if len(shapes) > 1 or any(v.dtype.kind != "f" for v in arrays.values()):
                raise ValueError(f"state of parameter {name!r}: slots must be floating arrays of one "
                                 f"shape and dtype, got {sorted(map(str, shapes))}")
            state[name] = {s: v.copy() for s, v in arrays.items()}
            if "step" in got:
                t = got["step"]
                if t.shape != () or t.dtype.kind not in "iu" or int(t) < 1:
                    raise ValueError(f"state {name}/step must be a 0-d positive integer, got {t!r}")
                state[name]["step"] = int(t)

        self.__dict__.update(vars(fresh))
        self.steps = int(steps)
        self.state = state

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    r"""Stochastic gradient descent with optional (Nesterov) momentum, as torch.optim.SGD.

    g = grad + weight_decay * param
    b = g                                    (first step)
    b = momentum * b + (1 - dampening) * g   (later steps)
    g = g + momentum * b   if nesterov else   g = b          (when momentum != 0)
    param = param - lr * g
    """

    def __init__(self, lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0) -> None:
        super().__init__(lr)
        self.momentum = _unit("momentum", momentum)
        self.dampening = _unit("dampening", dampening, closed=True)
        self.nesterov = _flag("nesterov", nesterov)
        self.weight_decay = _nonneg("weight_decay", weight_decay)
        if self.nesterov and (self.momentum <= 0.0 or self.dampening != 0.0):
            raise ValueError("nesterov momentum requires momentum > 0 and zero dampening")

    def _config(self) -> dict[str, Any]:
        return dict(lr=self.lr, momentum=self.momentum, dampening=self.dampening,
                    nesterov=self.nesterov, weight_decay=self.weight_decay)

    def _slots(self) -> set[str]:
        return {"momentum_buffer"} if self.momentum != 0.0 else set()

    def _init_state(self, param: np.ndarray) -> dict[str, Any]:
        return {}  # the momentum buffer starts as a copy of the first gradient

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any]) -> None:
        g = grad + self.weight_decay * param if self.weight_decay != 0.0 else grad
        if self.momentum != 0.0:
            b = state.get("momentum_buffer")
            if b is None:
                b = state["momentum_buffer"] = g.copy()
            else:
                b *= self.momentum
                b += (1.0 - self.dampening) * g
            g = g + self.momentum * b if self.nesterov else b
        param -= self.lr * g


class Adagrad(Optimizer):
    r"""Adagrad, as torch.optim.Adagrad (state_sum starts at initial_accumulator_value).

    g = grad + weight_decay * param
    clr = lr / (1 + (t - 1) * lr_decay)
    state_sum = state_sum + g * g
    param = param - clr * g / (sqrt(state_sum) + eps)
    """

    def __init__(self, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10) -> None:
        super().__init__(lr)
        self.lr_decay = _nonneg("lr_decay", lr_decay)
        self.weight_decay = _nonneg("weight_decay", weight_decay)
        self.initial_accumulator_value = _nonneg("initial_accumulator_value", initial_accumulator_value)
        self.eps = _nonneg("eps", eps)

    def _config(self) -> dict[str, Any]:
        return dict(lr=self.lr, lr_decay=self.lr_decay, weight_decay=self.weight_decay,
                    initial_accumulator_value=self.initial_accumulator_value, eps=self.eps)

    def _slots(self) -> set[str]:
        return {"step", "sum"}

    def _init_state(self, param: np.ndarray) -> dict[str, Any]:
        return {"step": 0, "sum": np.full_like(param, self.initial_accumulator_value)}

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any]) -> None:
        state["step"] += 1
        t = state["step"]
        g = grad + self.weight_decay * param if self.weight_decay != 0.0 else grad
        clr = self.lr / (1 + (t - 1) * self.lr_decay)
        state_sum = state["sum"]
        state_sum += g * g
        std = np.sqrt(state_sum)
        std += self.eps
        np.divide(g, std, out=std)
        std *= clr
        param -= std


class RMSprop(Optimizer):
    r"""RMSprop, as torch.optim.RMSprop (all buffers start at zero).

    g = grad + weight_decay * param
    v = alpha * v + (1 - alpha) * g * g
    centered:  m = m + (1 - alpha) * (g - m);   avg = sqrt(v - m * m) + eps
    otherwise: avg = sqrt(v) + eps
    momentum > 0: b = momentum * b + g / avg;  param = param - lr * b
    otherwise:    param = param - lr * g / avg
    (state slots: v = square_avg, m = grad_avg, b = momentum_buffer)
    """

    def __init__(self, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False) -> None:
        super().__init__(lr)
        self.alpha = _unit("alpha", alpha, closed=True)
        self.eps = _nonneg("eps", eps)
        self.weight_decay = _nonneg("weight_decay", weight_decay)
        self.momentum = _unit("momentum", momentum)
        self.centered = _flag("centered", centered)

    def _config(self) -> dict[str, Any]:
        return dict(lr=self.lr, alpha=self.alpha, eps=self.eps, weight_decay=self.weight_decay,
                    momentum=self.momentum, centered=self.centered)

    def _slots(self) -> set[str]:
        return ({"step", "square_avg"} | ({"momentum_buffer"} if self.momentum > 0.0 else set())
                | ({"grad_avg"} if self.centered else set()))

    def _init_state(self, param: np.ndarray) -> dict[str, Any]:
        return {"step": 0, **{s: np.zeros_like(param) for s in self._slots() - {"step"}}}

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any]) -> None:
        state["step"] += 1
        g = grad + self.weight_decay * param if self.weight_decay != 0.0 else grad
        v = state["square_avg"]
        v *= self.alpha
        v += (1.0 - self.alpha) * g * g
        if self.centered:
            m = state["grad_avg"]
            _lerp_(m, g, 1.0 - self.alpha)
            avg = v - m * m
            np.sqrt(avg, out=avg)
        else:
            avg = np.sqrt(v)
        avg += self.eps
        np.divide(g, avg, out=avg)  # avg now holds g / avg
        if self.momentum > 0.0:
            b = state["momentum_buffer"]
            b *= self.momentum
            b += avg
            param -= self.lr * b
        else:
            avg *= self.lr
            param -= avg


class Adam(Optimizer):
    r"""Adam (amsgrad optional), as torch.optim.Adam; weight decay is L2, added to the gradient.

    g = grad + weight_decay * param
    m = m + (1 - beta1) * (g - m)
    v = beta2 * v + (1 - beta2) * g * g
    amsgrad: v_max = max(v_max, v) and v_max replaces v below
    param = param - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    (state slots: m = exp_avg, v = exp_avg_sq, v_max = max_exp_avg_sq)
    """

    _decoupled = False  # AdamW: decay the weights directly instead of the gradient

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False) -> None:
        super().__init__(lr)
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = (_unit("betas[0]", betas[0]), _unit("betas[1]", betas[1]))
        self.eps = _nonneg("eps", eps)
        self.weight_decay = _nonneg("weight_decay", weight_decay)
        self.amsgrad = _flag("amsgrad", amsgrad)

    def _config(self) -> dict[str, Any]:
        return dict(lr=self.lr, betas=self.betas, eps=self.eps,
                    weight_decay=self.weight_decay, amsgrad=self.amsgrad)

    def _slots(self) -> set[str]:
        return {"step", "exp_avg", "exp_avg_sq"} | ({"max_exp_avg_sq"} if self.amsgrad else set())

    def _init_state(self, param: np.ndarray) -> dict[str, Any]:
        return {"step": 0, **{s: np.zeros_like(param) for s in self._slots() - {"step"}}}

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, Any]) -> None:
        beta1, beta2 = self.betas
        state["step"] += 1
        t = state["step"]
        g = grad
        if self.weight_decay != 0.0:
            if self._decoupled:
                param *= 1.0 - self.lr * self.weight_decay
            else:
                g = grad + self.weight_decay * param
        m, v = state["exp_avg"], state["exp_avg_sq"]
        _lerp_(m, g, 1.0 - beta1)
        v *= beta2
        v += (1.0 - beta2) * g * g
        if self.amsgrad:
            np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        step_size = self.lr / (1.0 - beta1 ** t)
        bias_correction2_sqrt = (1.0 - beta2 ** t) ** 0.5
        denom = np.sqrt(v)
        denom /= bias_correction2_sqrt
        denom += self.eps
        np.divide(m, denom, out=denom)
        denom *= step_size
        param -= denom


class AdamW(Adam):
    r"""Adam with decoupled weight decay, as torch.optim.AdamW (note the default 1e-2).

    param = param * (1 - lr * weight_decay)     (before the moments; g = grad)
    then the Adam update above without the L2 term.
    """

    _decoupled = True

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False) -> None:
        super().__init__(lr, betas, eps, weight_decay, amsgrad)

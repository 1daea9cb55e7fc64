"""Finite-difference gradient checking for any module with forward/backward.

``gradcheck(module, inputs)`` draws a random projection R of every output, so the checked scalar
is L = sum_k <R_k, out_k>; it runs ``backward`` with the R's as output gradients and compares the
returned input gradients and every ``module.grads`` entry with central differences

    dL/dp_j ~ (L(p + eps e_j) - L(p - eps e_j)) / (2 eps)

computed in float64.  Use it on your own module: it needs ``forward(*inputs, **kwargs)`` returning
an array or a (nested) tuple of arrays, and ``backward(*output_grads)`` returning the gradients of
the differentiable inputs (one array, or a tuple in input order; nested like the inputs).
"""
from __future__ import annotations

import numpy as np


class GradcheckError(AssertionError):
    """Analytic and numerical gradients disagree; the message lists the worst entries."""


def _flatten(obj):
    if obj is None:
        return []
    if isinstance(obj, (tuple, list)):
        return [a for item in obj for a in _flatten(item)]
    return [obj]


def _unflatten(like, flat):
    """Rebuild the nesting of ``like`` from the iterator ``flat``."""
    if like is None:
        return None
    if isinstance(like, (tuple, list)):
        return type(like)(_unflatten(item, flat) for item in like)
    return next(flat)


def _is_float(obj) -> bool:
    arrays = _flatten(obj)
    return bool(arrays) and all(isinstance(a, np.ndarray) and a.dtype.kind == "f" for a in arrays)


def numerical_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of the scalar f() with respect to array x (perturbed in place)."""
    grad = np.zeros(x.shape, np.float64)
    flat = x.reshape(-1)  # a view: perturbing it perturbs x
    for j in range(flat.size):
        old = flat[j]
        flat[j] = old + eps
        up = f()
        flat[j] = old - eps
        down = f()
        flat[j] = old
        grad.flat[j] = (up - down) / (2 * eps)
    return grad


def gradcheck(module, inputs, kwargs=None, *, wrt=None, params=True, eps: float = 1e-6,
              atol: float = 1e-7, rtol: float = 1e-6, rng: np.random.Generator | None = None,
              reset=None) -> dict:
    """Check ``module.backward`` against central differences; raise GradcheckError on a mismatch.

    inputs: tuple of forward's positional arguments (arrays, nested tuples of arrays, None, ints).
    kwargs: keyword arguments of forward that are not differentiated (lengths, masks, targets).
    wrt: indices of the inputs to check (default: every float input).  ``backward`` returns one
        gradient per positional input, or only those of ``wrt`` (a single array for one).
    params: also check every entry of ``module.grads``.
    reset: optional callable run before each forward (e.g. re-seed a dropout generator so the
        mask is the same in every evaluation).
    Returns {name: max abs error} for every array checked.  Everything should be float64.
    """
    kwargs = kwargs or {}
    rng = rng if rng is not None else np.random.default_rng(0)
    inputs = tuple(inputs)
    wrt = [k for k, a in enumerate(inputs) if _is_float(a)] if wrt is None else list(wrt)

    def run():
        if reset is not None:
            reset()
        return module.forward(*inputs, **kwargs)

    out = run()
    outs = _flatten(out)
    R = [rng.standard_normal(np.shape(o)).astype(np.asarray(o).dtype) for o in outs]

    def loss():
        with np.errstate(all="ignore"):
            vals = _flatten(run())
        if hasattr(module, "clear_caches"):
            module.clear_caches()
        return float(sum(np.sum(np.asarray(r, np.float64) * np.asarray(o, np.float64))
                         for r, o in zip(R, vals)))

    if hasattr(module, "zero_grad"):
        module.zero_grad()
    out = run()
    dout = _unflatten(out, iter(R))
    got = module.backward(*dout) if isinstance(out, tuple) else module.backward(dout)
    # backward returns one gradient per positional input (None where not differentiable),
    # or just the gradients of the ``wrt`` inputs (one array when there is one)
    if not wrt:
        per_input = {}
    elif isinstance(got, tuple) and len(got) == len(inputs):
        per_input = dict(enumerate(got))
    elif len(wrt) == 1:
        per_input = {wrt[0]: got}
    else:
        per_input = dict(zip(wrt, got))
    analytic = {}
    for k in wrt:
        for j, (a, ga) in enumerate(zip(_flatten(inputs[k]), _flatten(per_input[k]))):
            analytic[f"input{k}" + (f"[{j}]" if j else "")] = (a, ga)
    if params:
        for name, p, g in module.named_parameters():
            analytic[name] = (p, g.copy())
    errors, failures = {}, []
    for name, (array, g) in analytic.items():
        num = numerical_grad(loss, array, eps)
        g = np.zeros_like(num) if g is None else np.asarray(g, np.float64)
        if g.shape != num.shape:
            raise GradcheckError(f"{name}: analytic gradient has shape {g.shape}, expected {num.shape}")
        err = np.abs(g - num)
        errors[name] = float(err.max()) if err.size else 0.0
        bad = err > atol + rtol * np.abs(num)
        if bad.any():
            j = int(np.argmax(np.where(bad, err, -1)))
            failures.append(f"{name}: {int(bad.sum())}/{bad.size} entries off; worst at flat index {j}: "
                            f"analytic {g.flat[j]:.10g} vs numerical {num.flat[j]:.10g}")
    if failures:
        raise GradcheckError("gradcheck failed\n  " + "\n  ".join(failures))
    return errors

"""Optimizers, schedules and clipping against torch.optim / torch.nn.utils, plus resume and
argument checks. Parity cases are one line each: (optimizer name, keyword arguments)."""
import math

import numpy as np
import pytest

from rnnkit.nn import optim

SHAPES = {"weight_ih_l0": (8, 3), "weight_hh_l0": (8, 2), "bias_ih_l0": (8,), "enc/conv": (2, 3, 4)}

CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, weight_decay=0.05)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.1, weight_decay=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    ("Adagrad", dict()),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05)),
    ("Adagrad", dict(lr=0.1, weight_decay=0.1)),
    ("Adagrad", dict(lr=0.1, initial_accumulator_value=0.5, eps=1e-6)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.02, initial_accumulator_value=0.1)),
    ("RMSprop", dict()),
    ("RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-6)),
    ("RMSprop", dict(lr=0.01, alpha=0.3)),  # 1 - alpha >= 0.5: the other lerp form
    ("RMSprop", dict(lr=0.01, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.01, centered=True, alpha=0.3)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.05)),
    ("Adam", dict()),
    ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", dict(lr=0.01, betas=(0.5, 0.9), eps=1e-6)),
    ("Adam", dict(lr=0.01, betas=(0.3, 0.5), weight_decay=0.05, amsgrad=True)),
    ("AdamW", dict()),
    ("AdamW", dict(lr=0.01, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict(lr=0.01, betas=(0.3, 0.8), weight_decay=0.0)),
]


def _ids(cases):
    return [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}" for name, kw in cases]


def make_params(rng, dtype=np.float64):
    return {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}


def make_grads(rng, dtype=np.float64):
    # amsgrad needs v to go down somewhere to matter: scale the gradients up and down
    scale = rng.choice([0.1, 1.0, 3.0])
    return {k: (scale * rng.standard_normal(s)).astype(dtype) for k, s in SHAPES.items()}


def run_ours(opt, params, grad_seq, lrs=None):
    """Apply the gradient sequence; returns a copy of the params after every step."""
    history = []
    for k, grads in enumerate(grad_seq):
        if lrs is not None:
            opt.lr = lrs[k]
        opt.step((n, params[n], grads[n]) for n in params)
        history.append({n: p.copy() for n, p in params.items()})
    return history


def assert_close(ours, ref, rtol, atol, what):
    assert ours.shape == ref.shape and ours.dtype == ref.dtype, (what, ours.dtype, ours.shape, ref.dtype, ref.shape)
    if not np.allclose(ours, ref, rtol=rtol, atol=atol):
        err = np.max(np.abs(ours - ref) / (atol + rtol * np.abs(ref)))
        pytest.fail(f"{what}: off by {err:.3g} x tolerance\nours:\n{ours}\ntorch:\n{ref}")


def check_parity(name, kwargs, rng, dtype=np.float64, steps=7, rtol=1e-12, atol=1e-14):
    torch = pytest.importorskip("torch")
    tdtype = {np.float64: torch.float64, np.float32: torch.float32}[dtype]
    params = make_params(rng, dtype)
    tparams = {n: torch.nn.Parameter(torch.tensor(p.copy(), dtype=tdtype)) for n, p in params.items()}
    grad_seq = [make_grads(rng, dtype) for _ in range(steps)]
    opt = getattr(optim, name)(**kwargs)
    topt = getattr(torch.optim, name)(list(tparams.values()), **kwargs, foreach=False)
    # a schedule changes lr between steps (matters for AdamW's decay and Adagrad's lr_decay)
    lrs = [opt.lr * (1.0 - 0.1 * k) for k in range(steps)]
    ids = {n: id(p) for n, p in params.items()}
    for k, grads in enumerate(grad_seq):
        saved = {n: g.copy() for n, g in grads.items()}
        opt.lr = lrs[k]
        opt.step((n, params[n], grads[n]) for n in params)
        for n, tp in tparams.items():
            tp.grad = torch.tensor(grads[n].copy(), dtype=tdtype)
        topt.param_groups[0]["lr"] = lrs[k]
        topt.step()
        for n in params:
            assert id(params[n]) == ids[n] and params[n].dtype == dtype
            assert np.array_equal(grads[n], saved[n]), f"step modified the gradient of {n}"
            assert_close(params[n], tparams[n].detach().numpy(), rtol, atol, f"{name} step {k} {n}")
    return opt


@pytest.mark.parametrize("name, kwargs", CASES, ids=_ids(CASES))
def test_parity_float64(name, kwargs, rng):
    check_parity(name, kwargs, rng)


@pytest.mark.parametrize("name, kwargs", [
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.01)),
    ("Adam", dict(lr=0.01, weight_decay=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01, amsgrad=True)),
], ids=["SGD", "Adagrad", "RMSprop", "Adam", "AdamW"])
def test_parity_float32_keeps_dtype(name, kwargs, rng):
    opt = check_parity(name, kwargs, rng, dtype=np.float32, rtol=1e-5, atol=1e-6)
    for slots in opt.state.values():
        for slot, value in slots.items():
            assert slot == "step" or value.dtype == np.float32, (slot, value.dtype)


@pytest.mark.parametrize("name, kwargs", CASES, ids=_ids(CASES))
def test_state_dict_resume_is_bit_identical(name, kwargs, rng, tmp_path):
    params0 = make_params(rng)
    grad_seq = [make_grads(rng) for _ in range(6)]
    lrs = [0.01 * (1.0 - 0.1 * k) for k in range(6)]

    straight = getattr(optim, name)(**kwargs)
    p_straight = {n: p.copy() for n, p in params0.items()}
    run_ours(straight, p_straight, grad_seq, lrs)

    first = getattr(optim, name)(**kwargs)
    p_resumed = {n: p.copy() for n, p in params0.items()}
    run_ours(first, p_resumed, grad_seq[:3], lrs[:3])
    sd = first.state_dict()
    np.savez(tmp_path / "optim.npz", **sd)
    with np.load(tmp_path / "optim.npz", allow_pickle=False) as f:
        loaded = {k: f[k] for k in f.files}
    # a fresh optimizer built with other hyper-parameters: loading restores them as well
    other = dict(lr=0.5) if name == "SGD" else {}
    second = getattr(optim, name)(**other)
    second.load_state_dict(loaded)
    assert second.steps == 3 and second.lr == first.lr
    run_ours(second, p_resumed, grad_seq[3:], lrs[3:])

    for n in params0:
        assert np.array_equal(p_resumed[n], p_straight[n]), n
    sd_straight, sd_resumed = straight.state_dict(), second.state_dict()
    assert sorted(sd_straight) == sorted(sd_resumed)
    for k in sd_straight:
        assert sd_straight[k].dtype == sd_resumed[k].dtype and np.array_equal(sd_straight[k], sd_resumed[k]), k


def test_state_dict_contents_and_copies(rng):
    opt = optim.Adam(lr=0.01, amsgrad=True)
    params = make_params(rng)
    run_ours(opt, params, [make_grads(rng) for _ in range(2)])
    sd = opt.state_dict()
    assert str(sd["optimizer"]) == "Adam" and sd["step"].dtype == np.int64 and int(sd["step"]) == 2
    assert float(sd["lr"]) == 0.01 and sd["betas"].tolist() == [0.9, 0.999] and bool(sd["amsgrad"])
    assert int(sd["enc/conv/step"]) == 2 and sd["enc/conv/exp_avg"].shape == (2, 3, 4)
    assert set(sd) == {"optimizer", "step", "lr", "betas", "eps", "weight_decay", "amsgrad"} | {
        f"{n}/{s}" for n in SHAPES for s in ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")}
    # the dict holds copies: scribbling on it changes nothing
    before = opt.state["bias_ih_l0"]["exp_avg"].copy()
    sd["bias_ih_l0/exp_avg"][:] = 123.0
    assert np.array_equal(opt.state["bias_ih_l0"]["exp_avg"], before)


def test_load_state_dict_rejects_mismatches(rng):
    opt = optim.Adam(lr=0.01)
    params = make_params(rng)
    run_ours(opt, params, [make_grads(rng)])
    sd = opt.state_dict()

    with pytest.raises(ValueError, match="not AdamW"):
        optim.AdamW().load_state_dict(sd)
    with pytest.raises(ValueError, match="missing keys"):
        optim.SGD(lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match=r"missing keys \['eps'\]"):
        optim.Adam().load_state_dict({k: v for k, v in sd.items() if k != "eps"})
    with pytest.raises(ValueError, match="unexpected keys.*'junk'"):
        optim.Adam().load_state_dict({**sd, "junk": np.array(1.0)})
    with pytest.raises(ValueError, match="max_exp_avg_sq"):  # amsgrad state missing
        optim.Adam().load_state_dict({**sd, "amsgrad": np.array(True)})
    with pytest.raises(ValueError, match="slots"):
        optim.Adam().load_state_dict({k: v for k, v in sd.items() if k != "bias_ih_l0/exp_avg"})
    with pytest.raises(ValueError, match="learning rate"):
        optim.Adam().load_state_dict({**sd, "lr": np.array(-1.0)})
    with pytest.raises(ValueError, match="betas"):
        optim.Adam().load_state_dict({**sd, "betas": np.array(0.9)})
    with pytest.raises(ValueError, match="step"):
        optim.Adam().load_state_dict({**sd, "step": np.array(1.5)})

    # a failed load changes nothing
    fresh = optim.Adam(lr=0.2)
    with pytest.raises(ValueError):
        fresh.load_state_dict({**sd, "junk": np.array(1.0)})
    assert fresh.lr == 0.2 and fresh.state == {} and fresh.steps == 0

    # state that does not fit the parameter is caught at the next step, before any update
    bad = optim.Adam()
    bad.load_state_dict({**sd, "bias_ih_l0/exp_avg": np.zeros(7), "bias_ih_l0/exp_avg_sq": np.zeros(7)})
    before = {n: p.copy() for n, p in params.items()}
    with pytest.raises(ValueError, match="bias_ih_l0/exp_avg"):
        bad.step((n, params[n], g) for n, g in make_grads(rng).items())
    for n in params:
        assert np.array_equal(params[n], before[n])


def test_step_rejects_bad_triples(rng):
    p = rng.standard_normal(3)
    opt = optim.SGD(lr=0.1)
    with pytest.raises(ValueError, match="twice"):
        opt.step([("w", p, p.copy()), ("w", p, p.copy())])
    with pytest.raises(ValueError, match="gradient of 'w'"):
        opt.step([("w", p, np.zeros(4))])
    with pytest.raises(ValueError, match="gradient of 'w'"):
        opt.step([("w", p, np.zeros(3, np.float32))])
    with pytest.raises(ValueError, match="triples"):
        opt.step([p])
    ro = p.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        opt.step([("w", ro, p)])


@pytest.mark.parametrize("make, match", [
    (lambda: optim.SGD(lr=-0.1), "learning rate"),
    (lambda: optim.SGD(lr=float("nan")), "learning rate"),
    (lambda: optim.SGD(lr=0.1, momentum=-0.5), "momentum"),
    (lambda: optim.SGD(lr=0.1, nesterov=True), "nesterov"),
    (lambda: optim.SGD(lr=0.1, momentum=0.9, dampening=0.5, nesterov=True), "nesterov"),
    (lambda: optim.SGD(lr=0.1, weight_decay=-1e-4), "weight_decay"),
    (lambda: optim.SGD(lr=0.1, dampening=1.5), "dampening"),
    (lambda: optim.Adagrad(lr_decay=-0.1), "lr_decay"),
    (lambda: optim.Adagrad(initial_accumulator_value=-1.0), "initial_accumulator_value"),
    (lambda: optim.Adagrad(eps=-1e-10), "eps"),
    (lambda: optim.RMSprop(alpha=1.5), "alpha"),
    (lambda: optim.RMSprop(momentum=-0.1), "momentum"),
    (lambda: optim.RMSprop(centered=1), "centered"),
    (lambda: optim.Adam(betas=(1.0, 0.999)), r"betas\[0\]"),
    (lambda: optim.Adam(betas=(0.9, -0.1)), r"betas\[1\]"),
    (lambda: optim.Adam(betas=(0.9,)), "betas"),
    (lambda: optim.Adam(eps=-1.0), "eps"),
    (lambda: optim.AdamW(weight_decay=-0.01), "weight_decay"),
    (lambda: optim.AdamW(amsgrad="yes"), "amsgrad"),
])
def test_bad_hyperparameters_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_lr_setter_validates():
    opt = optim.Adam()
    opt.lr = 0.5
    assert opt.lr == 0.5 and isinstance(opt.lr, float)
    with pytest.raises(ValueError, match="learning rate"):
        opt.lr = -1e-3
    assert opt.lr == 0.5


def test_defaults_match_torch():
    torch = pytest.importorskip("torch")
    p = [torch.nn.Parameter(torch.zeros(1))]
    for name in ("Adagrad", "RMSprop", "Adam", "AdamW"):
        ours = getattr(optim, name)()._config()
        theirs = getattr(torch.optim, name)(p).defaults
        for k, v in ours.items():
            assert theirs[k] == v, (name, k, v, theirs[k])
    ours = optim.SGD(lr=0.1)._config()
    theirs = torch.optim.SGD(p, lr=0.1).defaults
    assert all(theirs[k] == v for k, v in ours.items()), (ours, theirs)


# -- schedules --------------------------------------------------------------------------

def torch_lrs(make_scheduler, base_lr, steps):
    """lr of updates 0..steps-1 from a torch scheduler driving a torch optimizer."""
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=base_lr)
    sched = make_scheduler(torch.optim.lr_scheduler, opt)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(lrs)


@pytest.mark.parametrize("ours, make, steps", [
    (optim.constant(0.3), lambda S, o: S.ConstantLR(o, factor=1.0, total_iters=0), 6),
    (optim.step_lr(0.3, step_size=3, gamma=0.5), lambda S, o: S.StepLR(o, step_size=3, gamma=0.5), 13),
    (optim.step_lr(0.3, step_size=1), lambda S, o: S.StepLR(o, step_size=1), 6),
    (optim.exponential_lr(0.3, gamma=0.9), lambda S, o: S.ExponentialLR(o, gamma=0.9), 20),
    (optim.cosine_lr(0.3, total_steps=10), lambda S, o: S.CosineAnnealingLR(o, T_max=10), 11),
    (optim.cosine_lr(0.3, total_steps=7, min_lr=0.02),
     lambda S, o: S.CosineAnnealingLR(o, T_max=7, eta_min=0.02), 8),
    (optim.warmup(optim.cosine_lr(0.3, total_steps=10, min_lr=0.01), warmup_steps=4),
     lambda S, o: S.SequentialLR(o, [S.LinearLR(o, start_factor=1 / 4, total_iters=4),
                                     S.CosineAnnealingLR(o, T_max=10, eta_min=0.01)], milestones=[4]), 15),
    (optim.warmup(optim.step_lr(0.3, step_size=2, gamma=0.5), warmup_steps=3),
     lambda S, o: S.SequentialLR(o, [S.LinearLR(o, start_factor=1 / 3, total_iters=3),
                                     S.StepLR(o, step_size=2, gamma=0.5)], milestones=[3]), 10),
], ids=["constant", "step", "step1", "exponential", "cosine", "cosine-min", "warmup-cosine", "warmup-step"])
def test_schedules_match_torch(ours, make, steps):
    ref = torch_lrs(make, 0.3, steps)
    got = np.array([ours(k) for k in range(steps)])
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-15)


def test_schedule_closed_forms():
    # values torch would not give: cosine holds min_lr after total_steps (torch's rises again)
    lr_at = optim.cosine_lr(1.0, total_steps=4, min_lr=0.1)
    assert [lr_at(k) for k in (4, 5, 100)] == [0.1, 0.1, 0.1]
    assert math.isclose(lr_at(2), 0.55, rel_tol=1e-15)
    w = optim.warmup(optim.constant(2.0), warmup_steps=4)
    assert [w(k) for k in range(6)] == [0.5, 0.875, 1.25, 1.625, 2.0, 2.0]
    assert optim.warmup(optim.constant(2.0), 0)(0) == 2.0
    assert optim.step_lr(1.0, step_size=10, gamma=0.1)(25) == 1.0 * 0.1 ** 2


@pytest.mark.parametrize("make, match", [
    (lambda: optim.step_lr(0.1, step_size=0), "step_size"),
    (lambda: optim.step_lr(-0.1, step_size=2), "base_lr"),
    (lambda: optim.exponential_lr(0.1, gamma=-0.5), "gamma"),
    (lambda: optim.cosine_lr(0.1, total_steps=0), "total_steps"),
    (lambda: optim.cosine_lr(0.1, total_steps=10, min_lr=-1.0), "min_lr"),
    (lambda: optim.warmup(optim.constant(0.1), warmup_steps=-1), "warmup_steps"),
    (lambda: optim.warmup(optim.constant(0.1), warmup_steps=2.5), "warmup_steps"),
    (lambda: optim.constant(0.1)(-1), "step"),
    (lambda: optim.cosine_lr(0.1, 10)(1.5), "step"),
])
def test_bad_schedules_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# -- clipping ---------------------------------------------------------------------------

def torch_clip(grads, fn):
    torch = pytest.importorskip("torch")
    ps = []
    for g in grads:
        p = torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64))
        p.grad = torch.tensor(g.copy())
        ps.append(p)
    norm = torch.nn.utils.get_total_norm([p.grad for p in ps])
    fn(torch, ps)
    return float(norm), [p.grad.numpy() for p in ps]


@pytest.mark.parametrize("max_norm", [0.5, 3.0, 1e3], ids=["clips", "clips-a-little", "no-clip"])
@pytest.mark.parametrize("as_triples", [False, True], ids=["arrays", "triples"])
def test_clip_grad_norm_matches_torch(max_norm, as_triples, rng):
    grads = [0.7 * rng.standard_normal(s) for s in SHAPES.values()]
    ref_norm, ref = torch_clip(grads, lambda torch, ps: torch.nn.utils.clip_grad_norm_(ps, max_norm))
    ours = [g.copy() for g in grads]
    arg = [(f"p{i}", np.zeros_like(g), g) for i, g in enumerate(ours)] if as_triples else ours
    norm = optim.clip_grad_norm(iter(arg), max_norm)  # a generator is read once
    assert isinstance(norm, float) and math.isclose(norm, ref_norm, rel_tol=1e-12)
    assert math.isclose(norm, math.sqrt(sum(float(np.sum(g * g)) for g in grads)), rel_tol=1e-12)
    for o, r in zip(ours, ref):
        assert_close(o, r, 1e-12, 1e-15, "clipped grad")
    new_norm = math.sqrt(sum(float(np.sum(g * g)) for g in ours))
    assert math.isclose(new_norm, min(norm, max_norm), rel_tol=1e-5)


@pytest.mark.parametrize("as_triples", [False, True], ids=["arrays", "triples"])
def test_clip_grad_value_matches_torch(as_triples, rng):
    grads = [rng.standard_normal(s) for s in SHAPES.values()]
    ref_norm, ref = torch_clip(grads, lambda torch, ps: torch.nn.utils.clip_grad_value_(ps, 0.5))
    ours = [g.copy() for g in grads]
    arg = [(f"p{i}", np.zeros_like(g), g) for i, g in enumerate(ours)] if as_triples else ours
    norm = optim.clip_grad_value(arg, 0.5)
    assert math.isclose(norm, ref_norm, rel_tol=1e-12)
    for o, r in zip(ours, ref):
        assert np.array_equal(o, r)
    assert max(np.max(np.abs(o)) for o in ours) == 0.5


def test_clip_float32_stays_float32(rng):
    grads = [rng.standard_normal(s).astype(np.float32) for s in SHAPES.values()]
    ref64 = [g.astype(np.float64) for g in grads]
    norm = optim.clip_grad_norm(grads, 1.0)
    ref_norm = optim.clip_grad_norm(ref64, 1.0)
    assert math.isclose(norm, ref_norm, rel_tol=1e-12)  # the norm accumulates in float64
    for g, r in zip(grads, ref64):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, r, rtol=1e-6, atol=1e-7)
    # a float32 sum of squares would overflow here; the float64 one does not
    big = [np.full(4, 1e30, np.float32)]
    assert math.isclose(optim.clip_grad_norm(big, 1.0), 2e30, rel_tol=1e-6)
    assert big[0].dtype == np.float32 and math.isclose(float(big[0][0]), 0.5, rel_tol=1e-6)


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_clip_nonfinite_returns_norm_and_leaves_grads(bad, rng):
    grads = [rng.standard_normal(5), rng.standard_normal(3)]
    grads[1][1] = bad
    before = [g.copy() for g in grads]
    n1 = optim.clip_grad_norm(grads, 1.0)
    n2 = optim.clip_grad_value(grads, 0.1)
    for n in (n1, n2):
        assert math.isnan(n) if np.isnan(bad) else n == math.inf
    for g, b in zip(grads, before):
        np.testing.assert_array_equal(g, b)
    # a finite norm that overflows float64 is reported as inf too, without raising
    assert optim.clip_grad_norm([np.full(3, 1e200)], 1.0) == math.inf


def test_clip_edge_cases():
    assert optim.clip_grad_norm([], 1.0) == 0.0
    with pytest.raises(ValueError, match="max_norm"):
        optim.clip_grad_norm([np.ones(2)], 0.0)
    with pytest.raises(ValueError, match="clip_value"):
        optim.clip_grad_value([np.ones(2)], -1.0)
    with pytest.raises(ValueError, match="triples"):
        optim.clip_grad_norm([("w", np.ones(2))], 1.0)
    with pytest.raises(ValueError, match="floating"):
        optim.clip_grad_norm([np.ones(2, dtype=np.int64)], 1.0)

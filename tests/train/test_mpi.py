"""Data-parallel training under real MPI: ``mpiexec -n 2 rnnkit <app> train`` against one process.

Each test starts real processes (mpiexec from the `mpi` extra's MPICH wheel, or the system's)
and skips only where mpiexec or mpi4py is missing.  In float64 with dropout 0, two ranks at a
global batch B must give the parameters, the optimizer moments, the carried state and the
losses of one process at batch B within 1e-12 relative (only the order of the sums differs):
a wrong share of a shard, a missed row or a stale buffer shows up as a difference of 1e-3 or
more.  Checkpoints cross K in both directions; bad input and a dying rank end the job with an
error, quickly.
"""
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from rnnkit.data.audio import write_wav

MPIEXEC = next((str(p) for p in (Path(sys.executable).parent / "mpiexec", shutil.which("mpiexec"))
                if p and Path(p).exists()), None)
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    MPIEXEC is None or importlib.util.find_spec("mpi4py") is None,
    reason="needs an MPI implementation (mpiexec) and mpi4py: pip install -e '.[mpi]'")]

LAUNCHER = ("PMI_", "OMPI_", "MV2_", "PMIX_", "SLURM_", "HYDRA_", "RNNKIT_MPI")


def run(args, cwd, n=None, env=None, mpmd=None, timeout=180):
    """``python -m rnnkit *args`` in ``cwd``: alone (n None) or as n ranks under mpiexec;
    ``mpmd``: a list of (rank count, argv) for mpiexec's MPMD form (a : b)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(LAUNCHER)}
    clean.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", **(env or {}))
    if mpmd is not None:
        cmd = [MPIEXEC]
        for k, (count, argv) in enumerate(mpmd):
            cmd += ([":"] if k else []) + ["-n", str(count), *argv]
    else:
        cmd = [sys.executable, "-m", "rnnkit", *args]
        cmd = cmd if n is None else [MPIEXEC, "-n", str(n), *cmd]
    return subprocess.run(cmd, cwd=cwd, env=clean, capture_output=True, text=True, timeout=timeout)


def ok(result):
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def assert_same_run(a: Path, b: Path, rtol=1e-12):
    """Two run folders hold the same parameters, best parameters, Adam moments, task state and
    history, within rtol relative to each array's largest entry."""
    for group in ("params", "best", "optim", "task", "member0", "member1"):
        fa, fb = a / f"{group}.npz", b / f"{group}.npz"
        assert fa.exists() == fb.exists(), group
        if not fa.exists():
            continue
        x, y = np.load(fa), np.load(fb)
        assert sorted(x.files) == sorted(y.files), group
        for k in x.files:
            xa, ya = x[k], y[k]
            assert xa.shape == ya.shape and xa.dtype == ya.dtype, (group, k, xa.shape, ya.shape)
            if xa.dtype.kind == "f":
                err = np.abs(xa - ya).max() / max(np.abs(xa).max(), 1e-300) if xa.size else 0.0
                assert err <= rtol, f"{group}.npz {k}: relative difference {err:.3g}"
            else:
                assert np.array_equal(xa, ya), (group, k)
    ma = json.loads((a / "meta.json").read_text())["meta"]
    mb = json.loads((b / "meta.json").read_text())["meta"]
    for key in ("step", "best_step"):
        assert ma.get(key) == mb.get(key), key
    if "history" in ma:
        ha, hb = ma["history"], mb["history"]
        assert ha["train_step"] == hb["train_step"] and ha["eval_step"] == hb["eval_step"]
        np.testing.assert_allclose(hb["train"], ha["train"], rtol=rtol)
        for k in ha["eval"]:
            np.testing.assert_allclose(hb["eval"][k], ha["eval"][k], rtol=rtol)


# ------------------------------------------------------------------------------ data
@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder with a small text, a pairs file, a tone 'speech' manifest and a series CSV."""
    d = tmp_path_factory.mktemp("mpi")
    rng = np.random.default_rng(0)
    words = "the cat sat on a mat and a dog ran far away from home".split()
    (d / "t.txt").write_text(" ".join(rng.choice(words, 2500)) + "\n")
    digits = "zero one two three four five six seven eight nine".split()
    pairs = [(str(n), " ".join(digits[int(c)] for c in str(n))) for n in rng.integers(0, 999, 200)]
    (d / "p.tsv").write_text("".join(f"{a}\t{b}\n" for a, b in pairs))
    tones = {"a": 500.0, "b": 1100.0, " ": 2300.0}
    (d / "wav").mkdir()
    lines = []
    for k in range(24):
        text = " ".join("".join(rng.choice(list("ab"), rng.integers(1, 3))) for _ in range(2))
        rate, parts = 8000, [np.zeros(400)]
        for ch in text:
            t = np.arange(int(rate * rng.uniform(0.08, 0.14))) / rate
            parts += [0.4 * np.sin(2 * np.pi * tones[ch] * t) * np.hanning(len(t)), np.zeros(300)]
        write_wav(d / "wav" / f"{k}.wav", np.concatenate(parts), rate)
        lines.append(json.dumps({"audio": f"wav/{k}.wav", "text": text}))
    (d / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    t = np.arange(120)
    series = 50 + 0.3 * t + 5 * np.sin(2 * np.pi * t / 12) + rng.standard_normal(120)
    (d / "s.csv").write_text("t,y\n" + "".join(f"{k},{v:.4f}\n" for k, v in zip(t, series)))
    return d


LM = ["lm", "train", "--text", "t.txt", "--dtype", "float64", "--dropout", "0", "--batch", "4",
      "--seq-len", "10", "--hidden", "12", "--layers", "2", "--embed", "6", "--eval-every", "4",
      "--warmup", "0", "--lr", "3e-3", "--min-lr", "3e-3", "--quiet"]  # a constant schedule
APPS = {
    "lm": LM + ["--steps", "8"],
    "translate": ["translate", "train", "--pairs", "p.tsv", "--dtype", "float64", "--steps", "6",
                  "--eval-every", "3", "--batch", "6", "--hidden", "10", "--embed", "6",
                  "--warmup", "2", "--teacher-forcing", "0.8", "--quiet"],
    "asr": ["asr", "train", "--manifest", "manifest.jsonl", "--dtype", "float64", "--dropout", "0",
            "--steps", "6", "--eval-every", "3", "--batch", "6", "--hidden", "8", "--layers", "2",
            "--warmup", "2", "--val-fraction", "0.25", "--quiet"],
    "forecast": ["forecast", "train", "--csv", "s.csv", "--target", "y", "--horizon", "4",
                 "--dtype", "float64", "--steps", "9", "--eval-every", "3", "--batch", "8",
                 "--hidden", "6", "--ensemble", "1", "--no-linear-init", "--no-refit", "--quiet"],
}


@pytest.fixture(scope="module")
def single(work):
    """The run folder of ``app`` trained by one process (each trained once per module)."""
    done = {}

    def get(app):
        if app not in done:
            done[app] = ok(run([*APPS[app], "--out", f"{app}1"], work))
        return work / f"{app}1", done[app]
    return get


@pytest.mark.parametrize("app", sorted(APPS))
def test_two_ranks_train_exactly_what_one_process_trains(work, single, app):
    one, alone = single(app)
    two = ok(run([*APPS[app], "--out", f"{app}2"], work, n=2))
    assert "2 ranks" in two.stderr or app == "forecast"
    assert_same_run(one, work / f"{app}2")
    if app == "forecast":  # the network of the ensemble: a fit of its own
        assert_same_run(one / "runs" / "member1", work / f"{app}2" / "runs" / "member1")
    # rank 0 alone prints: one report line, not two
    assert two.stderr.count("checkpoint in") == alone.stderr.count("checkpoint in")


def test_checkpoints_cross_between_two_ranks_and_one_process(work, single):
    """4 steps on 2 ranks then 4 more in one process (and the other way round) end where 8
    uninterrupted steps in one process end: the streams' carried state is gathered into the
    checkpoint and re-sharded on resume (step 4 is a validation step in every run)."""
    whole, _ = single("lm")
    ok(run([*LM, "--steps", "4", "--out", "a"], work, n=2))
    h = np.load(work / "a" / "task.npz")["h"]
    assert h.shape == (2, 4, 12)  # (layers, streams, hidden): every stream, not one rank's
    ok(run([*LM, "--steps", "8", "--out", "a", "--resume"], work))
    ok(run([*LM, "--steps", "4", "--out", "b"], work))
    ok(run([*LM, "--steps", "8", "--out", "b", "--resume"], work, n=2,
           env={"RNNKIT_MPI_CHECK": "1"}))  # the debug mode: parameters compared every step
    assert_same_run(whole, work / "a")
    assert_same_run(whole, work / "b")


def _fails(result, message, seconds=None):
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]


def test_a_batch_the_ranks_cannot_share_is_refused_before_any_data_is_read(work):
    result = run([*LM, "--batch", "5", "--out", "bad"], work, n=2)
    _fails(result, "--batch 5 is not divisible by the 2 ranks")
    assert result.stderr.count("rnnkit: error") == 1  # printed once, by rank 0
    assert not (work / "bad").exists()


def test_ranks_started_with_different_settings_or_data_are_refused(work):
    cmd = [sys.executable, "-m", "rnnkit", *LM, "--steps", "2", "--out", "mix"]
    result = run(None, work, mpmd=[(1, [*cmd, "--seed", "0"]), (1, [*cmd, "--seed", "1"])])
    _fails(result, "--seed is 0 on rank 0 but 1 on rank 1")
    # the same command, but rank 1's working folder holds another t.txt
    other = work / "other"
    other.mkdir(exist_ok=True)
    (other / "t.txt").write_text((work / "t.txt").read_text()[:9000])
    result = run(None, work, mpmd=[(1, cmd), (1, ["-wdir", str(other), *cmd])])
    _fails(result, "the ranks disagree on the data: rank 1's differs from rank 0's")
    # ... or none at all: rank 1's error, printed by rank 0
    empty = work / "empty"
    empty.mkdir(exist_ok=True)
    result = run(None, work, mpmd=[(1, cmd), (1, ["-wdir", str(empty), *cmd])])
    _fails(result, "rank 1 of 2: text file not found")
    assert not (work / "mix" / "params.npz").exists()


def test_a_rank_that_never_reaches_the_start_times_out(work):
    cmd = [sys.executable, "-m", "rnnkit", *LM, "--steps", "2", "--out", "late"]
    sleeper = [sys.executable, "-c", "from mpi4py import MPI; import time; time.sleep(120)"]
    start = time.monotonic()
    result = run(None, work, mpmd=[(1, cmd), (1, sleeper)], env={"RNNKIT_MPI_TIMEOUT": "2"})
    assert result.returncode != 0
    assert "waited 2 s for the other ranks" in result.stderr, result.stderr[-3000:]
    assert time.monotonic() - start < 60


def start_long_run(work, out, token):
    """mpiexec -n 2 rnnkit lm train for ever, returned once 20 steps are done."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(LAUNCHER)}
    args = [*LM, "--steps", "100000", "--out", out, "--eval-every", "20"]
    args.remove("--quiet")
    proc = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, "-m", "rnnkit", *args],
                            cwd=work, env={**clean, "RNNKIT_TEST_TOKEN": token},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    while not any(line.startswith("step 20:") for line in seen):  # training is under way
        line = proc.stdout.readline()
        if not line:
            proc.kill()
            raise AssertionError("".join(seen))
        seen.append(line)
    return proc


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank via /proc")
def test_a_rank_killed_mid_run_ends_the_job_with_an_error(work):
    token = uuid.uuid4().hex
    proc = start_long_run(work, "killed", token)
    try:
        os.kill(_rank_pid(token, 1), signal.SIGKILL)
        killed = time.monotonic()
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, out[-3000:]
    assert time.monotonic() - killed < 60
    # the launcher's report of the killed rank, or rank 0's own when it noticed first
    assert "lost contact with the other ranks" in out or "Killed" in out or "KILLED" in out, out


def test_ctrl_c_stops_every_rank_at_the_same_step_with_a_checkpoint(work):
    """mpiexec passes SIGINT to every rank, each at its own moment; the stop flags travel in
    the step's allreduce, so all ranks stop after the same step and rank 0 checkpoints it."""
    proc = start_long_run(work, "stopped", uuid.uuid4().hex)
    try:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out[-3000:]
    assert "interrupted; --resume continues" in out
    step = json.loads((work / "stopped" / "meta.json").read_text())["meta"]["step"]
    assert step >= 20 and f"step {step} of 100000 (interrupted" in out


BROKEN = """
import sys
import numpy as np
from rnnkit.nn import Linear
from rnnkit.train.engine import fit
from rnnkit.train.mpi import report, world
from rnnkit.train.settings import TrainSettings
from rnnkit.train.task import Task

class Broken(Task):
    app = "broken"

    def __init__(self):
        self.model, self.calls = Linear(3, 1, dtype=np.float64, rng=np.random.default_rng(0)), 0

    def batch(self, step):
        return np.arange(4)

    def loss(self, idx):
        self.calls += 1
        if self.calls == 3 and world().rank == 1:
            raise RuntimeError("boom on rank 1")
        y = self.model.forward(np.ones((len(idx), 3)))
        self.model.backward(np.ones_like(y) / len(idx))
        return float(y.mean())

    def evaluate_shard(self, rank, size):
        return {"loss": (0.0, 1.0)}

try:
    fit(Broken(), TrainSettings(steps=10, batch=4, eval_every=5), progress=False)
except ValueError as exc:
    sys.exit(report(f"rnnkit: error: {exc}", exc, 1))
"""


def test_an_error_in_one_ranks_step_stops_every_rank_and_rank_0_names_it(work):
    (work / "broken.py").write_text(BROKEN)
    result = run(None, work, mpmd=[(2, [sys.executable, "broken.py"])])
    assert result.returncode == 1, result.stderr[-3000:]
    line = "rnnkit: error: rank 1 of 2 failed in forward/backward: RuntimeError: boom on rank 1"
    assert result.stderr.count(line) == 1, result.stderr[-3000:]


def _rank_pid(token: str, rank: int) -> int:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        ranks = {f"{name}={rank}".encode() for name in ("PMI_RANK", "OMPI_COMM_WORLD_RANK")}
        if f"RNNKIT_TEST_TOKEN={token}".encode() in env and ranks & set(env):
            return int(pid)
    raise AssertionError(f"no process of rank {rank} found")


def test_without_a_launcher_mpi4py_is_never_imported(work):
    code = ("import sys, rnnkit; from rnnkit.cli import main; "
            f"assert main({[*LM, '--steps', '2', '--out', 'solo']!r}) == 0; "
            "assert 'mpi4py' not in sys.modules, 'imported'")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(LAUNCHER)}
    result = subprocess.run([sys.executable, "-c", code], cwd=work, env=clean,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]

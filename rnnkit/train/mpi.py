"""Data-parallel training over MPI: ``mpiexec -n K rnnkit <app> train ...`` (or ``srun``).

K processes (ranks) train one model, on one machine or many.  `world()` is the group the
training loop (`rnnkit.train.engine.fit`) runs with: a plain `Group` of one process - every
method the single-process thing, mpi4py never imported - unless a launcher started this
process as one of K > 1 (the variables mpiexec, mpirun and srun set: `launched`), or
``RNNKIT_MPI=1`` asks for MPI with another launcher.  Then it is an `MPIGroup` over mpi4py's
``COMM_WORLD`` and each step goes like this:

1. every rank builds the same global batch (``task.batch(step)`` is a function of the step)
   and takes its shard of it (``task.shard(batch, rank, K)``: every K-th row);
2. forward and backward on the shard give the gradient of the shard's mean loss; it is weighted
   by the shard's share of the global mean, ``task.weight(shard) / task.weight(batch)`` (rows,
   or real tokens for a masked cross-entropy), so the weighted sum over the ranks is the
   gradient of the global batch's mean loss - what one process computes, up to the order of
   the sums;
3. one ``Allreduce`` over a single flat buffer sums the weighted gradients, the weighted losses,
   a failure count and the stop flags (Ctrl-C, --max-time), so every rank applies the same
   update, sees the same loss and stops at the same step.  Per step that is the parameter count
   times 4 bytes (float32; 8 in float64) and a few numbers.

At the start of a run every rank meets the others within ``RNNKIT_MPI_TIMEOUT`` seconds (300 by
default; a rank that fails or hangs before then ends the job with an error instead of leaving
the others waiting forever); the ranks compare their command lines, settings, model configs and
data fingerprints (``task.data_digest()``) and refuse to train if they differ; rank 0's
checkpoint and parameters are broadcast, and each rank's generators (dropout masks) are jumped
ahead by its rank so that the ranks draw independent masks.

Rank 0 alone reads and writes the run folder (checkpoints, plots) and prints progress; the
task's carried state (the language model's hidden state, one row per stream) is gathered into
each checkpoint and re-sharded on resume (``task.state_rows``), so a run may resume with
another K.  Validation is split too: ``task.evaluate_shard(rank, K)`` gives sums and counts
that are summed over the ranks.  The parameters are compared across ranks (a sha256 of their
bytes) at every validation, and every N steps with ``RNNKIT_MPI_CHECK=N`` (a debug mode).

Failures: an error on every rank (bad settings, a diverged loss) is printed once, by rank 0,
and every rank exits 1; an error in one rank's forward/backward reaches the others through the
step's allreduce and every rank stops with rank 0 naming it; any other error on one rank prints
it with the rank and calls ``MPI_Abort``, which ends the whole job.  A rank that dies (killed,
out of memory) is noticed by the launcher, which ends the others and exits non-zero.  Only
start-up has a timeout: a rank that hangs mid-run (not dies) leaves the others waiting.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
import traceback
from typing import Any, Callable

import numpy as np

SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "PMIX_RANK")
TIMEOUT = 300.0  # seconds every rank has to reach each start-up meeting (RNNKIT_MPI_TIMEOUT)

_WORLD = None


class RankError(ValueError):
    """An error every rank raises together (rank 0 prints it, every rank exits 1)."""

    all_ranks = True


def _env_int(name: str) -> int | None:
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        return None


def launched() -> int:
    """How many processes a launcher started this one among (1: none, or MPI switched off).

    mpiexec/mpirun of MPICH, Intel MPI, Open MPI and MVAPICH set PMI_SIZE /
    OMPI_COMM_WORLD_SIZE / MV2_COMM_WORLD_SIZE; srun sets PMI_SIZE (--mpi=pmi2) or PMIX_RANK
    with SLURM_STEP_NUM_TASKS (--mpi=pmix).  RNNKIT_MPI=0 ignores them all.
    """
    if os.environ.get("RNNKIT_MPI", "").strip() == "0":
        return 1
    sizes = [_env_int(name) for name in SIZE_VARIABLES]
    if "PMIX_RANK" in os.environ:
        sizes.append(_env_int("SLURM_STEP_NUM_TASKS"))
    return max([s for s in sizes if s is not None] or [1])


def launched_rank() -> int:
    """This process's rank as the launcher's variables say (0 when there are none)."""
    for name in (*RANK_VARIABLES, "SLURM_PROCID"):
        value = _env_int(name)
        if value is not None:
            return value
    return 0


def world() -> "Group":
    """The group this process trains in: created on the first call (MPI starts then)."""
    global _WORLD
    if _WORLD is None:
        forced = os.environ.get("RNNKIT_MPI", "").strip() == "1"
        _WORLD = MPIGroup() if forced or launched() > 1 else Group()
    return _WORLD


class Group:
    """A group of one process: what `fit` runs with outside MPI; every method is the plain
    single-process thing (the task's whole batch, its own evaluate, nothing to exchange)."""

    rank, size = 0, 1

    @property
    def root(self) -> bool:
        """Rank 0: the one that reads and writes the run folder and prints."""
        return self.rank == 0

    def same(self, what: str, values: dict) -> None:
        """Refuse to go on unless every rank has the same ``values`` (named in the error)."""

    def divides(self, batch: int) -> None:
        """Refuse a global batch that the ranks cannot share equally."""
        if batch % self.size:
            raise RankError(f"--batch {batch} is not divisible by the {self.size} ranks (each "
                            "takes an equal share of every batch): choose a multiple of "
                            f"{self.size}")

    def on_root(self, fn: Callable, *args):
        """``fn(*args)`` on rank 0 alone; its result (or its error) on every rank."""
        return fn(*args)

    def together(self, fn: Callable, *args):
        """``fn(*args)`` on every rank; an error on any rank is raised on all of them."""
        return fn(*args)

    def start(self, task, settings, checkpoint):
        """Check that the ranks agree on the run; -> rank 0's checkpoint."""
        return checkpoint

    def sync(self, task) -> None:
        """Rank 0's parameters on every rank; a dropout stream of its own for each rank."""

    def bcast(self, value):
        """Rank 0's ``value`` on every rank."""
        return value

    def loss(self, task, batch, *flags: Callable[[], bool]):
        """Forward + backward of ``task`` on (this rank's shard of) the global ``batch``;
        -> (mean loss of the whole batch, each flag or-ed over the ranks), gradients summed."""
        return (task.loss(batch), *(f() for f in flags))

    def evaluate(self, task) -> dict[str, float]:
        """Validation metrics of the current parameters, over every rank's share."""
        return {k: float(v) for k, v in task.evaluate().items()}

    def check(self, model, step: int) -> None:
        """Raise if the parameters differ between ranks."""

    def gather_state(self, task) -> dict[str, np.ndarray]:
        """The task's state (every rank's rows of it) for a checkpoint."""
        return task.state()

    def shard_state(self, task, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """This rank's part of a checkpoint's task state."""
        return arrays


class MPIGroup(Group):
    """The ranks of mpi4py's COMM_WORLD (see the module docstring)."""

    def __init__(self) -> None:
        try:
            from mpi4py import MPI  # only here: importing rnnkit never starts MPI
        except ImportError:
            raise ValueError(f"started by an MPI launcher ({launched()} processes) but mpi4py is "
                             "not installed: pip install 'rnnkit[mpi]' (see the README)") from None

        self.MPI, self.comm = MPI, MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        expected = launched()
        if expected > 1 and self.size != expected:
            raise ValueError(
                f"the launcher started {expected} processes but MPI sees {self.size}: mpiexec "
                "belongs to another MPI than the one mpi4py uses (`python -m mpi4py "
                "--mpi-lib-version` names mpi4py's; use that one's mpiexec)")
        self.timeout = _setting("RNNKIT_MPI_TIMEOUT", TIMEOUT)
        self.check_every = int(_setting("RNNKIT_MPI_CHECK", 0))
        self._steps = 0
        self._buffer = None

    # -- start-up ----------------------------------------------------------------------------
    def meet(self, where: str) -> None:
        """Wait for every rank for at most ``timeout`` seconds, else end the job."""
        request = self.comm.Ibarrier()
        deadline = time.monotonic() + self.timeout
        while not request.Test():
            if time.monotonic() > deadline:
                print(f"rnnkit: error: rank {self.rank} of {self.size} waited {self.timeout:g} s "
                      f"for the other ranks at {where}: one of them failed, hangs or is still "
                      "loading its data (RNNKIT_MPI_TIMEOUT sets the limit); ending the job",
                      file=sys.stderr, flush=True)
                self.abort(1)
            time.sleep(0.002)

    def same(self, what: str, values: dict) -> None:
        self.meet(f"the start ({what})")
        every = self.comm.allgather(values)
        for r, other in enumerate(every):
            differ = sorted(k for k in set(values) | set(other) if other.get(k) != every[0].get(k))
            if differ:
                k = differ[0]
                raise RankError(f"the ranks were started with different {what}: {k} is "
                                f"{every[0].get(k)!r} on rank 0 but {other.get(k)!r} on rank {r} "
                                "(every rank must run the same command on the same data)")

    def on_root(self, fn: Callable, *args):
        self.meet("the start (reading the run folder)")
        result = error = None
        if self.root:
            try:
                result = fn(*args)
            except (ValueError, OSError) as exc:
                error = str(exc)
        error, result = self.comm.bcast((error, result), root=0)
        if error is not None:
            raise RankError(error)
        return result

    def together(self, fn: Callable, *args):
        result = error = None
        try:
            result = fn(*args)
        except (ValueError, OSError) as exc:
            error = str(exc)
        self.meet("the start (loading the data)")
        errors = self.comm.allgather(error)
        failed = [(r, e) for r, e in enumerate(errors) if e is not None]
        if failed:
            r, e = failed[0]
            if len(failed) == self.size and len(set(errors)) == 1:
                raise RankError(e)
            raise RankError(f"rank {r} of {self.size}: {e}")
        return result

    def start(self, task, settings, checkpoint):
        self.same("settings", dataclasses.asdict(settings))
        self.divides(settings.batch)
        mine = {"data": task.data_digest(), "model config": _digest(task.config())}
        every = self.comm.allgather(mine)
        for what in mine:
            differ = [r for r, d in enumerate(every) if d[what] != every[0][what]]
            if differ:
                raise RankError(f"the ranks disagree on the {what}: rank {differ[0]}'s differs "
                                "from rank 0's (every rank must read the same data files)")
        return self.comm.bcast(checkpoint if self.root else None, root=0)

    def sync(self, task) -> None:
        for _, p, _ in task.model.named_parameters():
            self.comm.Bcast(p, root=0)
        for name, g in task.rngs().items():
            if self.rank:
                if not hasattr(g.bit_generator, "jumped"):
                    raise ValueError(f"the {name} generator ({type(g.bit_generator).__name__}) "
                                     "cannot give each rank a stream of its own")
                g.bit_generator.state = g.bit_generator.jumped(self.rank).state
        self._steps = 0

    def bcast(self, value):
        return self.comm.bcast(value, root=0)

    # -- one step ----------------------------------------------------------------------------
    def loss(self, task, batch, *flags: Callable[[], bool]):
        if self.check_every and self._steps % self.check_every == 0:
            self.check(task.model, self._steps)
        self._steps += 1
        part = task.shard(batch, self.rank, self.size)
        total = task.weight(batch)
        share = task.weight(part) / total if total else 0.0
        value, error = 0.0, None
        if share > 0:  # an epoch's last, smaller batch may leave a rank nothing
            try:
                value = task.loss(part)
            except Exception as exc:  # the others learn of it from the allreduce below
                error = exc
                traceback.print_exc()
                task.model.zero_grad()
        params = list(task.model.named_parameters())
        n = sum(g.size for _, _, g in params)
        buf = self._buffer
        if buf is None or buf.size != n + 2 + len(flags) or buf.dtype != params[0][2].dtype:
            buf = self._buffer = np.empty(n + 2 + len(flags), params[0][2].dtype)
        o = 0
        for _, _, g in params:  # the gradient of this shard's mean, weighted by its share
            np.multiply(g, share, out=buf[o : o + g.size].reshape(g.shape))
            o += g.size
        buf[o], buf[o + 1] = value * share, error is not None
        buf[o + 2 :] = [bool(f()) for f in flags]
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        if buf[o + 1]:
            mine = None if error is None else f"{type(error).__name__}: {error}"
            messages = self.comm.allgather(mine)
            r = next(r for r, m in enumerate(messages) if m is not None)
            raise RankError(f"rank {r} of {self.size} failed in forward/backward: {messages[r]}")
        o = 0
        for _, _, g in params:
            g[...] = buf[o : o + g.size].reshape(g.shape)
            o += g.size
        return (float(buf[o]), *(bool(b > 0) for b in buf[o + 2 :]))

    # -- validation, checks, state -----------------------------------------------------------
    def evaluate(self, task) -> dict[str, float]:
        sums = task.evaluate_shard(self.rank, self.size)
        if sums is None:  # the task does not split its validation: rank 0 runs all of it
            return self.comm.bcast(Group.evaluate(self, task) if self.root else None, root=0)
        names = list(sums)
        totals = np.array([[float(sums[k][0]), float(sums[k][1])] for k in names]).reshape(-1, 2)
        self.comm.Allreduce(self.MPI.IN_PLACE, totals, op=self.MPI.SUM)
        return {k: s / c if c else float("nan") for k, (s, c) in zip(names, totals)}

    def check(self, model, step: int) -> None:
        h = hashlib.sha256()
        for _, p, _ in model.named_parameters():
            h.update(np.ascontiguousarray(p).tobytes())
        every = self.comm.allgather(h.hexdigest())
        differ = [r for r, d in enumerate(every) if d != every[0]]
        if differ:
            raise RankError(f"the parameters differ between ranks after {step} steps (rank "
                            f"{differ[0]} from rank 0): the ranks no longer apply the same update")

    def gather_state(self, task) -> dict[str, np.ndarray]:
        parts = self.comm.gather(task.state(), root=0)
        if not self.root or task.state_rows is None or not parts[0]:
            return parts[0] if self.root else {}
        axis, out = task.state_rows, {}
        for k in parts[0]:
            shape = list(parts[0][k].shape)
            shape[axis] = sum(p[k].shape[axis] for p in parts)
            whole = np.empty(shape, parts[0][k].dtype)
            for r, p in enumerate(parts):  # rank r holds rows r, r + K, r + 2K, ...
                np.moveaxis(whole, axis, 0)[r :: self.size] = np.moveaxis(p[k], axis, 0)
            out[k] = whole
        return out

    def shard_state(self, task, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if task.state_rows is None:
            return arrays
        axis = task.state_rows
        return {k: np.ascontiguousarray(np.moveaxis(np.moveaxis(v, axis, 0)[self.rank :: self.size],
                                                    0, axis)) for k, v in arrays.items()}

    def abort(self, code: int) -> None:
        """End every rank of the job (MPI_Abort); never returns."""
        sys.stderr.flush()
        # MPI_Abort makes the launcher tear the job down at once, and a message still on its way
        # through the launcher's output forwarding can be lost: give it a moment
        time.sleep(ABORT_GRACE)
        try:
            self.comm.Abort(code)
        finally:
            os._exit(code)  # should MPI_Abort return, exit without MPI_Finalize (it would wait)


ABORT_GRACE = 0.5  # seconds between the last error line and MPI_Abort


def _setting(name: str, default: float) -> float:
    """A number >= 0 from the environment variable ``name`` (``default`` when unset)."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {raw!r}")
    return value


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def report(message: str, exc: BaseException, code: int) -> int:
    """Print a command's error once for the job; -> the exit status.

    Outside MPI: printed.  Under MPI an error raised on every rank together (`RankError`, a
    diverged loss, or any error before MPI started - every rank runs the same command) is
    printed by rank 0 alone; an error on one rank alone is printed with its rank and ends the
    whole job (``MPI_Abort``), since the other ranks would otherwise wait for it forever.
    """
    group = _WORLD
    if group is None or group.size == 1:
        if group is None and launched() > 1 and launched_rank() > 0:
            return code
        print(message, file=sys.stderr, flush=True)
        return code
    if getattr(exc, "all_ranks", False):
        if group.root:
            print(message, file=sys.stderr, flush=True)
        return code
    print(f"{message} (rank {group.rank} of {group.size}; ending the job)", file=sys.stderr,
          flush=True)
    group.abort(code)
    return code


def crashed(exc: BaseException) -> None:
    """An unexpected exception: under MPI, what happened, then the end of the whole job.

    An MPI error in a collective means that another rank died (killed, out of memory, its
    machine gone): one line says so; anything else is a bug and gets its traceback.
    """
    group = _WORLD
    if group is None or group.size == 1:
        return
    if isinstance(exc, group.MPI.Exception):
        what = group.MPI.Get_error_string(exc.Get_error_class())
        print(f"rnnkit: error: rank {group.rank} of {group.size} lost contact with the other "
              f"ranks - one of them died or its machine is unreachable (MPI: {what}); ending "
              "the job", file=sys.stderr, flush=True)
    else:
        traceback.print_exception(exc)
        print(f"rnnkit: error: rank {group.rank} of {group.size} crashed; ending the job",
              file=sys.stderr, flush=True)
    group.abort(1)


__all__ = ["Group", "MPIGroup", "RankError", "crashed", "launched", "report", "world"]

"""Where the jobs of ``rnnkit compare`` run: in this process, in local worker processes, or as
tasks on a Ray cluster.  Every executor runs the same function (`compare_trial.run_job`) on the
same job dicts and returns the results in job order, so the race does not depend on where its
jobs ran (tested: local processes and Ray give identical results for the same seeds).

Workers run BLAS single-threaded (the per-step matrices are small; threads that share cores
with the other workers spin).  Ray is imported only here, only when ``--ray`` is given.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

from .compare_trial import run_job

BLAS_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

Done = Callable[[int, dict], None]


def work(job: dict) -> dict:
    """A job in a worker: in the caller's folder when it exists here, BLAS at one thread."""
    if job.get("cwd") and os.path.isdir(job["cwd"]):
        os.chdir(job["cwd"])
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        limit = contextlib.nullcontext()
    else:
        limit = threadpool_limits(limits=1, user_api="blas")
    with limit:
        return run_job(job)


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class Serial:
    """Jobs one after another in this process (``--workers 1``); ``clock`` is the time the
    budget counts (tests pass a fake one)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.workers, self.clock, self.where = 1, clock, "this process"

    def run(self, jobs: list[dict], done: Done | None = None) -> list[dict]:
        results = []
        for i, job in enumerate(jobs):
            results.append(run_job(job, self.clock))
            if done:
                done(i, results[-1])
        return results

    def close(self) -> None:
        pass


class Processes:
    """Jobs in ``workers`` local processes (started fresh: spawn, not fork)."""

    def __init__(self, workers: int) -> None:
        self.workers, self.where = workers, f"{workers} local processes"
        self._saved = {k: os.environ.get(k) for k in BLAS_VARS}
        os.environ.update({k: "1" for k in BLAS_VARS})  # inherited by the processes it starts
        self._pool = None

    def _start(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers,
                                             mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def run(self, jobs: list[dict], done: Done | None = None) -> list[dict]:
        pool = self._start()
        futures = {pool.submit(work, job): i for i, job in enumerate(jobs)}
        results: list = [None] * len(jobs)
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                i = futures[fut]
                try:
                    results[i] = fut.result()
                except BrokenProcessPool:
                    results[i] = {"status": "crashed", "error": "its worker process died (killed, "
                                  "or out of memory?)"}
                    self._pool = None  # start a fresh pool for the next rung
                except Exception as exc:  # a result that cannot come back (pickling)
                    results[i] = {"status": "crashed", "error": f"{type(exc).__name__}: {exc}"}
                if done:
                    done(i, results[i])
        return results

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
        for k, v in self._saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class RayCluster:
    """Jobs as tasks (one CPU each) on the Ray cluster at ``address`` ("auto": the one this
    machine belongs to, e.g. started with ``ray start --head``); at most ``workers`` at a time
    (default: the cluster's CPUs).  The results, checkpoints included, come back to the caller."""

    def __init__(self, address: str, workers: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ValueError("--ray needs Ray: pip install 'rnnkit[ray]'") from None
        self.ray, self.connected = ray, False
        if not ray.is_initialized():
            try:
                ray.init(address=address, log_to_driver=False, logging_level="ERROR")
            except (ConnectionError, RuntimeError, ValueError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ValueError(f"--ray {address}: cannot connect to a Ray cluster ({first}); "
                                 "start one with `ray start --head`") from None
            self.connected = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = workers or cpus
        self.where = f"Ray cluster {address} ({cpus} CPUs)"
        self._task = ray.remote(num_cpus=1, max_retries=0)(work).options(
            runtime_env={"env_vars": {k: "1" for k in BLAS_VARS}})

    def run(self, jobs: list[dict], done: Done | None = None) -> list[dict]:
        ray = self.ray
        results: list = [None] * len(jobs)
        waiting, running = list(enumerate(jobs)), {}
        while waiting or running:
            while waiting and len(running) < self.workers:
                i, job = waiting.pop(0)
                running[self._task.remote(job)] = i
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                i = running.pop(ref)
                try:
                    results[i] = ray.get(ref)
                except Exception as exc:  # the task's worker died
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    results[i] = {"status": "crashed", "error": f"Ray task failed: {first}"}
                if done:
                    done(i, results[i])
        return results

    def close(self) -> None:
        if self.connected:
            self.ray.shutdown()

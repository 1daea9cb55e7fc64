#!/usr/bin/env python
"""Data-parallel training throughput under MPI: K = 1 and 2 processes, one BLAS thread each.

For each application the script starts ``mpiexec -n K python bench_mpi.py --worker APP`` (K = 1
runs without mpiexec: a plain process, the single-process path), which builds the application's
task with its ``rnnkit <app> train`` defaults and trains it with the shared loop
(`rnnkit.train.engine.fit`, under MPI one allreduce per step) for ``--steps`` steps, timing every
step with a callback.  Validation is not timed (it is skipped).  The same steps (the batches are
a function of the step) are timed at every K, after ``--warmup`` untimed ones:

* lm: ``rnnkit lm train`` defaults - 2-layer LSTM 256, embedding 64, batch 32 streams x 100
  characters of the bundled Shakespeare; throughput in characters per second;
* translate: ``rnnkit translate train`` defaults - bidirectional GRU 128 encoder, Bahdanau
  attention decoder, batch 64 - on numbers written as English words; target tokens per second.

Each K runs ``--repeats`` times, alternating (K = 1, 2, 1, 2, ...) so that drifting load on a
shared machine hits both; the best run of each counts.  Parallel efficiency = throughput at K /
(K x throughput at 1).  With K > 1 the worker also times the allreduce of one step's buffer
alone (the parameter count x 4 bytes): the communication each step waits for.

    python benchmarks/bench_mpi.py                       # lm and translate, K = 1, 2
    python benchmarks/bench_mpi.py --apps lm --steps 40 --repeats 3
    python benchmarks/bench_mpi.py --clock cpu           # on cores shared with other work

Needs the `mpi` extra (mpi4py, MPICH's mpiexec).  A standalone script: never collected by pytest.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from fair import cpu_info  # benchmarks/ is on sys.path: the script's folder

ROOT = Path(__file__).resolve().parent.parent
APPS = ("lm", "translate")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Data-parallel training throughput at K = 1, 2.")
    p.add_argument("--apps", nargs="+", choices=APPS, default=list(APPS))
    p.add_argument("--ks", nargs="+", type=int, default=[1, 2], help="process counts (default 1 2)")
    p.add_argument("--steps", type=int, default=30, help="timed steps per run (default 30)")
    p.add_argument("--warmup", type=int, default=4, help="untimed steps first (default 4)")
    p.add_argument("--repeats", type=int, default=3, help="runs per K, alternating (default 3)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: elapsed time; cpu: each rank's CPU time, the slowest rank's "
                        "counting (MPI waits spin, so this is the time on cores of its own: use "
                        "it when other work shares the cores)")
    p.add_argument("--worker", choices=APPS, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ------------------------------------------------------------------------------ the worker
def number_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``"4096"`` -> ``"four thousand ninety six"``: deterministic synthetic translation pairs."""
    import numpy as np
    ones = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
            "fourteen fifteen sixteen seventeen eighteen nineteen").split()
    tens = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()

    def words(k: int) -> str:
        if k < 20:
            return ones[k]
        if k < 100:
            return tens[k // 10] + ("" if k % 10 == 0 else " " + ones[k % 10])
        if k < 1000:
            return ones[k // 100] + " hundred" + ("" if k % 100 == 0 else " " + words(k % 100))
        return words(k // 1000) + " thousand" + ("" if k % 1000 == 0 else " " + words(k % 1000))
    rng = np.random.default_rng(seed)
    return [(str(k), words(int(k))) for k in rng.integers(0, 1_000_000, n)]


def worker(args) -> None:
    """Train one application for warmup + steps steps; rank 0 prints one JSON line."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from rnnkit.train.engine import Callback, fit
    from rnnkit.train.mpi import world

    group = world()
    if args.worker == "lm":
        from rnnkit.apps.lm.train import LMSettings, LMTask
        s = LMSettings(dtype=args.dtype, steps=args.warmup + args.steps, eval_every=10**6)
        task = LMTask(s)

        def units(step):  # characters predicted by the step
            return s.batch * s.seq_len
    else:
        from rnnkit.apps.seq2seq.train import TranslateSettings, TranslateTask
        s = TranslateSettings(dtype=args.dtype, steps=args.warmup + args.steps, eval_every=10**6)
        task = TranslateTask(s, number_pairs(20000))

        def units(step):  # real target tokens (eos included) of the step's global batch
            return task.weight(task.batch(step))
    task.evaluate_shard = lambda rank, size: {"loss": (0.0, 1.0)}  # validation is not timed

    now = time.process_time if args.clock == "cpu" else time.perf_counter

    class Clock(Callback):
        def __init__(self):
            self.times = []

        def on_step_end(self, run):
            self.times.append(now())

    clock = Clock()
    start = now()
    fit(task, s, None, callbacks=[clock], progress=False)
    clock.times.insert(0, start)
    seconds = clock.times[-1] - clock.times[args.warmup]
    if group.size > 1:  # the slowest rank's
        seconds = group.comm.allreduce(seconds, op=group.MPI.MAX)
    count = sum(units(k) for k in range(args.warmup, args.warmup + args.steps))
    result = {"app": args.worker, "K": group.size, "seconds": seconds, "units": count,
              "mpi": group.MPI.Get_library_version().splitlines()[0].strip() if group.size > 1 else "",
              "step_ms": 1000 * statistics.median(np.diff(clock.times[args.warmup:])),
              "params": task.model.num_parameters()}
    if group.size > 1:  # the communication of one step alone: the allreduce of its buffer
        buf = np.zeros(result["params"] + 4, np.dtype(args.dtype))
        spent = []
        for _ in range(30):
            group.comm.Barrier()
            t0 = time.perf_counter()
            group.comm.Allreduce(group.MPI.IN_PLACE, buf, op=group.MPI.SUM)
            spent.append(time.perf_counter() - t0)
        result["allreduce_ms"] = 1000 * statistics.median(spent)
    if group.root:
        print(json.dumps(result), flush=True)


# ------------------------------------------------------------------------------ the driver
def mpiexec() -> str:
    for path in (Path(sys.executable).parent / "mpiexec", shutil.which("mpiexec")):
        if path and Path(path).exists():
            return str(path)
    sys.exit("bench_mpi: no mpiexec found: pip install -e '.[mpi]'")


def launch(app: str, k: int, args) -> dict:
    env = {key: v for key, v in os.environ.items() if not key.startswith(("PMI_", "OMPI_"))}
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, __file__, "--worker", app, "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--dtype", args.dtype, "--clock", args.clock]
    if k > 1:
        cmd = [mpiexec(), "-n", str(k), *cmd]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"bench_mpi: {' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])




def main() -> None:
    args = parse_args()
    if args.worker:
        return worker(args)
    import mpi4py  # the version only: MPI itself starts in the workers
    import numpy as np

    print(f"CPU: {cpu_info()['model']}, {os.cpu_count()} logical cores; load average at start "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"mpi4py {mpi4py.__version__}; NumPy {np.__version__}; Python "
          f"{platform.python_version()}; 1 BLAS thread per rank")
    print(f"{args.dtype}, {args.steps} timed steps after {args.warmup} untimed, best of "
          f"{args.repeats} alternating runs per K, {args.clock} clock; validation not timed")
    unit = {"lm": "chars/s", "translate": "target tokens/s"}
    rows = []
    for app in args.apps:
        best: dict[int, dict] = {}
        for _ in range(args.repeats):
            for k in args.ks:
                r = launch(app, k, args)
                if k not in best or r["seconds"] < best[k]["seconds"]:
                    best[k] = r
        mpi = next((r["mpi"] for r in best.values() if r["mpi"]), "")
        if mpi and app == args.apps[0]:
            print(mpi)
        one = best[min(args.ks)]
        base = one["units"] / one["seconds"] / min(args.ks)
        for k in args.ks:
            r = best[k]
            rate = r["units"] / r["seconds"]
            comm = f"{r['allreduce_ms']:.2f} ms" if "allreduce_ms" in r else "-"
            rows.append(f"| {app} ({r['params']:,} parameters, {r['params'] * 4 / 1e6:.2f} MB/step) "
                        f"| {k} | {rate:,.0f} {unit[app]} | {r['step_ms']:.0f} ms | {comm} | "
                        f"{rate / (k * base):.2f} |")
    print("\n| app | K | throughput | median step | allreduce alone | parallel efficiency |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

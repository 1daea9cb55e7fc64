"""Sequence-classification quality: `rnnkit classify train`'s defaults on the UCR/UEA problems
that aeon ships inside its wheel, beside 1-NN DTW and ROCKET trained in the same run.

    pip install -e '.[classify-bench]'      # aeon, for its bundled .ts files and the baselines
    python benchmarks/classify_quality.py [--budget 300] [--datasets A B ...] [--out DIR]

For every problem: the official TRAIN/TEST split, read from aeon's package folder with rnnkit's
own ``.ts`` reader (nothing is downloaded); rnnkit trains with the defaults of
``ClassifySettings`` - the same for every problem, nothing tuned per data set - with the
training budget counted in CPU seconds of this process (BLAS single-threaded); the best
parameters are scored once on TEST.  The baselines see exactly the same arrays: 1-NN DTW with a
full warping window (aeon's KNeighborsTimeSeriesClassifier, dependent DTW for multivariate
series, unequal lengths as they are) and ROCKET (aeon's RocketClassifier, 10,000 kernels; it
cannot take unequal lengths, so those series are zero-padded to the longest).  The published
column quotes the archive papers' 1-NN DTW accuracies.  Prints the settings, the CPU and one
markdown table; ``--json`` also writes the numbers.
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"  # before NumPy and numba load: every method on one core
import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from fair import cpu_info  # noqa: E402  (benchmarks/ is on sys.path: the script's folder)

from rnnkit.apps.classify.data import ReadOptions, read_data  # noqa: E402
from rnnkit.apps.classify.train import ClassifySettings, ClassifyTask, load_model  # noqa: E402
from rnnkit.train.engine import fit  # noqa: E402

# every classification problem in aeon 1.6's wheel but its UnitTest cut and ACSF1 (length 1,460;
# pass --datasets ACSF1 to add it)
DATASETS = ["BasicMotions", "JapaneseVowels", "ItalyPowerDemand", "GunPoint", "ArrowHead",
            "PickupGestureWiimoteZ", "OSULeaf"]
# 1-NN DTW (full window) accuracies published with the archives: univariate from the UCR
# archive's table (Dau et al., "The UCR Time Series Archive", 2019, DTW w = 100%), multivariate
# from the UEA archive paper (Bagnall et al., "The UEA multivariate time series classification
# archive, 2018", DTW_D)
PUBLISHED_DTW = {"ItalyPowerDemand": 0.950, "GunPoint": 0.907, "ArrowHead": 0.703,
                 "OSULeaf": 0.591, "BasicMotions": 0.975, "JapaneseVowels": 0.949}




def aeon_data() -> Path:
    import aeon
    return Path(aeon.__file__).parent / "datasets" / "data"


def to_aeon(series: list[np.ndarray], pad: bool):
    """(T, C) arrays -> aeon's collection: (n, C, T) when equal (or padded), else a list."""
    lengths = {len(s) for s in series}
    if len(lengths) == 1:
        return np.stack([s.T for s in series])
    if not pad:
        return [np.ascontiguousarray(s.T) for s in series]
    T = max(lengths)
    out = np.zeros((len(series), series[0].shape[1], T))
    for k, s in enumerate(series):
        out[k, :, : len(s)] = s.T
    return out


def run_rnnkit(name: str, train: Path, test: Path, budget: float, out: Path, seed: int) -> dict:
    s = ClassifySettings(seed=seed)
    cpu0 = time.process_time()
    task = ClassifyTask(s, train)
    summary = fit(task, s, out / name, max_time=budget, clock=time.process_time, progress=False)
    cpu = time.process_time() - cpu0
    r = load_model(out / name).evaluate(test)
    return {"accuracy": r["accuracy"], "cpu": cpu, "steps": summary["step"],
            "describe": task.describe()}


def run_baselines(train, test, seed: int) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from aeon.classification.convolution_based import RocketClassifier
        from aeon.classification.distance_based import KNeighborsTimeSeriesClassifier
    out = {}
    for key, make, pad in [
        ("dtw", lambda: KNeighborsTimeSeriesClassifier(n_neighbors=1, distance="dtw"), False),
        ("rocket", lambda: RocketClassifier(n_kernels=10000, random_state=seed), True)]:
        cpu0 = time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if pad:  # ROCKET needs one length: pad train and test to the longest of both
                T = max(len(s) for s in train.items + test.items)
                Xtr = to_aeon([np.pad(s, ((0, T - len(s)), (0, 0))) for s in train.items], True)
                Xte = to_aeon([np.pad(s, ((0, T - len(s)), (0, 0))) for s in test.items], True)
            else:
                Xtr, Xte = to_aeon(train.items, False), to_aeon(test.items, False)
            clf = make().fit(Xtr, np.array(train.labels))
            pred = clf.predict(Xte)
        out[key] = {"accuracy": float(np.mean(pred == np.array(test.labels))),
                    "cpu": time.process_time() - cpu0}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=DATASETS)
    ap.add_argument("--budget", type=float, default=300.0,
                    help="CPU seconds rnnkit may train on each data set (default 300)")
    ap.add_argument("--out", default="runs/classify_quality", help="run folders")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the numbers to this file")
    args = ap.parse_args()
    import aeon
    print(f"# rnnkit classify quality: {cpu_info()['model']}, {os.cpu_count()} cores (load "
          f"{os.getloadavg()[0]:.1f}), Python {platform.python_version()}, NumPy {np.__version__},"
          f" aeon {aeon.__version__}; every method on one thread, CPU time of this process")
    print(f"# rnnkit settings (the defaults): {json.dumps(dataclasses.asdict(ClassifySettings(seed=args.seed)))}")
    print(f"# budget {args.budget:g} CPU-s per data set; baselines: 1-NN DTW (full window), "
          "ROCKET (10,000 kernels)")
    root, out = aeon_data(), Path(args.out)
    rows, results = [], {}
    for name in args.datasets:
        train_path, test_path = (root / name / f"{name}_{s}.ts" for s in ("TRAIN", "TEST"))
        if not train_path.exists():
            print(f"# {name}: not in this aeon wheel ({train_path}); skipped")
            continue
        train, test = (read_data(p, ReadOptions()) for p in (train_path, test_path))
        ours = run_rnnkit(name, train_path, test_path, args.budget, out, args.seed)
        base = run_baselines(train, test, args.seed)
        C = train.items[0].shape[1]
        lengths = sorted({len(s) for s in train.items + test.items})
        kind = (f"{'multi' if C > 1 else 'uni'}variate {C}, length "
                + (f"{lengths[0]}" if len(lengths) == 1 else f"{lengths[0]}-{lengths[-1]}"))
        results[name] = {"rnnkit": ours, **base, "published_dtw": PUBLISHED_DTW.get(name),
                         "kind": kind, "train": len(train), "test": len(test),
                         "classes": len(set(train.labels))}
        pub = PUBLISHED_DTW.get(name)
        rows.append(f"| {name} | {kind} | {len(train)}/{len(test)} | "
                    f"**{ours['accuracy']:.3f}** | {base['dtw']['accuracy']:.3f} | "
                    f"{base['rocket']['accuracy']:.3f} | {'-' if pub is None else f'{pub:.3f}'} | "
                    f"{ours['cpu']:.0f} / {base['dtw']['cpu']:.0f} / {base['rocket']['cpu']:.0f} |")
        print(f"# {name}: {ours['describe']}; {ours['steps']} steps", flush=True)
        print(rows[-1], flush=True)
    if results:
        mean = {k: np.mean([r[k]["accuracy"] for r in results.values()])
                for k in ("rnnkit", "dtw", "rocket")}
        print("\n| data set | series | train/test | rnnkit | 1-NN DTW | ROCKET | published "
              "1-NN DTW | CPU s (rnnkit / DTW / ROCKET) |")
        print("|---|---|---|---|---|---|---|---|")
        print("\n".join(rows))
        print(f"| **mean** | | | **{mean['rnnkit']:.3f}** | {mean['dtw']:.3f} | "
              f"{mean['rocket']:.3f} | | |")
        beats = sum(r["rnnkit"]["accuracy"] > r["dtw"]["accuracy"] for r in results.values())
        ties = sum(r["rnnkit"]["accuracy"] == r["dtw"]["accuracy"] for r in results.values())
        print(f"\nrnnkit beats 1-NN DTW on {beats} of {len(results)} data sets (ties {ties}); "
              f"mean gap to ROCKET {100 * (mean['rocket'] - mean['rnnkit']):+.1f} points")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Every application's ``train`` resumes exactly: a run stopped by --max-time, by Ctrl-C (SIGINT)
or by kill -9, then continued with --resume, ends with the parameters and optimizer moments of the
same run never stopped, bit for bit.  The runs are real ``rnnkit`` processes."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rnnkit.cli import main
from rnnkit.data.audio import write_wav

RNNKIT = [sys.executable, "-m", "rnnkit.cli"]
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def lm_data(folder: Path) -> list[str]:
    rng = np.random.default_rng(0)
    words = ["the ", "cat ", "sat ", "on ", "a ", "mat. ", "dog ", "ran!\n"]
    (folder / "text.txt").write_text("".join(rng.choice(words, 3000)), encoding="utf-8")
    return ["lm", "train", "--text", str(folder / "text.txt"), "--hidden", "24", "--embed", "8",
            "--batch", "4", "--seq-len", "16", "--val-fraction", "0.05", "--warmup", "5"]


def translate_data(folder: Path) -> list[str]:
    rng = np.random.default_rng(1)
    lines = []
    for _ in range(300):
        s = "".join(rng.choice(list("abcde"), rng.integers(1, 7)))
        lines.append(f"{s}\t{s[::-1]}")
    (folder / "pairs.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ["translate", "train", "--pairs", str(folder / "pairs.tsv"), "--hidden", "16",
            "--embed", "8", "--batch", "16", "--dropout", "0.1", "--teacher-forcing", "0.8",
            "--max-val", "20", "--warmup", "5"]


def asr_data(folder: Path) -> list[str]:
    rng = np.random.default_rng(2)
    tones = {"a": 400.0, "b": 900.0, "c": 1700.0, " ": 2900.0}
    (folder / "wav").mkdir()
    lines = []
    for k in range(40):
        text = " ".join("".join(rng.choice(list("abc"), rng.integers(1, 3)))
                        for _ in range(rng.integers(1, 3)))
        parts = []
        for ch in text:
            t = np.arange(int(8000 * 0.12)) / 8000
            parts += [0.4 * np.sin(2 * np.pi * tones[ch] * t), np.zeros(400)]
        write_wav(folder / "wav" / f"{k}.wav", np.concatenate(parts), 8000)
        lines.append(json.dumps({"audio": f"wav/{k}.wav", "text": text}))
    (folder / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return ["asr", "train", "--manifest", str(folder / "manifest.jsonl"), "--hidden", "12",
            "--layers", "2", "--batch", "8", "--stack", "2", "--skip", "2", "--val-fraction", "0.1",
            "--warmup", "5"]


def forecast_data(folder: Path) -> list[str]:
    t = np.arange(120)
    y = 50 + 0.3 * t + 5 * np.sin(2 * np.pi * t / 12) + np.random.default_rng(3).normal(0, 1, 120)
    rows = ["t,y"] + [f"{k},{v:.6f}" for k, v in zip(t, y)]
    (folder / "s.csv").write_text("\n".join(rows) + "\n")
    return ["forecast", "train", "--csv", str(folder / "s.csv"), "--target", "y", "--horizon", "4",
            "--hidden", "6", "--batch", "8", "--ensemble", "2", "--patience", "1000",
            "--eval-every", "10", "--quiet"]


# steps enough that a signal sent at the first checkpoint lands well before the end, even on a
# fast machine (lm trains ~850 of these steps a second on an idle Zen 4 core)
APPS = {"lm": (lm_data, 480, 20), "translate": (translate_data, 320, 20),
        "asr": (asr_data, 120, 20), "forecast": (forecast_data, 150, 10)}


def arrays(folder: Path) -> dict[str, np.ndarray]:
    """Every array of every .npz under ``folder`` (sub-runs included), by relative path."""
    out = {}
    for path in sorted(folder.rglob("*.npz")):
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue  # what a save killed half-way leaves beside a checkpoint (never loaded)
        with np.load(path, allow_pickle=False) as z:
            for key in z.files:
                out[f"{path.relative_to(folder)}:{key}"] = z[key]
    return out


def assert_identical(a: Path, b: Path) -> None:
    x, y = arrays(a), arrays(b)
    assert x.keys() == y.keys() and any("optim" in k for k in x)
    for key in x:
        np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def run(args, capsys) -> tuple[int, str]:
    """``rnnkit args`` in this process: (exit status, stderr)."""
    status = main(args)
    return status, capsys.readouterr().err


def started(args) -> subprocess.Popen:
    return subprocess.Popen(RNNKIT + args, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(proc, out: Path, app: str) -> None:
    """Until the first checkpoint (of a network's run, for forecast) is on disk."""
    marker = (out / "runs" / "select" / "meta.json") if app == "forecast" else out / "meta.json"
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.fixture(scope="module", params=sorted(APPS))
def app(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    make, steps, every = APPS[request.param]
    base = make(folder) + ["--steps", str(steps), "--eval-every", str(every), "--quiet"]
    start = time.perf_counter()
    assert main(base + ["--out", str(folder / "full")]) == 0
    return request.param, folder, base, time.perf_counter() - start


def test_max_time_then_resume(app, capsys):
    name, folder, base, seconds = app
    out = folder / "max-time"  # a quarter of the whole run's time, whatever the machine's speed
    status, err = run(base + ["--out", str(out), "--max-time", f"{seconds / 4:.4f}"], capsys)
    assert status == 0 and "--resume continues" in err  # it stopped before the end
    status, err = run(base + ["--out", str(out), "--resume"], capsys)
    assert status == 0, err
    assert_identical(folder / "full", out)


@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
def test_interrupted_or_killed_then_resume(app, how, capsys):
    name, folder, base, _ = app
    out = folder / how
    proc = started(base + ["--out", str(out)])
    wait_for_checkpoint(proc, out, name)
    proc.send_signal(getattr(signal, how))
    _, err = proc.communicate(timeout=120)
    if how == "SIGINT":
        assert proc.returncode == 130, err  # a checkpoint, then exit 130
    else:
        assert proc.returncode == -signal.SIGKILL
    status, err = run(base + ["--out", str(out), "--resume"], capsys)
    assert status == 0, err
    assert_identical(folder / "full", out)

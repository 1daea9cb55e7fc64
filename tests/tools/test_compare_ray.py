"""rnnkit compare gives the same results wherever its trials run: in this process, in local
processes, or as tasks on a Ray cluster (a local Ray instance this test starts; skipped only
where Ray is not installed).  The same seeds give the same winner and table, times aside."""
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

import rnnkit
from rnnkit.cli import main

ray = pytest.importorskip("ray")

TIMES = ("steps_per_second", "seconds")


@pytest.fixture(scope="module")
def ray_address():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # "local": a new instance of this test's own, even where a cluster is running
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture
def text_file(tmp_path):
    rng = np.random.default_rng(0)
    words = ["the ", "cat ", "sat ", "on ", "a ", "mat. ", "dog ", "ran!\n"]
    path = tmp_path / "corpus.txt"
    path.write_text("".join(rng.choice(words, 700)), encoding="utf-8")
    return path


def argv(text_file, out):
    return ["compare", "lm", "--text", str(text_file), "--params", "3000", "--embed", "8",
            "--seq-len", "16", "--batch", "4", "--range-steps", "20", "--seeds", "2",
            "--lrs", "2", "--cells", "rnn,lstm", "--rung-steps", "6", "--eval-every", "3",
            "--out", str(out),
            "--quiet"]


def results(out):
    """What must not depend on where the trials ran: the table but its times, the winner, every
    evaluation of every trial (step and metric), the range tests' losses."""
    doc = json.loads((out / "compare.json").read_text())
    table = [{k: v for k, v in row.items() if k not in TIMES} for row in doc["table"]]
    trials = {tid: [(e[0], e[2]) for e in t["evals"]] for tid, t in doc["trials"].items()}
    ranges = {c: r["losses"] for c, r in doc["range_tests"].items()}
    winner = {k: v for k, v in doc["winner"].items() if k not in ("trial", "folder")}
    return table, trials, ranges, winner


def test_local_processes_and_ray_give_identical_results(tmp_path, text_file, ray_address):
    local, on_ray, serial = tmp_path / "local", tmp_path / "ray", tmp_path / "serial"
    assert main(argv(text_file, local) + ["--workers", "2"]) == 0
    # a separate driver connects to the cluster by its address, as a user's command would
    done = subprocess.run([sys.executable, "-m", "rnnkit", *argv(text_file, on_ray),
                           "--ray", ray_address], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "Ray cluster" in json.loads((on_ray / "compare.json").read_text())["where"]
    assert main(argv(text_file, serial) + ["--workers", "1"]) == 0
    reference = results(local)
    assert len(reference[1]) == 4 * 2 and reference[3]["cell"] in ("rnn", "lstm")
    assert results(on_ray) == reference
    assert results(serial) == reference  # and the same command again: the same table
    for out in (local, on_ray):  # every trial's checkpoint came back to --out
        for tid in reference[1]:
            assert (out / "trials" / tid / "meta.json").exists()
        assert type(rnnkit.load(out / "winner")).__name__ == "TextModel"

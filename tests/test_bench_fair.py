"""The decision of ``benchmarks/bench_layers.py --check`` and the summary of fair blocks, on
synthetic numbers (timings themselves are never tested)."""
import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "fair.py"
_spec = importlib.util.spec_from_file_location("bench_fair", _PATH)
fair = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fair)


def test_summarize_medians_ratio_and_spread():
    r = fair.summarize([1.0, 1.2, 1.1], [1.0, 1.0, 1.0], k=4)
    assert r["ours_s"] == 1.1 and r["theirs_s"] == 1.0
    assert r["ratio"] == pytest.approx(1.1)
    assert r["spread"] == pytest.approx(0.1)  # half of 1.2 - 1.0
    assert r["block_ratios"] == pytest.approx([1.0, 1.2, 1.1]) and r["blocks"] == 3


@pytest.mark.parametrize("ratio, spread, limit, slow", [
    (0.95, 0.0, 1.0, False),
    (1.05, 0.10, 1.0, False),  # within its spread: not shown to be slower
    (1.05, 0.02, 1.0, True),
    (1.00, 0.0, 1.0, False),  # equal is not above
    (0.6, 0.05, 0.5, True),  # the cell step's limit
])
def test_exceeds(ratio, spread, limit, slow):
    row = {"ratio": ratio, "spread": spread}
    assert fair.exceeds([row], limit) == ([row] if slow else [])


def test_time_blocks_alternates_order(monkeypatch):
    calls = []
    monkeypatch.setattr(fair, "IDLE_S", 0.0)
    fair.time_blocks(lambda: calls.append("a"), lambda: calls.append("b"), blocks=2, samples=1,
                     target=0.0, warmup=0)
    # two calls each to size a sample, then block 1: a, b; block 2: b, a
    assert calls == ["a", "a", "b", "b", "a", "b", "b", "a"]


def test_set_thread_env_sets_every_pool_variable(monkeypatch):
    for var in fair.THREAD_VARS:
        monkeypatch.setenv(var, "7")
    fair.set_thread_env(3)
    import os
    assert [os.environ[v] for v in fair.THREAD_VARS] == ["3", "3", "3"]
    assert set(fair.THREAD_VARS) == {"OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"}

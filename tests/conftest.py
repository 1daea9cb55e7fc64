"""Strict numerics: overflow, invalid operations and division by zero raise inside tests."""
import os

# The tests use small matrices, where BLAS threads cost more than they give, and a busy shared
# machine makes spinning threads far slower still; benchmarks set their own thread counts.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pytest


@pytest.fixture(autouse=True)
def strict_numpy():
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        yield


@pytest.fixture
def rng():
    return np.random.default_rng(1234)

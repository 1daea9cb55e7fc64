"""Strict numerics: overflow, invalid operations and division by zero raise inside tests."""
import numpy as np
import pytest


@pytest.fixture(autouse=True)
def strict_numpy():
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        yield


@pytest.fixture
def rng():
    return np.random.default_rng(1234)

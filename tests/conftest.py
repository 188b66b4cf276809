"""Shared fixtures: float64 for gradient checks, and PRNG keys that show their seed."""

import jax
import numpy as np
import pytest

from jaxnets.gradcheck import float64


@pytest.fixture
def x64():
    """Run the test body with float64 enabled (the precision of every gradient check)."""
    with float64():
        yield


@pytest.fixture(params=[0, 1, 2], ids=lambda s: f"seed{s}")
def seed(request):
    """A seed; its value appears in the test id, so a failure names it."""
    return request.param


@pytest.fixture
def key(seed):
    return jax.random.key(seed)


@pytest.fixture
def rng(seed):
    return np.random.default_rng(seed)


@pytest.fixture(autouse=True)
def _downloads_stay_on_loopback(monkeypatch):
    """Tests never reach the internet: a download no test arranged hits a closed port on 127.0.0.1."""
    monkeypatch.setenv("JAXNETS_MIRROR", "http://127.0.0.1:9")

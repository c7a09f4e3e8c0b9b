"""Shared fixtures: one Vulkan device for the session (lavapipe here, any device elsewhere)."""
import numpy as np
import pytest

from engine.device import Device


@pytest.fixture(scope="session")
def device():
    dev = Device()
    yield dev


@pytest.fixture
def rng(request):
    # A different, reproducible stream per test.
    return np.random.default_rng(abs(hash(request.node.nodeid)) % (2**32))

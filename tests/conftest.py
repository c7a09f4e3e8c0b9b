"""Shared fixtures: one Vulkan device for the session (lavapipe here, any device elsewhere)."""
import zlib

import numpy as np
import pytest

from engine.device import Device


@pytest.fixture(scope="session")
def device():
    dev = Device()
    yield dev


@pytest.fixture
def rng(request):
    # A different, reproducible stream per test (crc32, not hash(): str hashes change per process).
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))

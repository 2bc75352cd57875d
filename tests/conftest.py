import numpy as np
import pytest


@pytest.fixture
def rng():
    """One seeded generator per test: failures replay exactly."""
    return np.random.default_rng(20261125)

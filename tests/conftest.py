"""Suite-wide settings."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # The suite runs thousands of tiny autograd calls on small networks: extra intra-op
    # threads only add contention (10-30x slower measured on the 2-core machine).
    torch.set_num_threads(1)
    yield

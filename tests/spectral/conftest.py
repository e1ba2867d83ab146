import sys
from pathlib import Path

import pytest
import torch

# Lets the tests import the local helpers module as `helpers`.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    # These tests run thousands of tiny autograd calls: extra intra-op threads only add
    # contention on a shared machine (10-30x slower measured), so use one, then restore.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

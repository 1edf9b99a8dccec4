import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def torch():
    import torch as _torch

    _torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    return _torch

"""Shared fixtures."""

import pytest


@pytest.fixture(scope="module")
def one_thread():
    """One torch intra-op thread: tiny tensors avoid OpenMP spin-wait stalls on a busy machine, and the
    applied chapters train single-threaded, so the same thread count reproduces their runs."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

"""Fixtures shared by every test directory."""
import pytest
import torch


@pytest.fixture
def one_thread():
    """Run with one intra-op thread (tiny inputs: parallel ops only add overhead on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

"""Fixtures shared by every test directory."""

import os

# The Triton executor's kernels run on the CPU through Triton's interpreter in the default suite (tests/products),
# unless the suite runs on a GPU (GAUNT_TEST_DEVICE=cuda: benchmarks/gpu/run.sh). Set here, before gaunt or triton
# is imported (both read it at import); it changes nothing else (only @triton.jit functions look at it).
if os.environ.get("GAUNT_TEST_DEVICE", "cpu") == "cpu":
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch


@pytest.fixture
def one_thread():
    """Run with one intra-op thread (tiny inputs: parallel ops only add overhead on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def float64_default():
    """float64 as torch's default dtype for one test, restored afterwards (setting it at module level would
    leak into every test collected later)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Each test compiles from a clean dynamo cache: many products share ``TensorProduct.forward``, and
    compiling it for module after module would hit dynamo's recompile limit (an error with fullgraph=True)."""
    yield
    if "torch._dynamo" in __import__("sys").modules:
        torch._dynamo.reset()

"""Fixtures of the potential tests (helpers live in potential_helpers.py)."""

import pytest


@pytest.fixture(params=["cg", "grid", "gaunt"])
def product(request) -> str:
    """Every model test runs with the CG, the Gaunt-on-grid and the Gaunt-by-FFT products."""
    return request.param

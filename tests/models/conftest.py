"""Fixtures of the tests of the framework-free analysis core (``models/``): no web app is imported here."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_torch_thread():
    """Tiny tensors gain nothing from threads, and spinning OpenMP threads crawl on a busy 2-core box.
    A module opts in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

"""Fixtures shared by several test files.

None is autouse: a file opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``
(every test in the file, like a file-level autouse fixture).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


def _single_threaded() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run each test on one intra-op torch thread (restored afterwards).

    Tiny networks gain nothing from threads, and on a busy shared CPU OpenMP
    synchronisation slows them down by 10x or more.
    """
    yield from _single_threaded()


@pytest.fixture(scope="module")
def one_thread_module() -> Iterator[None]:
    """As ``one_thread``, but for a whole module, so module-scoped fixtures (shared
    data, trained networks) run single-threaded too."""
    yield from _single_threaded()

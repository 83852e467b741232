"""Chains of >= 20 random legal transformations stay exact w.r.t. the original parent."""

from __future__ import annotations

import numpy as np
import pytest
from test_morphisms import (
    SMALL,
    TOL,
    assert_unchanged,
    check_child,
    make,
    random_chain,
    rel_err,
    snapshot,
)

pytestmark = pytest.mark.usefixtures("one_thread_module")

PLAIN = "C(4,3,1), C(4,3,1), P(2,2,MAX), C(6,3,1), C(6,3,1), FC(8), SM(3)"
DENSE = "C(4,3,1), DL(2,3,0), DL(2,3,0), C(4,1,1), P(2,2,AVG), DL(2,3,8), DL(2,3,8), P(4,4,AVG), SM(3)"


def _run_chain(arch: str, seed: int, kinds: tuple[str, ...], steps: int = 20) -> list:
    parent = make(arch, (3, 8, 8), seed)
    snap = snapshot(parent)
    child, log = random_chain(parent, steps, SMALL, np.random.default_rng(seed), kinds)
    assert len(log) == steps, log
    assert rel_err(parent, child) < TOL, (str(child.arch), log)
    check_child(child)
    assert_unchanged(parent, snap, parent.arch)
    return log


@pytest.mark.parametrize("seed", [0, 1])
def test_plain_chain(seed):
    log = _run_chain(PLAIN, seed, ("wider", "deeper", "skip"))
    kinds = {k for k, _ in log}
    assert {"wider", "deeper", "skip"} <= kinds
    assert {a[2] for k, a in log if k == "skip"} <= {"ADD", "CAT"}


@pytest.mark.parametrize("seed", [0, 1])
def test_dense_chain(seed):
    log = _run_chain(DENSE, seed, ("wider", "insert", "deeper"))
    assert {"wider", "insert"} <= {k for k, _ in log}


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2, 8))
def test_long_chains(seed):
    _run_chain(PLAIN, seed, ("wider", "deeper", "skip"), steps=40)
    _run_chain(DENSE, seed, ("wider", "insert", "deeper"), steps=30)

"""The small-sample tests that rank agents (eas.reports.stats) and the per-budget table of
``eas compare`` / ``bench/bench_agents.py`` built on them."""

from __future__ import annotations

import csv
import math

import pytest

from eas.reports.compare import RunRecord, budget_rows, write_outputs
from eas.reports.stats import EXACT_LIMIT, permutation_p, sign_flip_p


def test_permutation_p_is_exact_for_small_groups():
    # 5 against 5, fully separated: only the observed split is as extreme (1 of 252)
    hi, lo = [0.90, 0.91, 0.92, 0.93, 0.94], [0.80, 0.81, 0.82, 0.83, 0.84]
    assert permutation_p(hi, lo) == pytest.approx(1 / math.comb(10, 5))
    assert permutation_p(lo, hi) == 1.0
    # equal groups: every split is at least as extreme as a zero difference
    assert permutation_p([1.0, 1.0], [1.0, 1.0]) == 1.0
    # a one-sided p of a over b and of b over a cover every split at least once
    a, b = [0.3, 0.9, 0.5], [0.4, 0.6, 0.7]
    assert permutation_p(a, b) + permutation_p(b, a) >= 1.0


def test_permutation_p_monte_carlo_for_large_groups_is_seeded():
    a = [0.5 + 0.01 * i for i in range(14)]
    b = [0.45 + 0.01 * i for i in range(14)]
    assert math.comb(28, 14) > EXACT_LIMIT
    p1, p2 = permutation_p(a, b, rounds=2000, seed=3), permutation_p(a, b, rounds=2000, seed=3)
    assert p1 == p2
    assert 0.0 < p1 < 0.2  # a is shifted up by 0.05: a small but not minimal p
    with pytest.raises(ValueError, match="both groups"):
        permutation_p([], [0.1])


def test_sign_flip_p():
    assert sign_flip_p([0.1, 0.2, 0.3, 0.4]) == 1 / 16
    assert sign_flip_p([-0.1, -0.2]) == 1.0
    assert sign_flip_p([0.2, -0.1]) == 0.5  # patterns (+,+) and (+,-) reach the mean 0.05
    with pytest.raises(ValueError, match="paired differences"):
        sign_flip_p([])


def test_budget_rows_read_each_run_at_each_budget(tmp_path):
    def rec(agent: str, seed: int, accs: list[float], times: list[float]) -> RunRecord:
        return RunRecord(agent, seed, 0.5, accuracies=accs, archs=[f"n{i}" for i in accs],
                         train_times=times, child_seconds=sum(times))

    recs = [rec("a", s, [0.6 + s / 100, 0.9], [10.0, 20.0]) for s in range(3)]
    recs += [rec("b", s, [0.7, 0.8 + s / 100], [10.0, 20.0]) for s in range(3)]
    rows = budget_rows(recs, [10.0, 30.0])
    at10 = {r["agent"]: r for r in rows if r["budget_s"] == 10.0}
    at30 = {r["agent"]: r for r in rows if r["budget_s"] == 30.0}
    assert at10["a"]["mean"] == pytest.approx(0.61) and at10["b"]["mean"] == pytest.approx(0.7)
    assert at30["a"]["mean"] == pytest.approx(0.9) and at30["b"]["mean"] == pytest.approx(0.81)
    assert at10["b"]["p_vs_a"] == pytest.approx(1 / 20)  # b ahead at 10 s in every seed
    assert at30["a"]["p_vs_b"] == pytest.approx(1 / 20)  # a ahead at 30 s
    assert at30["b"]["p_vs_a"] == 1.0
    write_outputs(recs, tmp_path, budgets=[10.0, 30.0])
    with open(tmp_path / "budgets.csv") as f:
        assert len(list(csv.DictReader(f))) == 4
    md = (tmp_path / "comparison.md").read_text()
    assert "| 30 s | a | 0.9000 ± 0.0000 |  | 0.050 |" in md
    assert "3 seeds per agent: suggestive only" in md

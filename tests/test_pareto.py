"""Pareto bookkeeping on synthetic points, and the pareto reports of a search."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import CheapEvaluator, cheap_config, quiet

from eas.checkpoint import load_checkpoint, network_from_record
from eas.pareto import ParetoFront, dominates, hypervolume_2d, non_dominated
from eas.reports.pareto import (
    common_hypervolumes,
    front_hypervolume,
    front_records,
    write_pareto_reports,
)
from eas.search.loop import run_search
from eas.search.state import CHECKPOINT


def brute_front(points):
    return [i for i, p in enumerate(points)
            if not any(dominates(q, p) for q in points) and p not in points[:i]]


def test_dominance() -> None:
    assert dominates((0.1, 5), (0.2, 5)) and dominates((0.1, 4), (0.2, 5))
    assert not dominates((0.1, 5), (0.1, 5))  # equal points dominate neither
    assert not dominates((0.1, 6), (0.2, 5)) and not dominates((0.2, 5), (0.1, 6))
    assert dominates((1, 1, 1), (1, 1, 2))
    with pytest.raises(ValueError, match="NaN"):
        dominates((float("nan"), 1), (0, 1))
    with pytest.raises(ValueError, match="objectives"):
        dominates((1, 2), (1, 2, 3))


def test_non_dominated_matches_brute_force_on_random_points() -> None:
    rng = np.random.default_rng(0)
    for trial in range(30):
        n = int(rng.integers(1, 40))
        dims = 2 if trial % 3 else 3
        pts = [tuple(float(v) for v in rng.integers(0, 6, size=dims)) for _ in range(n)]
        assert non_dominated(pts) == brute_front(pts)


def test_front_updates() -> None:
    front = ParetoFront()
    assert front.add((0.3, 10), "a")
    assert front.add((0.2, 20), "b")
    assert not front.add((0.3, 10), "dup")  # equal to a kept point
    assert not front.add((0.35, 15), "dominated")
    assert front.add((0.1, 10), "c")  # dominates a and b
    assert front.items == ["c"] and front.points == [(0.1, 10.0)]
    assert front.add((0.05, 30), "d") and front.add((0.2, 5), "e")
    assert front.items == ["d", "c", "e"]  # sorted by the first objective
    assert front.would_accept((0.0, 100)) and not front.would_accept((0.2, 6))
    copy = ParetoFront()
    copy.load_state_dict(front.state_dict())
    assert copy.points == front.points and copy.items == front.items
    # the front of all insertions equals the non-dominated subset, in any order
    rng = np.random.default_rng(1)
    pts = [tuple(rng.random(2).round(2)) for _ in range(50)]
    for order in (range(50), reversed(range(50))):
        f = ParetoFront()
        for i in order:
            f.add(pts[i], i)
        assert sorted(f.items) == non_dominated(pts)


def test_hypervolume_2d() -> None:
    assert hypervolume_2d([], (1, 1)) == 0.0
    assert hypervolume_2d([(0.5, 0.5)], (1, 1)) == pytest.approx(0.25)
    # two points: 0.5*0.75 + 0.25*0.5 (the union of two rectangles)
    assert hypervolume_2d([(0.5, 0.25), (0.25, 0.5)], (1, 1)) == pytest.approx(
        0.75 * 0.5 + 0.5 * 0.75 - 0.5 * 0.5)
    # dominated and outside points add nothing
    base = hypervolume_2d([(0.2, 0.2)], (1, 1))
    assert hypervolume_2d([(0.2, 0.2), (0.5, 0.5), (2, 0.1), (0.1, 1.0)], (1, 1)) == \
        pytest.approx(base)
    # grid check against counting cells on random integer points
    rng = np.random.default_rng(2)
    for _ in range(20):
        pts = [tuple(int(v) for v in rng.integers(0, 10, 2)) for _ in range(8)]
        cells = sum(1 for x, y in itertools.product(range(10), repeat=2)
                    if any(px <= x and py <= y for px, py in pts))
        assert hypervolume_2d(pts, (10, 10)) == pytest.approx(cells)


def history_of(points):
    return [{"step": i + 1, "stage": 1, "arch": a, "accuracy": acc, "params": p,
             "flops": 10 * p, "failed": failed}
            for i, (a, acc, p, failed) in enumerate(points)]


def test_front_records_and_reports(tmp_path: Path) -> None:
    hist = history_of([("A", 0.80, 100, False), ("B", 0.85, 200, False),
                       ("C", 0.82, 300, False),  # dominated by B
                       ("A", 0.81, 100, False),  # A's better evaluation
                       ("D", 0.99, 50, True),  # failed: ignored
                       ("E", 0.90, 400, False)])
    front = front_records(hist, "params")
    assert [(r["arch"], r["accuracy"]) for r in front] == [("A", 0.81), ("B", 0.85),
                                                            ("E", 0.90)]
    hv = front_hypervolume(front, "params", 440.0)
    expect = ((440 - 100) * 0.81 + (440 - 200) * 0.04 + (440 - 400) * 0.05) / 440
    assert hv == pytest.approx(expect)
    summary = write_pareto_reports(tmp_path, hist)
    assert set(summary) == {"params", "flops"}  # no latency recorded
    assert [r["arch"] for r in summary["params"]["front"]] == ["A", "B", "E"]
    assert summary["params"]["reference"] == [1.0, pytest.approx(440.0)]
    rows = list(csv.DictReader((tmp_path / "pareto.csv").open()))
    assert len(rows) == len(hist)
    assert [r["on_front_params"] for r in rows] == ["0", "1", "0", "1", "0", "1"]
    assert (tmp_path / "pareto.png").stat().st_size > 1000
    # comparing runs: one reference for all (1.1 x the largest cost of every run)
    small = history_of([("S", 0.85, 100, False)])
    hv = common_hypervolumes({"a": hist, "b": small, "c": []}, "params")
    assert hv["a"] == pytest.approx(front_hypervolume(front, "params", 440.0))
    assert hv["b"] == pytest.approx((440 - 100) * 0.85 / 440)
    assert hv["b"] > hv["a"] and np.isnan(hv["c"])  # S (0.85 at 100) beats most of a's front


@pytest.mark.usefixtures("one_thread")
def test_search_writes_pareto_reports_and_keeps_front_networks(tmp_path: Path) -> None:
    out = run_search(cheap_config(tmp_path), evaluator=CheapEvaluator(), log=quiet)
    run = out.run_dir
    assert (run / "pareto.png").is_file()
    rows = list(csv.DictReader((run / "pareto.csv").open()))
    assert len(rows) == out.summary["children"] == 9
    summary = json.loads((run / "summary.json").read_text())
    front = summary["pareto"]["params"]["front"]
    assert front and front == [
        {k: r.get(k) for k in ("step", "arch", "accuracy", "params", "flops", "latency_ms")}
        for r in front_records(out.state.history, "params")]
    assert 0 < summary["pareto"]["params"]["hypervolume"] < 1
    ckpt = load_checkpoint(run / CHECKPOINT)
    archived = ckpt["state"]["front_nets"]
    on_front = {r["arch"] for c in ("params", "flops") for r in summary["pareto"][c]["front"]}
    assert set(archived) == on_front
    for arch, record in archived.items():
        assert str(network_from_record(record).arch) == arch

"""The agent comparison (eas.compare) with the cheap synthetic evaluator."""

from __future__ import annotations

import csv
import json
import sys
import textwrap

import pytest

from eas.arch import Architecture, resolve_start_arch
from eas.cli.compare import compare, load_evaluator, main
from eas.config.engine import load_config
from eas.envs.synthetic import synthetic_accuracy
from eas.network import build_network
from eas.reports.compare import RunRecord, write_outputs
from eas.reports.pareto import common_hypervolumes

SMALL = "C(16,3,1), P(2,2,MAX), C(16,3,1), P(2,2,MAX), C(32,3,1), P(7,7,AVG), FC(64), SM(10)"


def test_synthetic_accuracy_is_deterministic_and_rewards_capacity():
    a = synthetic_accuracy(SMALL)
    assert a == synthetic_accuracy(Architecture.parse(SMALL))
    assert a == pytest.approx(synthetic_accuracy(build_network(SMALL, seed=3)))
    wider = SMALL.replace("C(32,3,1)", "C(128,3,1)")
    deeper = SMALL.replace("C(32,3,1),", "C(32,3,1), C(32,3,1), C(32,3,1),")
    assert synthetic_accuracy(wider) > a and synthetic_accuracy(deeper) > a
    assert 0.0 <= a <= 0.999


@pytest.mark.slow
def test_compare_writes_table_and_plot(tmp_path):
    out = tmp_path / "cmp"
    records = compare(["random", "hill_climbing"], [0, 1], 4, evaluator="cheap", out=out,
                      per_round=2, start=SMALL, progress=False)  # through eas.search
    assert [(r.agent, r.seed) for r in records] == [
        ("random", 0), ("random", 1), ("hill_climbing", 0), ("hill_climbing", 1)]
    rows = list(csv.DictReader(open(out / "comparison.csv")))
    assert [r["agent"] for r in rows] == ["random", "hill_climbing"]
    for row, runs in zip(rows, (records[:2], records[2:])):
        assert int(row["children"]) == 4 and int(row["seeds"]) == 2
        best = [r.best_accuracy for r in runs]
        assert float(row["best_acc_mean"]) == pytest.approx(sum(best) / 2, abs=1e-9)
        assert float(row["best_acc_max"]) == pytest.approx(max(best))
        assert float(row["best_acc_mean"]) >= float(row["start_acc"])
        Architecture.parse(row["best_arch"])  # a real architecture string
    md = (out / "comparison.md").read_text()
    assert "| random |" in md and "| hill_climbing |" in md and "±" in md
    curves = list(csv.DictReader(open(out / "curves.csv")))
    assert len(curves) == 4 * (4 + 1)  # start + 4 children per run
    png = (out / "comparison.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    # every run has its own search-loop folder (TensorBoard events, checkpoint, summary)
    for name in ("random", "hill_climbing"):
        run = out / "runs" / f"{name}__seed0"
        assert (run / "checkpoint.pt").exists() and list(run.glob("events.out.tfevents.*"))
        summary = json.loads((run / "summary.json").read_text())
        rec = records[0] if name == "random" else records[2]
        assert [h["arch"] for h in summary["history"]] == rec.archs  # the table's source
    # hill climbing does not know the (untrained) start's accuracy: child 0 is the parent
    start = str(Architecture.parse(SMALL))
    assert records[2].archs[0] == start and records[3].archs[0] == start
    assert records[2].accuracies[0] == pytest.approx(synthetic_accuracy(SMALL))


def test_best_so_far_and_summary(tmp_path):
    recs = [RunRecord("a", 0, 0.5, accuracies=[0.4, 0.7, 0.6], archs=["x", "y", "z"]),
            RunRecord("a", 1, 0.5, accuracies=[0.3, 0.2, 0.1], archs=["x", "y", "z"])]
    assert recs[0].best_so_far == [0.5, 0.5, 0.7, 0.7]
    assert recs[1].best_accuracy == 0.5
    rows = write_outputs(recs, tmp_path)
    assert rows[0]["best_acc_mean"] == pytest.approx(0.6)
    assert rows[0]["best_acc_min"] == 0.5 and rows[0]["best_acc_max"] == 0.7


def test_curves_record_child_seconds(tmp_path):
    recs = [RunRecord("a", 0, 0.5, accuracies=[0.4, 0.7], archs=["x", "y"],
                      train_times=[1.5, 2.0], child_seconds=3.5),
            RunRecord("a", 1, 0.5, accuracies=[0.6], archs=["x"], train_times=[4.0],
                      child_seconds=4.0)]
    assert recs[0].seconds_so_far == [0.0, 1.5, 3.5]
    write_outputs(recs, tmp_path)
    with open(tmp_path / "curves.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["child_seconds"]) for r in rows] == [0.0, 1.5, 3.5, 0.0, 4.0]
    assert [float(r["best_so_far"]) for r in rows] == [0.5, 0.5, 0.7, 0.5, 0.6]
    assert (tmp_path / "comparison.png").stat().st_size > 0
    # read at an equal budget: 3.0 s ends run 0 after child 1 and run 1 before its child
    assert [r.best_within(3.0) for r in recs] == [0.5, 0.5]
    assert [r.best_within(3.5) for r in recs] == [0.7, 0.5]
    rows = write_outputs(recs, tmp_path, seconds=3.5)
    assert rows[0]["best_within_budget_mean"] == pytest.approx(0.6)
    assert "Best within the budget of 3.5" in (tmp_path / "comparison.md").read_text()


def test_rank_by_accuracy_or_front_hypervolume(tmp_path):
    def rec(agent: str, acc: float, params: int) -> RunRecord:
        front = {"front": [{"arch": f"{agent}-net", "accuracy": acc, "params": params}],
                 "reference": [1.0, 1.1 * params]}  # as a run's summary["pareto"]["params"]
        return RunRecord(agent, 0, 0.5, accuracies=[acc], archs=[f"{agent}-net"], front=front)

    recs = [rec("big", 0.9, 100), rec("small", 0.8, 10)]
    given = write_outputs(recs, tmp_path / "given")
    by_acc = write_outputs(recs, tmp_path / "acc", rank_by="accuracy")
    by_hv = write_outputs(recs, tmp_path / "hv", rank_by="hypervolume")
    assert [r["agent"] for r in given] == [r["agent"] for r in by_acc] == ["big", "small"]
    assert [r["agent"] for r in by_hv] == ["small", "big"]
    # one reference for all runs: 1.1 x the largest parameter count (100)
    hv = {r["agent"]: r["hypervolume_params"] for r in by_hv}
    assert hv["big"] == pytest.approx(0.9 * (110 - 100) / 110)
    assert hv["small"] == pytest.approx(0.8 * (110 - 10) / 110)
    md = (tmp_path / "hv" / "comparison.md").read_text()
    assert "hypervolume (params)" in md and md.index("| small |") < md.index("| big |")
    rows = list(csv.DictReader(open(tmp_path / "hv" / "comparison.csv")))
    assert float(rows[0]["hypervolume_params"]) == pytest.approx(hv["small"])
    with pytest.raises(ValueError, match="rank_by"):
        write_outputs(recs, tmp_path / "bad", rank_by="speed")


def test_cli_rank_by_hypervolume(tmp_path):
    out = tmp_path / "cli"
    assert main(["--agents", "random,hill_climbing", "--seeds", "0", "--children", "2",
                 "--start", SMALL, "--out", str(out), "--rank-by", "hypervolume"]) == 0
    rows = list(csv.DictReader(open(out / "comparison.csv")))
    hvs = [float(r["hypervolume_params"]) for r in rows]
    assert sorted(r["agent"] for r in rows) == ["hill_climbing", "random"]
    assert all(0 < v < 1 for v in hvs) and hvs == sorted(hvs, reverse=True)
    # the same numbers as pareto_report.common_hypervolumes over the runs' full histories
    histories = {}
    for name in ("random", "hill_climbing"):
        with open(out / "runs" / f"{name}__seed0" / "pareto.csv") as f:
            histories[name] = [{"arch": r["arch"], "accuracy": float(r["accuracy"]),
                                "params": float(r["params"]), "failed": r["failed"] == "True"}
                               for r in csv.DictReader(f)]
    expected = common_hypervolumes(histories, "params")
    assert {r["agent"]: float(r["hypervolume_params"]) for r in rows} == pytest.approx(expected)


def test_cli_cheap(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["--agents", "random,hill_climbing", "--seeds", "0,1", "--children", "1",
                 "--start", SMALL, "--out", str(out), "--set", "space.filters=16,32"]) == 0
    saved = load_config(out / "runs" / "random__seed0" / "config.toml")
    assert tuple(saved.space.filters) == (16, 32)  # --set reached every run
    rows = list(csv.DictReader(open(out / "comparison.csv")))
    assert [(r["agent"], r["seeds"], r["children"]) for r in rows] == [
        ("random", "2", "1"), ("hill_climbing", "2", "1")]
    assert (out / "comparison.png").stat().st_size > 5000
    assert "hill_climbing seed 1" in capsys.readouterr().out


def test_cli_rejects_unknown_agent(capsys):
    with pytest.raises(SystemExit):
        main(["--agents", "random,nope", "--children", "2"])
    assert "unknown agent 'nope'" in capsys.readouterr().err


def test_cli_rejects_bad_evaluator_and_start(capsys):
    for argv, needle in ((["--evaluator", "nope"], "evaluator 'nope'"),
                         (["--evaluator", "no_such_mod_xyz:f"], "cannot import"),
                         (["--start", "C(16,3,1), SM(10"], "start.arch"),
                         (["--lr", "-0.1"], "--lr must be"),
                         (["--set", "space.filters"], "SECTION.FIELD=VALUE"),
                         (["--set", "space.filters=big"], "space.filters"),
                         (["--start-lr", "nan"], "--start-lr must be")):
        with pytest.raises(SystemExit) as exc:
            main(["--agents", "random", "--children", "1", *argv])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        last = err.strip().splitlines()[-1]
        assert last.startswith("eas compare: error:") and needle in last
        assert "Traceback" not in err


def test_custom_evaluator_and_dataset_table1_start(tmp_path, monkeypatch):
    """A module:callable evaluator on CIFAR-10 shapes from the paper's Table-1 start."""
    (tmp_path / "eas_test_evaluator.py").write_text(textwrap.dedent("""
        def depth_score(net):
            return min(0.99, 0.5 + 0.01 * len(net.arch.layers))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "eas_test_evaluator", raising=False)
    assert load_evaluator("eas_test_evaluator:depth_score") is not None
    records = compare(["random"], [0], 2, evaluator="eas_test_evaluator:depth_score",
                      dataset="cifar10", out=tmp_path / "cmp", per_round=2, progress=False)
    summary = json.loads((tmp_path / "cmp" / "runs" / "random__seed0" / "summary.json")
                         .read_text())
    start = resolve_start_arch("default", (3, 32, 32), 10)  # fitted to 32x32 inputs
    assert summary["stage_starts"] == [str(start)] and summary["dataset"] == "cifar10"
    assert records[0].start_accuracy == pytest.approx(0.5 + 0.01 * len(start.layers))
    for arch, acc in zip(records[0].archs, records[0].accuracies):
        assert acc == pytest.approx(min(0.99, 0.5 + 0.01 * len(Architecture.parse(arch).layers)))


def test_equal_child_seconds_budget(tmp_path, monkeypatch):
    """--seconds: every run trains children until their train_time sums to the budget."""
    (tmp_path / "eas_seconds_evaluator.py").write_text(textwrap.dedent("""
        from eas.envs import EvalResult

        def timed(net):  # deeper children cost more (0.01 s per layer)
            n = len(net.arch.layers)
            return EvalResult(accuracy=min(0.99, 0.5 + 0.01 * n), train_time=0.01 * n)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "eas_seconds_evaluator", raising=False)
    out = tmp_path / "cmp"
    records = compare(["random", "hill_climbing"], [0], 10_000,
                      evaluator="eas_seconds_evaluator:timed", out=out, per_round=2,
                      start=SMALL, progress=False, seconds=1.0)
    for rec in records:
        arch_seconds = sum(0.01 * len(Architecture.parse(a).layers) for a in rec.archs)
        assert rec.child_seconds == pytest.approx(arch_seconds)
        # every child's train_time reaches the record (curves.csv, the seconds axis)
        assert rec.seconds_so_far[-1] == pytest.approx(rec.child_seconds)
        assert all(t > 0 for t in rec.train_times) or rec.cached
        assert rec.child_seconds >= 1.0  # the budget is spent ...
        assert 1 < len(rec.accuracies) < 100  # ... and ends the run long before the cap
        # ... in the round that reached it (rounds of <= 8 children of <= 0.2 s)
        assert rec.child_seconds < 1.0 + 8 * 0.2
    runs = list(csv.DictReader(open(out / "runs.csv")))
    assert [float(r["child_seconds"]) for r in runs] == pytest.approx(
        [r.child_seconds for r in records], abs=1e-3)
    assert "child s / run" in (out / "comparison.md").read_text()


def test_cli_rejects_bad_seconds(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--agents", "random", "--seeds", "0", "--seconds", "-1"])
    assert exc.value.code == 2
    assert "--seconds" in capsys.readouterr().err


def test_distinct_fraction_counts_repeated_architectures(tmp_path):
    recs = [RunRecord("a", 0, 0.5, accuracies=[0.6, 0.6, 0.7, 0.6], archs=["x", "x", "y", "x"]),
            RunRecord("a", 1, 0.5, accuracies=[0.6, 0.7], archs=["x", "y"])]
    rows = write_outputs(recs, tmp_path)
    assert rows[0]["distinct"] == pytest.approx((2 / 4 + 2 / 2) / 2)
    assert "| 75% |" in (tmp_path / "comparison.md").read_text()

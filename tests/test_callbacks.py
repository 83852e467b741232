"""Search callbacks: the declared hooks are called in order, user callbacks run, hparams logged."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from eas.config.engine import load_config
from eas.envs.synthetic import SyntheticEvaluator
from eas.search.callbacks import CallbackList, SearchCallback
from eas.search.loop import run_search

SMALL = "C(16,3,1), P(2,2,MAX), C(16,3,1), P(2,2,MAX), C(32,3,1), P(7,7,AVG), FC(64), SM(10)"


class Recorder(SearchCallback):
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.best: list[float] = []

    def on_search_start(self, run):
        self.calls.append("search_start")

    def on_round_start(self, run):
        self.calls.append("round_start")

    def on_child_trained(self, run):
        self.calls.append("child_trained")

    def on_child(self, run, child, rank):
        self.calls.append("child")
        assert run.state.history[-1] == child.to_dict()  # the history holds the record
        if rank == 0:
            self.best.append(child.accuracy)

    def on_round_end(self, run, results, metrics, round_time):
        self.calls.append("round_end")
        assert (run.run_dir / "checkpoint.pt").is_file()  # the checkpoint callback ran first

    def on_stage_end(self, run, next_stage):
        self.calls.append(f"stage_end:{next_stage}")

    def on_sampling_end(self, run):
        self.calls.append("sampling_end")

    def on_search_end(self, run, summary):
        self.calls.append("search_end")
        assert summary["children"] == 4

    def close(self):
        self.calls.append("close")


def _cfg(**extra):
    return load_config(overrides={
        "search.agent": "random", "search.seed": 0, "search.children_per_step": 2,
        "search.stage1_networks": 2, "search.stage2_networks": 2,
        "search.stage1_best_epochs": 0, "search.final_top_k": 0, "search.final_epochs": 0,
        "search.progress": False, "search.schedule": "wider,deeper",
        "data.name": "fashion-mnist", "data.device": "cpu", "start.arch": SMALL,
        "start.epochs": 0, **extra})


def test_hooks_are_called_in_the_declared_order(tmp_path: Path) -> None:
    rec = Recorder()
    out = run_search(_cfg(), run_dir=tmp_path / "run", evaluator=SyntheticEvaluator(),
                     callbacks=[rec], log=lambda _m: None)
    assert out.state.global_step == 4
    one_round = ["round_start", "child_trained", "child_trained", "child", "child", "round_end"]
    assert rec.calls == ["search_start", *one_round, "stage_end:2", *one_round,
                         "stage_end:None", "sampling_end", "search_end", "close"]
    assert rec.best and rec.best == sorted(rec.best)  # each new best beats the one before
    assert max(rec.best) == out.summary["best_accuracy"]


def test_configuration_is_logged_as_hparams(tmp_path: Path) -> None:
    run_search(_cfg(), run_dir=tmp_path / "run", evaluator=SyntheticEvaluator(),
               log=lambda _m: None)
    acc = EventAccumulator(str(tmp_path / "run"))
    acc.Reload()
    plugins = acc.PluginTagToContent("hparams")
    assert "_hparams_/experiment" in plugins and "_hparams_/session_start_info" in plugins
    assert b"search.agent" in plugins["_hparams_/session_start_info"]
    assert b"random" in plugins["_hparams_/session_start_info"]


def test_callback_list_closes_every_callback_even_if_one_fails() -> None:
    closed: list[int] = []

    class Fails(SearchCallback):
        def close(self):
            raise RuntimeError("boom")

    class Closes(SearchCallback):
        def __init__(self, i):
            self.i = i

        def close(self):
            closed.append(self.i)

    cbs = CallbackList([Closes(1), Fails(), Closes(2)])
    with pytest.raises(RuntimeError, match="boom"):
        cbs.close()
    assert sorted(closed) == [1, 2]

"""One child record from the evaluator to summary.json (``eas.envs.record.EvalResult``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from helpers import CheapEvaluator, cheap_config, quiet, tensorboard_steps

from eas.envs.cache import EvalCache
from eas.envs.journal import Journal
from eas.envs.record import EvalResult
from eas.network import build_network
from eas.search.loop import run_search

SMALL = "C(16,3,1), P(2,2,MAX), C(16,3,1), P(7,7,AVG), FC(64), SM(10)"


class NotingEvaluator(CheapEvaluator):
    """The cheap evaluator, also reporting the facts a trainer reports (epochs, note, ...)."""

    def __call__(self, net: torch.nn.Module) -> EvalResult:
        res = super().__call__(net)
        return dataclasses.replace(res, epochs=2, steps=7, note=f"note {self.calls}",
                                   cuda_graph=True, extra={"mine": [1, 2]})


def test_to_dict_is_plain_and_from_dict_gives_the_record_back() -> None:
    rec = EvalResult(np.float32(0.5), epochs=np.int64(3), rung_accuracies=(0.25, 0.5),
                     arch="x", state_dict={"w": torch.zeros(2)}, net=object(), actions=[{}])
    d = rec.to_dict()
    assert {"state_dict", "net", "actions"}.isdisjoint(d)  # in memory only
    assert json.loads(json.dumps(d)) == d  # plain types only
    assert type(d["accuracy"]) is float and type(d["epochs"]) is int
    back = EvalResult.from_dict(d)
    assert back.to_dict() == d and back.state_dict is None


def test_from_dict_keeps_unknown_keys_and_lifts_old_extras() -> None:
    old = {"accuracy": 0.7, "extra": {"fidelity": 3, "reward": 0.5, "attempts": 2,
                                      "retried": ["worker process died (SIGKILL)"]}, "pid": 9}
    rec = EvalResult.from_dict(old)
    assert (rec.fidelity, rec.reward) == (3, 0.5)
    assert (rec.attempts, rec.retried) == (2, ["worker process died (SIGKILL)"])  # now fields
    assert rec.extra == {"pid": 9}


def test_every_field_of_the_record_reaches_history_summary_and_tensorboard(tmp_path: Path
                                                                          ) -> None:
    cfg = cheap_config(tmp_path)
    out = run_search(cfg, evaluator=NotingEvaluator(), log=quiet)
    names = [f.name for f in dataclasses.fields(EvalResult) if not f.metadata.get("runtime")]
    summary = json.loads((out.run_dir / "summary.json").read_text())
    for hist in (out.state.history, summary["history"]):
        assert len(hist) == 9
        for step, h in enumerate(hist, 1):
            assert list(h) == names
            assert h["step"] == step and h["epochs"] == 2 and h["cuda_graph"] is True
            assert h["note"].startswith("note ") and h["extra"] == {"mine": [1, 2]}
            assert h["params"] == build_network(h["arch"], (1, 28, 28)).num_parameters()
    assert [h["stage"] for h in summary["history"]] == [1] * 6 + [2] * 3
    assert tensorboard_steps(out.run_dir, "charts/child_epochs") == list(range(1, 10))
    assert tensorboard_steps(out.run_dir, "charts/child_reward") == list(range(1, 10))


def test_journal_and_cache_keep_the_whole_record(tmp_path: Path) -> None:
    rec = EvalResult(0.8, epochs=2, note="n", latency_ms=1.5, fidelity=3,
                     state_dict={"w": torch.ones(2)})
    journal = Journal(tmp_path, lambda net: rec)
    net = build_network(SMALL, (1, 28, 28), seed=0)
    journal.begin_round(0)
    journal(net)
    replay = Journal(tmp_path, lambda net: EvalResult(0.0))
    replay.begin_round(0)
    again = replay(net)
    assert replay.reused == 1 and again.to_dict() == rec.to_dict()
    assert torch.equal(again.state_dict["w"], torch.ones(2))

    cache = EvalCache()
    cache.put(("s", "a"), rec)
    restored = EvalCache()
    restored.load_state_dict(cache.state_dict())
    assert restored.get(("s", "a")).to_dict() == rec.to_dict()

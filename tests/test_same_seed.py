"""Same seed, same search: refactoring keeps the children a saved run produced.

``data/same_seed_children.json`` holds the children (stage, architecture,
accuracy) of three small searches made with the search loop as it was before
the loop was split into steps and callbacks (commit be4d3bb). The cheap
synthetic evaluator makes the run fast and exactly reproducible; the agents,
environment, RNG streams and stage logic are the real ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from eas.config.engine import load_config
from eas.envs.synthetic import SyntheticEvaluator
from eas.search.loop import run_search

SMALL = "C(16,3,1), P(2,2,MAX), C(16,3,1), P(2,2,MAX), C(32,3,1), P(7,7,AVG), FC(64), SM(10)"
SAVED = json.loads((Path(__file__).parent / "data" / "same_seed_children.json").read_text())
# The controller's children depend on torch's LSTM and sampling kernels, which are not
# bit-stable across torch releases: the saved ones were recorded with torch 2.14, and
# torch 2.5.1 (the declared floor) samples other children for the same seed.
_TORCH = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
REINFORCE = pytest.param("reinforce", marks=pytest.mark.skipif(
    _TORCH < (2, 14), reason="saved with torch 2.14; older torch samples other children"))


@pytest.mark.parametrize("agent", [REINFORCE, "random", "hill_climbing"])
def test_same_seed_gives_the_saved_children(tmp_path: Path, agent: str) -> None:
    cfg = load_config(overrides={
        "search.agent": agent, "search.seed": 3, "search.children_per_step": 3,
        "search.stage1_networks": 6, "search.stage2_networks": 3, "search.stage1_best_epochs": 0,
        "search.final_top_k": 0, "search.final_epochs": 0, "search.progress": False,
        "search.schedule": "wider,deeper,deeper", "data.name": "fashion-mnist",
        "data.device": "cpu", "start.arch": SMALL, "start.epochs": 0,
        "hill_climbing.n_neigh": 3, "hill_climbing.n_nm": 2, "hill_climbing.n_steps": 2,
        "controller.mode": "paper"})
    res = run_search(cfg, run_dir=tmp_path / agent, evaluator=SyntheticEvaluator(),
                     log=lambda _m: None)
    got = [[h["stage"], h["arch"], round(h["accuracy"], 12)] for h in res.state.history]
    assert got == SAVED[agent]
    assert len({arch for _, arch, _ in got}) > 2  # the search really moved

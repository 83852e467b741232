"""A child's CUDA-graph facts reach its record: summary.json history, TensorBoard, the run log.

A real tiny search on a Fashion-MNIST slice with the graph path forced on CPU:
torch's CUDA-graph calls raise here, so every child falls back at the capture
and is retrained eagerly; the search must say so, once in the log and for
every child in its record.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import FASHION, TINY
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from eas import training
from eas.config.engine import load_config
from eas.search.loop import run_search

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not FASHION.exists(), reason="Fashion-MNIST not installed"),
              pytest.mark.skipif(torch.cuda.is_available(),
                                 reason="needs a machine where torch's CUDA-graph calls fail")]


def test_fallbacks_are_on_the_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training, "_graph_steps_wanted", lambda device, config: config.cuda_graph)
    overrides = dict(zip(TINY[::2], TINY[1::2]))
    overrides = {k.removeprefix("--"): v for k, v in overrides.items()}
    overrides.update({"child.cuda_graph_min_steps": "0", "search.final_top_k": "0",
                      "data.name": "fashion-mnist"})
    cfg = load_config(None, overrides)
    lines: list[str] = []
    run_search(cfg, run_dir=tmp_path / "run", log=lines.append)
    history = json.loads((tmp_path / "run" / "summary.json").read_text())["history"]
    assert len(history) == 6
    for rec in history:
        assert rec["fallback"] == "capture" and rec["cuda_graph"] is False
        assert rec["precision"] == "fp32"
        assert "CUDA graph capture failed" in rec["note"]
        assert "eager steps from the initial weights" in rec["note"]
    notes = [line for line in lines if "fell back to eager steps" in line]
    assert len(notes) == 1 and "child 1 " in notes[0]
    acc = EventAccumulator(str(tmp_path / "run"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    assert [e.value for e in acc.Scalars("charts/child_cuda_graph")] == [0.0] * 6
    tags = acc.Tags()["tensors"]
    assert any("child_notes" in t for t in tags) and any("child_precision" in t for t in tags)

"""Export of searched networks: ONNX (checked with onnxruntime) and TorchScript."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import CheapEvaluator, cheap_config, quiet

from eas.checkpoint import network_from_record
from eas.export import export_networks, export_run, main, run_candidates, select
from eas.network import build_network
from eas.search.loop import run_search

ort = pytest.importorskip("onnxruntime")

SKIP_NET = "C(8,3,1), C(8,3,1), S(0,1,ADD), C(8,3,1), S(0,2,CAT), P(2,2,MAX), FC(16), SM(10)"


def onnx_logits(path: Path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": x.numpy()})[0]


def test_export_networks_matches_pytorch(tmp_path: Path) -> None:
    net = build_network(SKIP_NET, seed=0)
    with torch.no_grad():
        net.gates["0_1"].fill_(0.3)
    manifest = export_networks([(net, {"accuracy": 0.5, "params": net.num_parameters()})],
                               tmp_path)
    entry = json.loads(manifest.read_text())["networks"][0]
    assert entry["arch"] == SKIP_NET and entry["accuracy"] == 0.5
    x = torch.randn(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))  # batch 5: dynamic
    with torch.no_grad():
        expect = net.eval()(x).numpy()
    np.testing.assert_allclose(onnx_logits(tmp_path / entry["onnx"], x), expect, atol=1e-4)
    scripted = torch.jit.load(str(tmp_path / entry["torchscript"]))
    np.testing.assert_allclose(scripted(x).detach().numpy(), expect, atol=1e-5)
    with pytest.raises(ValueError, match="already holds an export"):
        export_networks([(net, {})], tmp_path)


@pytest.mark.usefixtures("one_thread")
def test_export_run_best_budget_and_front(tmp_path: Path, capsys) -> None:
    run = run_search(cheap_config(tmp_path), evaluator=CheapEvaluator(), log=quiet).run_dir
    summary = json.loads((run / "summary.json").read_text())
    cands = run_candidates(run)
    # best: the search's most accurate network
    path = export_run(run, which="best")
    best = json.loads(path.read_text())["networks"]
    assert [e["arch"] for e in best] == [summary["best_arch"]]
    # under a budget: the most accurate network with at most that many parameters
    params = sorted(c["params"] for c in cands)
    budget = params[len(params) // 2]
    picked = select(cands, max_params=budget)[0]
    assert picked["params"] <= budget
    everyone = [r for r in summary["pareto"]["params"]["front"] if r["params"] <= budget]
    assert picked["accuracy"] == max(r["accuracy"] for r in everyone)
    # the front: same architectures as summary.json's, each checked with onnxruntime
    path = export_run(run, which="front", out_dir=tmp_path / "front")
    front = json.loads(path.read_text())["networks"]
    assert [e["arch"] for e in front] == [r["arch"] for r in summary["pareto"]["params"]["front"]]
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    by_arch = {c["arch"]: c for c in cands}
    for e in front:
        net = network_from_record(by_arch[e["arch"]]).eval()
        with torch.no_grad():
            expect = net(x).numpy()
        np.testing.assert_allclose(onnx_logits(path.parent / e["onnx"], x), expect, atol=1e-4)
    # the command line: one clear line for bad input, nothing written
    assert main([str(run), "--max-params", "1", "--out", str(tmp_path / "none")]) == 2
    assert "fits max_params=1" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
    assert main([str(tmp_path / "missing")]) == 2
    assert "no checkpoint.pt" in capsys.readouterr().err
    assert main([str(run), "--out", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "net_1.onnx").is_file()

"""Export of searched networks: ONNX (checked with onnxruntime) and torch.export programs,
the input contract, normalisation in the graph, finally trained networks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import FASHION, TINY, CheapEvaluator, cheap_config, quiet
from test_morphisms import SMALL, make, random_chain

from eas.arch import densenet_bc
from eas.checkpoint import network_from_record
from eas.cli.search import main as search_main
from eas.data import DATA_FILE, load_dataset, normalize_batch
from eas.export import export_networks, export_run, main, run_candidates, select
from eas.network import build_network
from eas.search.loop import run_search

ort = pytest.importorskip("onnxruntime")

SKIP_NET = "C(8,3,1), C(8,3,1), S(0,1,ADD), C(8,3,1), S(0,2,CAT), P(2,2,MAX), FC(16), SM(10)"


def onnx_logits(path: Path, x: torch.Tensor | np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = x.numpy() if isinstance(x, torch.Tensor) else x
    return np.concatenate([session.run(None, {"images": feed[i:i + 1000]})[0]
                           for i in range(0, len(feed), 1000)])


def program_logits(path: Path, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch.export.load(str(path)).module()(x).numpy()


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
    np.testing.assert_allclose(program_logits(tmp_path / entry["torch_export"], x), expect,
                               atol=1e-5)
    assert entry["input"]["normalization"].startswith("unknown")  # no contract given
    with pytest.raises(ValueError, match="already holds an export"):
        export_networks([(net, {})], tmp_path)


@pytest.mark.parametrize("mode", ["float", "uint8"])
def test_normalisation_in_the_graph(tmp_path: Path, mode: str) -> None:
    """Raw images go in; the result is the network on (x / 255 - mean) / std, as in training."""
    net = build_network("C(8,3,1), C(8,3,1), S(0,1,ADD), P(2,2,MAX), FC(16), SM(3)",
                        (3, 8, 8), seed=1).eval()
    contract = {"dataset": "mine", "shape": [3, 8, 8], "mean": [0.2, 0.5, 0.7],
                "std": [0.3, 0.25, 0.1], "num_classes": 3, "class_names": ["a", "b", "c"]}
    with pytest.raises(ValueError, match="needs the input normalisation"):
        export_networks([(net, {})], tmp_path / "none", input_mode=mode)
    assert not (tmp_path / "none").exists()
    path = export_networks([(net, {})], tmp_path, contract=contract, input_mode=mode)
    entry = json.loads(path.read_text())["networks"][0]
    info = entry["input"]
    assert info["mean"] == contract["mean"] and info["std"] == contract["std"]
    assert info["class_names"] == ["a", "b", "c"] and info["shape"] == ["batch", 3, 8, 8]
    assert info["dtype"] == ("uint8" if mode == "uint8" else "float32")
    assert info["range"] == ([0, 255] if mode == "uint8" else [0.0, 1.0])
    pixels = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expect = net(normalize_batch(pixels, torch.tensor(contract["mean"]),
                                     torch.tensor(contract["std"]))).numpy()
    raw = pixels if mode == "uint8" else pixels.float() / 255
    np.testing.assert_allclose(onnx_logits(tmp_path / entry["onnx"], raw), expect, atol=1e-4)
    np.testing.assert_allclose(program_logits(tmp_path / entry["torch_export"], raw), expect,
                               atol=1e-4)


def chain_nets() -> list:
    """Networks as the search builds them: random legal chains (wider, deeper, ADD/CAT skips,
    DenseNet inserts) from a plain and a DenseNet start, and a DenseNet-BC."""
    plain = "C(4,3,1), C(4,3,1), P(2,2,MAX), C(6,3,1), C(6,3,1), FC(8), SM(3)"
    dense = ("C(4,3,1), DL(2,3,0), DL(2,3,0), C(4,1,1), P(2,2,AVG), DL(2,3,8), DL(2,3,8), "
             "P(4,4,AVG), SM(3)")
    nets = []
    for arch, kinds in ((plain, ("wider", "deeper", "skip")),
                        (dense, ("wider", "insert", "deeper", "skip"))):
        net, log = random_chain(make(arch, (3, 8, 8), 0), 12, SMALL, np.random.default_rng(0),
                                kinds)
        assert len(log) == 12
        nets.append(net.eval())
    nets.append(make(densenet_bc(16, 4, 3, spatial=8), (3, 8, 8), 0).eval())
    return nets


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_every_kind_of_network_exports(tmp_path: Path) -> None:
    """torch.export (and ONNX) handle every layer the search builds: DL blocks and skips too."""
    nets = chain_nets()
    text = ", ".join(str(n.arch) for n in nets)
    assert "S(" in text and ",ADD)" in text and ",CAT)" in text and "DL(" in text
    path = export_networks([(n, {}) for n in nets], tmp_path)
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    for net, entry in zip(nets, json.loads(path.read_text())["networks"]):
        assert entry["arch"] == str(net.arch)
        with torch.no_grad():
            expect = net(x).numpy()
        np.testing.assert_allclose(program_logits(tmp_path / entry["torch_export"], x), expect,
                                   atol=1e-4)
        np.testing.assert_allclose(onnx_logits(tmp_path / entry["onnx"], x), expect, atol=1e-4)


@pytest.mark.usefixtures("one_thread")
def test_export_run_best_budget_and_front(tmp_path: Path, capsys) -> None:
    run = run_search(cheap_config(tmp_path), evaluator=CheapEvaluator(), log=quiet).run_dir
    summary = json.loads((run / "summary.json").read_text())
    cands = run_candidates(run)
    # best: the search's most accurate network (searched weights: no final training)
    path = export_run(run, which="best", input_mode="normalized")
    best = json.loads(path.read_text())["networks"]
    assert [e["arch"] for e in best] == [summary["best_arch"]]
    assert best[0]["weights"] == "search" and "test_accuracy" not in best[0]
    with pytest.raises(ValueError, match="no finally trained network"):
        export_run(run, weights="final", out_dir=tmp_path / "final")
    # under a budget: the most accurate network with at most that many parameters
    params = sorted(c["params"] for c in cands)
    budget = params[len(params) // 2]
    picked = select(cands, max_params=budget)[0]
    assert picked["params"] <= budget
    everyone = [r for r in summary["pareto"]["params"]["front"] if r["params"] <= budget]
    assert picked["accuracy"] == max(r["accuracy"] for r in everyone)
    # the front: same architectures as summary.json's, each checked with onnxruntime
    path = export_run(run, which="front", out_dir=tmp_path / "front", input_mode="normalized")
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
    assert main([str(run), "--out", str(tmp_path / "cli"), "--input", "normalized"]) == 0
    assert (tmp_path / "cli" / "net_1.onnx").is_file()
    assert "searched weights (checkpoint.pt)" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
@pytest.mark.skipif(not FASHION.is_dir(), reason="needs the Debian Fashion-MNIST package")
def test_exported_onnx_reproduces_the_runs_test_accuracy(tmp_path: Path, capsys) -> None:
    """A real search with final training; the export takes final_1.pt, and raw test images
    (x / 255, or the uint8 pixels) through onnxruntime give the run's test accuracy."""
    argv = TINY + ["--search.runs_dir", str(tmp_path), "--search.run_name", "run",
                   "--search.final_top_k", "1", "--search.final_epochs", "1",
                   "--search.final_full_data", "false"]
    assert search_main(argv) == 0
    run = tmp_path / "run"
    final = json.loads((run / "summary.json").read_text())["final"][0]
    recorded = json.loads((run / DATA_FILE).read_text())
    data = load_dataset("fashion-mnist", val_size=200, train_subset=256)
    assert recorded["mean"] == [float(v) for v in data.mean]
    assert recorded["class_names"][0] == "T-shirt/top" and len(recorded["class_names"]) == 10
    capsys.readouterr()
    assert main([str(run), "--out", str(tmp_path / "float")]) == 0
    assert "finally trained (final_1.pt, test acc" in capsys.readouterr().out
    entry = json.loads((tmp_path / "float" / "export.json").read_text())["networks"][0]
    assert entry["weights"] == "final" and entry["weights_file"] == "final_1.pt"
    assert entry["arch"] == final["arch"] and entry["test_accuracy"] == final["test_accuracy"]
    assert entry["input"]["dtype"] == "float32" and entry["input"]["range"] == [0.0, 1.0]
    assert entry["input"]["mean"] == recorded["mean"] and entry["input"]["std"] == recorded["std"]
    assert entry["input"]["class_names"] == recorded["class_names"]
    x, y = data.test_x.numpy(), data.test_y.numpy()
    raw = (x / 255).astype(np.float32)
    acc = float((onnx_logits(tmp_path / "float" / entry["onnx"], raw).argmax(1) == y).mean())
    assert final["test_accuracy"] > 0.3  # a trained network, not a constant guess
    assert abs(acc - final["test_accuracy"]) <= 3 / len(y)  # float rounding only
    program = program_logits(tmp_path / "float" / entry["torch_export"],
                             torch.from_numpy(raw[:500])).argmax(1)
    assert (program == onnx_logits(tmp_path / "float" / entry["onnx"], raw[:500]).argmax(1)).all()
    # uint8 pixels straight in: the very operations of training's evaluation
    path = export_run(run, out_dir=tmp_path / "uint8", input_mode="uint8")
    entry = json.loads(path.read_text())["networks"][0]
    acc = float((onnx_logits(path.parent / entry["onnx"], x).argmax(1) == y).mean())
    assert abs(acc - final["test_accuracy"]) <= 1 / len(y)
    # input_mode="normalized": the caller normalises, as the manifest says
    path = export_run(run, out_dir=tmp_path / "plain", input_mode="normalized")
    entry = json.loads(path.read_text())["networks"][0]
    assert entry["input"]["normalization"].startswith("by the caller")
    # a run folder from before data.json: the contract is recomputed from config.toml
    (run / DATA_FILE).unlink()
    path = export_run(run, out_dir=tmp_path / "old", weights="search")
    entry = json.loads(path.read_text())["networks"][0]
    assert entry["weights"] == "search" and entry["input"]["mean"] == recorded["mean"]

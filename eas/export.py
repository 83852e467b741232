"""Export searched networks as ONNX and TorchScript, with a JSON manifest.

API::

    export_networks([(net, meta), ...], out_dir)   # any ChildNets
    export_run("runs/<run>", which="best")         # from a search's run folder
    export_run(run, which="best", max_params=1e5)  # the best network under a budget
    export_run(run, which="front", cost="flops")   # the whole accuracy/FLOPs front

Command line: ``eas export RUN`` (or ``python -m eas.export RUN``) ``[--which best|front] [--cost params]
[--max-params N] [--max-flops N] [--max-latency-ms M] [--out DIR]``.

Each network ``k`` becomes ``net_<k>.onnx`` (input ``images`` of shape
``(batch, C, H, W)`` with a dynamic batch axis, output ``logits``) and
``net_<k>.torchscript.pt`` (traced; ``torch.jit.load``), and ``export.json``
lists for each its files, architecture string, input shape and objectives
(validation accuracy, params, FLOPs, latency when measured). Inputs are
normalised images, as in training: ``(x / 255 - mean) / std`` per channel with
the dataset's training statistics.

From a run folder the candidates are the networks the search kept *with
weights* (``checkpoint.pt``): the top ``search.keep_best`` by accuracy and every
architecture on a Pareto front (params, FLOPs or latency). The most accurate
network within a budget is always on the front of that cost, so a budget query
is answered from the kept networks.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from eas.checkpoint import atomic_write_text, load_checkpoint, network_from_record
from eas.network import ChildNet

__all__ = ["export_networks", "export_run", "main", "run_candidates", "select"]

_OBJECTIVES = ("accuracy", "params", "flops", "latency_ms", "step", "stage")
_BUDGETS = {"max_params": "params", "max_flops": "flops", "max_latency_ms": "latency_ms"}


def export_networks(items: Sequence[tuple[ChildNet, dict[str, Any]]], out_dir: str | Path, *,
                    opset: int = 17, onnx: bool = True, torchscript: bool = True) -> Path:
    """Write every ``(net, meta)`` as ONNX/TorchScript into ``out_dir``; return export.json's path.

    ``meta`` (objectives and anything JSON-friendly) is copied into the manifest.
    The networks are exported from CPU copies in eval mode; they are not modified.
    """
    if not items:
        raise ValueError("nothing to export: no networks given")
    out = Path(out_dir)
    if (out / "export.json").exists():
        raise ValueError(f"{out} already holds an export (export.json); choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for k, (net, meta) in enumerate(items, 1):
        model = net.clone().cpu().eval()
        x = torch.zeros((2, *model.input_shape))
        entry: dict[str, Any] = {"rank": k, "arch": str(model.arch),
                                 "input_shape": list(model.input_shape),
                                 **{key: _plain(v) for key, v in meta.items()}}
        with warnings.catch_warnings():  # the exporters warn about their own deprecations
            warnings.simplefilter("ignore")
            if onnx:
                path = out / f"net_{k}.onnx"
                torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=opset,
                                  input_names=["images"], output_names=["logits"],
                                  dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
                entry["onnx"] = path.name
            if torchscript:
                path = out / f"net_{k}.torchscript.pt"
                torch.jit.trace(model, x).save(str(path))
                entry["torchscript"] = path.name
        entries.append(entry)
    return atomic_write_text(json.dumps({"networks": entries}, indent=2) + "\n",
                             out / "export.json")


def _plain(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return str(v)


def run_candidates(run_dir: str | Path) -> list[dict[str, Any]]:
    """Networks a search kept with weights: network records with their objectives, one per arch."""
    run = Path(run_dir)
    ckpt = run / "checkpoint.pt"
    if not ckpt.is_file():
        raise ValueError(f"{run} is not a run folder: it has no checkpoint.pt")
    state = load_checkpoint(ckpt)["state"]
    found: dict[str, dict[str, Any]] = {}
    for rec in state.get("best", []):
        found[rec["arch"]] = {**rec["network"], **{k: rec.get(k) for k in _OBJECTIVES}}
    for arch, record in (state.get("front_nets") or {}).items():
        found.setdefault(arch, record)
    return list(found.values())


def select(candidates: Sequence[dict[str, Any]], *, which: str = "best", cost: str = "params",
           max_params: float | None = None, max_flops: float | None = None,
           max_latency_ms: float | None = None) -> list[dict[str, Any]]:
    """The records to export: the most accurate one, or the accuracy/``cost`` front, within budgets."""
    if which not in ("best", "front"):
        raise ValueError(f"which must be 'best' or 'front', got {which!r}")
    if cost not in ("params", "flops", "latency_ms"):
        raise ValueError(f"unknown cost {cost!r}; allowed values: params, flops, latency_ms")
    budgets = {"params": max_params, "flops": max_flops, "latency_ms": max_latency_ms}
    ok = []
    for rec in candidates:
        fits = True
        for name, limit in budgets.items():
            if limit is None:
                continue
            value = rec.get(name)
            if value is None:
                raise ValueError(f"the run did not record {name} (a budget on it needs "
                                 "objectives.latency = true)" if name == "latency_ms" else
                                 f"the run did not record {name}")
            fits = fits and float(value) <= float(limit)
        if fits and rec.get("accuracy") is not None:
            ok.append(rec)
    if which == "best":
        return sorted(ok, key=lambda r: -float(r["accuracy"]))[:1]
    with_cost = [r for r in ok if r.get(cost) is not None]
    with_cost.sort(key=lambda r: (float(r[cost]), -float(r["accuracy"])))
    front, best = [], -math.inf
    for r in with_cost:  # ascending cost: keep each strict improvement in accuracy
        if float(r["accuracy"]) > best:
            front.append(r)
            best = float(r["accuracy"])
    return front


def export_run(run_dir: str | Path, *, which: str = "best", cost: str = "params",
               max_params: float | None = None, max_flops: float | None = None,
               max_latency_ms: float | None = None, out_dir: str | Path | None = None,
               opset: int = 17) -> Path:
    """Export the chosen networks of a search run (see the module docstring); returns export.json."""
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "export"
    if (out / "export.json").exists():
        raise ValueError(f"{out} already holds an export (export.json); choose another folder "
                         "with --out")
    chosen = select(run_candidates(run_dir), which=which, cost=cost, max_params=max_params,
                    max_flops=max_flops, max_latency_ms=max_latency_ms)
    if not chosen:
        limits = ", ".join(f"{k}={v:g}" for k, v in (("max_params", max_params),
                                                     ("max_flops", max_flops),
                                                     ("max_latency_ms", max_latency_ms))
                           if v is not None)
        raise ValueError(f"no kept network of {run_dir} fits {limits or 'the request'}")
    items = [(network_from_record(r), {k: r.get(k) for k in _OBJECTIVES}) for r in chosen]
    return export_networks(items, out, opset=opset)


def main(argv: Sequence[str] | None = None, prog: str = "python -m eas.export") -> int:
    """``python -m eas.export RUN ...`` (``eas export RUN ...``): export a run's best network or its front."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Export a search run's best network (optionally under a budget) or its "
                    "Pareto front as ONNX + TorchScript with an export.json manifest.")
    parser.add_argument("run", help="the run folder (runs/<run name>)")
    parser.add_argument("--which", choices=("best", "front"), default="best",
                        help="the most accurate network, or the whole front (default: best)")
    parser.add_argument("--cost", choices=("params", "flops", "latency_ms"), default="params",
                        help="the cost of the front (default: params)")
    parser.add_argument("--max-params", type=float, help="only networks with at most N parameters")
    parser.add_argument("--max-flops", type=float, help="only networks with at most N FLOPs")
    parser.add_argument("--max-latency-ms", type=float,
                        help="only networks with at most M ms measured latency")
    parser.add_argument("--out", help="output folder (default: RUN/export)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    args = parser.parse_args(argv)
    for name in ("max_params", "max_flops", "max_latency_ms"):
        v = getattr(args, name)
        if v is not None and not (math.isfinite(v) and v > 0):
            parser.error(f"--{name.replace('_', '-')} must be > 0, got {v}")
    try:
        path = export_run(args.run, which=args.which, cost=args.cost,
                          max_params=args.max_params, max_flops=args.max_flops,
                          max_latency_ms=args.max_latency_ms, out_dir=args.out,
                          opset=args.opset)
    except ValueError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    manifest = json.loads(path.read_text())
    for e in manifest["networks"]:
        acc = e.get("accuracy")
        print(f"net_{e['rank']}: {e['arch']}  val acc "
              f"{'n/a' if acc is None else f'{100 * acc:.2f}%'}, {e.get('params')} params, "
              f"{e.get('flops')} FLOPs")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

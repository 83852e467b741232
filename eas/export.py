"""Export searched networks as ONNX and torch.export programs, with a JSON manifest.

API::

    export_networks([(net, meta), ...], out_dir, contract=...)  # any ChildNets
    export_run("runs/<run>", which="best")         # from a search's run folder
    export_run(run, which="best", max_params=1e5)  # the best network under a budget
    export_run(run, which="front", cost="flops")   # the whole accuracy/FLOPs front

Command line: ``eas export RUN`` (or ``python -m eas.export RUN``) ``[--which best|front]
[--cost params] [--max-params N] [--max-flops N] [--max-latency-ms M]
[--weights auto|final|search] [--input float|uint8|normalized] [--out DIR]``.

Each network ``k`` becomes ``net_<k>.onnx`` (input ``images`` of shape
``(batch, C, H, W)`` with a dynamic batch axis, output ``logits``) and
``net_<k>.pt2`` (a ``torch.export`` program: ``torch.export.load(path).module()``),
and ``export.json`` lists for each its files, architecture string, which weights it
took, its objectives (validation accuracy, params, FLOPs, latency when measured;
the run's test accuracy for a finally trained network) and its **input contract**:
shape, dtype, value range, the per-channel mean/std of its training data, class
names when known. By default (``input_mode="float"``) the normalisation is part of the
exported graph: raw images as float32 in [0, 1] (``x_uint8 / 255``) go straight in;
``input_mode="uint8"`` takes the stored ``uint8`` pixels in [0, 255];
``input_mode="normalized"`` leaves ``(x / 255 - mean) / std`` to the caller, as in training.

From a run folder the candidates are the networks the search kept *with
weights* (``checkpoint.pt``): the top ``search.keep_best`` by validation accuracy and
every architecture on a Pareto front (params, FLOPs or latency). The most accurate
network within a budget is always on the front of that cost, so a budget query is
answered from the kept networks. ``weights="auto"`` (default) then takes the
*finally trained* network (``final_<k>.pt``, the network the run reports test
accuracy for) of every chosen architecture that has one, and its searched weights
otherwise; ``"final"`` only finally trained networks, ``"search"`` only searched
weights. The input contract comes from the network file (finally trained networks),
else the run's ``data.json`` (written at search time), else it is recomputed from the
run's ``config.toml`` (runs made before ``data.json`` existed).

Why torch.export rather than TorchScript: TorchScript is deprecated in favour of
``torch.export``, which handles every layer the search builds (convolutions,
pooling, FC, DenseNet ``DL`` layers and blocks, ``S(i,j,ADD|CAT)`` skips, shrunk
networks); the tests export chains of random legal transformations of both a plain
and a DenseNet start and compare the programs with PyTorch.
"""

from __future__ import annotations

import json
import math
import sys
import tomllib
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.onnx import _constants as _onnx_constants  # private, but torch's one home of these

from eas._cli import OneLineParser, creation_root, fail, output_folder_problem, remove_new
from eas.checkpoint import (
    CheckpointError,
    atomic_write_text,
    checked_network,
    load_checkpoint,
    read_torch_file,
)
from eas.data import DATA_FILE, input_contract, load_dataset
from eas.network import ChildNet

__all__ = ["INPUT_MODES", "WEIGHTS", "Preprocessed", "export_networks", "export_run",
           "final_records", "main", "run_candidates", "run_contract", "select"]

_OBJECTIVES = ("accuracy", "params", "flops", "latency_ms", "step", "stage")
_BUDGETS = {"max_params": "params", "max_flops": "flops", "max_latency_ms": "latency_ms"}
ONNX_OPSETS: tuple[int, int] = (
    int(getattr(_onnx_constants, "ONNX_MIN_OPSET", 7)),
    int(getattr(_onnx_constants, "ONNX_MAX_OPSET", 17)),
)
"""(lowest, highest) ONNX opset version the installed torch.onnx supports."""


def check_opset(opset: object) -> None:
    """``opset`` is an opset version torch.onnx supports here; ValueError (one line) if not."""
    lo, hi = ONNX_OPSETS
    if isinstance(opset, bool) or not isinstance(opset, int) or not lo <= opset <= hi:
        raise ValueError(f"--opset must be an integer in [{lo}, {hi}] (the ONNX opsets this "
                         f"torch {torch.__version__.split('+')[0]} exports), got {opset!r}")
INPUT_MODES: tuple[str, ...] = ("float", "uint8", "normalized")
"""What an exported network takes: float32 images in [0, 1] or uint8 pixels in [0, 255]
(normalisation inside the graph), or images already normalised by the caller."""
WEIGHTS: tuple[str, ...] = ("auto", "final", "search")
"""Which weights a run's export takes (see the module docstring)."""


class Preprocessed(nn.Module):
    """``net`` behind its input normalisation: raw images in, logits out.

    ``mode="uint8"`` computes ``x * (1 / (255 std)) - mean / std`` in float32, the
    same operations as :func:`eas.data.normalize_batch` in training and evaluation;
    ``mode="float"`` takes ``x / 255`` and computes ``x * (1 / std) - mean / std``.
    """

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float],
                 mode: str) -> None:
        super().__init__()
        if mode not in ("float", "uint8"):
            raise ValueError(f"mode must be 'float' or 'uint8', got {mode!r}")
        self.net = net
        mean_t = torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        std_t = torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1)
        scale = 1.0 / (255.0 * std_t) if mode == "uint8" else 1.0 / std_t
        self.register_buffer("scale", scale)
        self.register_buffer("shift", mean_t / std_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.net(x.to(torch.float32) * self.scale - self.shift)


def _input_entry(shape: Sequence[int], contract: dict[str, Any] | None, mode: str
                 ) -> dict[str, Any]:
    """export.json's description of what a network takes (see :data:`INPUT_MODES`)."""
    contract = contract or {}
    entry: dict[str, Any] = {"name": "images", "layout": "NCHW", "shape": ["batch", *shape]}
    if mode == "float":
        entry.update(dtype="float32", range=[0.0, 1.0],
                     normalization="in the graph: pass x_uint8 / 255")
    elif mode == "uint8":
        entry.update(dtype="uint8", range=[0, 255], normalization="in the graph")
    else:
        entry.update(dtype="float32", range=None,
                     normalization="by the caller: (x_uint8 / 255 - mean) / std per channel"
                     if contract.get("mean") is not None else
                     "unknown: the run recorded no input normalisation")
    entry["mean"], entry["std"] = contract.get("mean"), contract.get("std")
    for key in ("dataset", "num_classes", "class_names"):
        entry[key] = contract.get(key)
    return entry


def export_networks(items: Sequence[tuple[ChildNet, dict[str, Any]]], out_dir: str | Path, *,
                    opset: int = 17, onnx: bool = True, torch_export: bool = True,
                    contract: dict[str, Any] | None = None, input_mode: str = "normalized") -> Path:
    """Write every ``(net, meta)`` as ONNX / torch.export into ``out_dir``; return export.json.

    ``meta`` (objectives and anything JSON-friendly) is copied into the manifest; a
    ``meta["input"]`` dict (an :func:`eas.data.input_contract`) overrides ``contract``
    for that network. ``input_mode`` is one of :data:`INPUT_MODES`; "float" and "uint8"
    need a contract with ``mean``/``std``. The networks are exported from CPU copies in
    eval mode; they are not modified.
    """
    if not items:
        raise ValueError("nothing to export: no networks given")
    if onnx:
        check_opset(opset)
    if input_mode not in INPUT_MODES:
        raise ValueError(f"unknown input mode {input_mode!r}; allowed values: "
                         f"{', '.join(INPUT_MODES)}")
    out = Path(out_dir)
    if (out / "export.json").exists():
        raise ValueError(f"{out} already holds an export (export.json); choose another folder")
    prepared = []
    for net, meta in items:
        meta = dict(meta)
        own = meta.pop("input", None) or contract
        if input_mode != "normalized" and (own is None or own.get("mean") is None):
            raise ValueError(f"input_mode={input_mode!r} needs the input normalisation (mean/std) the "
                             "network was trained with, and none is known; pass a contract "
                             "or use input_mode='normalized'")
        prepared.append((net, meta, own))
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for k, (net, meta, own) in enumerate(prepared, 1):
        base = net.clone().cpu().eval()
        model: nn.Module = base
        if input_mode != "normalized":
            model = Preprocessed(base, own["mean"], own["std"], input_mode).eval()
        dtype = torch.uint8 if input_mode == "uint8" else torch.float32
        x = torch.zeros((2, *base.input_shape), dtype=dtype)
        entry: dict[str, Any] = {"rank": k, "arch": str(base.arch),
                                 "input_shape": list(base.input_shape),
                                 **{key: _plain(v) for key, v in meta.items()},
                                 "input": _plain(_input_entry(base.input_shape, own, input_mode)),
                                 "output": {"name": "logits", "shape": ["batch", "classes"],
                                            "meaning": "class scores (argmax = class; softmax "
                                                       "= probabilities)"}}
        with warnings.catch_warnings():  # the exporters warn about their own deprecations
            warnings.simplefilter("ignore")
            if onnx:
                path = out / f"net_{k}.onnx"
                torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=opset,
                                  input_names=["images"], output_names=["logits"],
                                  dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
                entry["onnx"] = path.name
            if torch_export:
                path = out / f"net_{k}.pt2"
                batch = torch.export.Dim("batch", min=1, max=1 << 20)
                program = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
                torch.export.save(program, str(path))
                entry["torch_export"] = path.name
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
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return str(v)


def _search_state(run: Path) -> dict[str, Any]:
    """The ``state`` of ``run``'s checkpoint, read weights-only (a crafted checkpoint is refused
    with :class:`~eas.checkpoint.UnsafeFileError`, nothing of it run)."""
    ckpt = run / "checkpoint.pt"
    state = load_checkpoint(ckpt).get("state")
    if not isinstance(state, dict):
        raise CheckpointError(f"{ckpt} is not a search checkpoint (no 'state' entry)")
    return state


def _not_a_search(run: Path) -> CheckpointError:
    return CheckpointError(f"{run / 'checkpoint.pt'} is not a search checkpoint (its kept "
                           "networks are not network records)")


def run_candidates(run_dir: str | Path) -> list[dict[str, Any]]:
    """Networks a search kept with weights: network records with their objectives, one per arch.

    ``checkpoint.pt`` is read weights-only (see :func:`eas.checkpoint.read_torch_file`).
    """
    run = Path(run_dir)
    ckpt = run / "checkpoint.pt"
    if not ckpt.is_file():
        raise ValueError(f"{run} is not a run folder: it has no checkpoint.pt")
    state = _search_state(run)
    found: dict[str, dict[str, Any]] = {}
    try:
        for rec in state.get("best", []):
            found[rec["arch"]] = {**rec["network"], **{k: rec.get(k) for k in _OBJECTIVES}}
        for arch, record in (state.get("front_nets") or {}).items():
            found.setdefault(arch, record)
    except (AttributeError, KeyError, TypeError):
        raise _not_a_search(run) from None
    if not all(isinstance(r, dict) for r in found.values()):
        raise _not_a_search(run)
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


def final_records(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """The run's finally trained networks that did not fail, by architecture: network
    records of ``final_<k>.pt`` (arch, weights, rank, test accuracy, input contract)."""
    run = Path(run_dir)
    state = _search_state(run)
    found: dict[str, dict[str, Any]] = {}
    for entry in state.get("final") or []:
        if not isinstance(entry, dict) or "rank" not in entry:
            raise _not_a_search(run)
        path = run / f"final_{entry['rank']}.pt"
        if entry.get("failed") or not path.is_file():
            continue
        record = read_torch_file(path)  # weights-only, like every file eas reads
        if isinstance(record, dict) and record.get("arch") == entry["arch"]:
            found.setdefault(entry["arch"], {**record, "file": path.name})
    return found


def run_contract(run_dir: str | Path, *, final: bool = False) -> dict[str, Any] | None:
    """The input contract of a run's searched (or, ``final``, finally trained) networks.

    From ``data.json`` (written at search time); for runs made before it existed,
    recomputed by loading the dataset as the run's ``config.toml`` describes (None
    when that is not possible). Finally trained networks carry their own contract in
    ``final_<k>.pt``; ``final`` only matters for such older runs.
    """
    run = Path(run_dir)
    if (run / DATA_FILE).is_file() and not final:
        try:
            contract = json.loads((run / DATA_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{run / DATA_FILE} is not readable JSON: {exc}") from None
        return contract if isinstance(contract, dict) else None
    try:
        cfg = tomllib.loads((run / "config.toml").read_text())
        d, s = cfg["data"], cfg.get("search", {})
        subset = d.get("train_subset")
        if final and s.get("final_full_data", True):
            subset = None
        root = d.get("root")
        data = load_dataset(d["name"], None if root in (None, "none") else root,
                            val_size=int(d.get("val_size", 5000)), seed=int(d.get("seed", 0)),
                            train_subset=None if subset in (None, "none") else int(subset),
                            use_extra=bool(d.get("use_extra", False)), download=False)
    except (OSError, KeyError, TypeError, ValueError, tomllib.TOMLDecodeError):
        return None
    return input_contract(data)


def export_run(run_dir: str | Path, *, which: str = "best", cost: str = "params",
               max_params: float | None = None, max_flops: float | None = None,
               max_latency_ms: float | None = None, out_dir: str | Path | None = None,
               opset: int = 17, weights: str = "auto", input_mode: str = "float") -> Path:
    """Export the chosen networks of a search run (see the module docstring); returns export.json."""
    if weights not in WEIGHTS:
        raise ValueError(f"unknown weights {weights!r}; allowed values: {', '.join(WEIGHTS)}")
    if input_mode not in INPUT_MODES:
        raise ValueError(f"unknown input mode {input_mode!r}; allowed values: "
                         f"{', '.join(INPUT_MODES)}")
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "export"
    if (out / "export.json").exists():
        raise ValueError(f"{out} already holds an export (export.json); choose another folder "
                         "with --out")
    candidates = run_candidates(run_dir)
    finals = final_records(run_dir) if weights != "search" else {}
    if weights == "final":
        if not finals:
            raise ValueError(f"{run_dir} has no finally trained network (search.final_top_k "
                             "= 0, or final training failed); use --weights search")
        candidates = [c for c in candidates if c["arch"] in finals]
    chosen = select(candidates, which=which, cost=cost, max_params=max_params,
                    max_flops=max_flops, max_latency_ms=max_latency_ms)
    if not chosen:
        limits = ", ".join(f"{k}={v:g}" for k, v in (("max_params", max_params),
                                                     ("max_flops", max_flops),
                                                     ("max_latency_ms", max_latency_ms))
                           if v is not None)
        kept = "finally trained network" if weights == "final" else "kept network"
        raise ValueError(f"no {kept} of {run_dir} fits {limits or 'the request'}")
    search_contract: list[dict[str, Any] | None] = []
    items = []
    for rec in chosen:
        meta: dict[str, Any] = {k: rec.get(k) for k in _OBJECTIVES}
        final = finals.get(rec["arch"])
        if final is not None:
            meta.update(weights="final", weights_file=final["file"],
                        test_accuracy=final.get("test_accuracy"),
                        final_epochs=final.get("epochs"))
            meta["input"] = final.get("input") or run_contract(run_dir, final=True)
            net = checked_network(final, Path(run_dir) / final["file"])
        else:
            meta.update(weights="search", weights_file="checkpoint.pt")
            if not search_contract:
                search_contract.append(run_contract(run_dir))
            meta["input"] = search_contract[0]
            net = checked_network(rec, Path(run_dir) / "checkpoint.pt")
        items.append((net, meta))
    return export_networks(items, out, opset=opset, input_mode=input_mode)


def main(argv: Sequence[str] | None = None, prog: str = "python -m eas.export") -> int:
    """``python -m eas.export RUN ...`` (``eas export RUN ...``): export a run's best network or its front.

    Bad arguments (opset, budgets, run folder, ``--out``) are one line and exit
    code 2, before any work and with nothing written; a failure while exporting
    is one line and exit code 1, and takes back the files written so far.
    """
    parser = OneLineParser(
        prog=prog,
        description="Export a search run's best network (optionally under a budget) or its "
                    "Pareto front as ONNX + torch.export programs with an export.json "
                    "manifest (objectives and the input contract: shape, dtype, range, "
                    "mean/std, class names).")
    parser.add_argument("run", help="the run folder (runs/<run name>)")
    parser.add_argument("--which", choices=("best", "front"), default="best",
                        help="the most accurate network, or the whole front (default: best)")
    parser.add_argument("--cost", choices=("params", "flops", "latency_ms"), default="params",
                        help="the cost of the front (default: params)")
    parser.add_argument("--max-params", type=float, help="only networks with at most N parameters")
    parser.add_argument("--max-flops", type=float, help="only networks with at most N FLOPs")
    parser.add_argument("--max-latency-ms", type=float,
                        help="only networks with at most M ms measured latency")
    parser.add_argument("--weights", choices=WEIGHTS, default="auto",
                        help="auto: the finally trained network (final_<k>.pt) of each chosen "
                             "architecture that has one, else its searched weights; final: "
                             "only finally trained networks; search: searched weights "
                             "(default: auto)")
    parser.add_argument("--input", choices=INPUT_MODES, default="float",
                        help="what the exported networks take: float = float32 images in "
                             "[0, 1] and uint8 = pixels in [0, 255] (normalisation inside the "
                             "graph), normalized = (x/255 - mean)/std done by the caller "
                             "(default: float)")
    parser.add_argument("--out", help="output folder (default: RUN/export)")
    parser.add_argument("--opset", type=int, default=17,
                        help=f"ONNX opset, {ONNX_OPSETS[0]} to {ONNX_OPSETS[1]} (default: 17)")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (default: off, one line)")
    args = parser.parse_args(argv)
    for name in ("max_params", "max_flops", "max_latency_ms"):
        v = getattr(args, name)
        if v is not None and not (math.isfinite(v) and v > 0):
            parser.error(f"--{name.replace('_', '-')} must be > 0, got {v}")
    out = Path(args.out) if args.out is not None else Path(args.run) / "export"
    try:
        check_opset(args.opset)
        if not (Path(args.run) / "checkpoint.pt").is_file():
            raise ValueError(f"{args.run} is not a run folder: it has no checkpoint.pt")
        problem = output_folder_problem(out)
        if problem is not None:
            raise ValueError(f"--out: {problem}")
    except ValueError as exc:
        return fail(parser.prog, exc, 2)
    before = {p.name for p in out.iterdir()} if out.is_dir() else None
    top = creation_root(out)
    try:
        path = export_run(args.run, which=args.which, cost=args.cost,
                          max_params=args.max_params, max_flops=args.max_flops,
                          max_latency_ms=args.max_latency_ms, out_dir=out,
                          opset=args.opset, weights=args.weights, input_mode=args.input)
    except Exception as exc:  # noqa: BLE001 - one line (and no partial output), unless --debug
        remove_new(out, before, top)
        if args.debug:
            raise
        if isinstance(exc, ValueError):  # bad input, found by the run's contents
            return fail(parser.prog, exc, 2)
        if isinstance(exc, OSError):
            return fail(parser.prog, f"cannot write to {out}: {exc.strerror or exc} "
                        f"({exc.filename or out})", 1)
        return fail(parser.prog, f"{type(exc).__name__}: {exc} (run with --debug for the "
                    "traceback)", 1)
    manifest = json.loads(path.read_text())
    for e in manifest["networks"]:
        acc, test = e.get("accuracy"), e.get("test_accuracy")
        took = (f"finally trained ({e['weights_file']}, test acc "
                f"{'n/a' if test is None else f'{100 * test:.2f}%'})"
                if e.get("weights") == "final" else "searched weights (checkpoint.pt)")
        print(f"net_{e['rank']}: {e['arch']}  {took}, val acc "
              f"{'n/a' if acc is None else f'{100 * acc:.2f}%'}, {e.get('params')} params, "
              f"{e.get('flops')} FLOPs")
    first = manifest["networks"][0]["input"]
    print(f"input: {first['dtype']} {first['layout']} {first['shape']}, "
          f"{first['normalization']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""GPU child-training figures (issues 10 and 20), side by side in one run (graph against eager).

Sections (all by default; pick some with ``--only``), each printing a table and
its wall time; the whole run stays within ``--max-minutes`` (10): a section that
would start after that is skipped and says so. The defaults are sized for one
H100/H200 (estimated 4-6 minutes in all; not yet run on one):

* ``child``: one Table-1 child (``eas.arch.TABLE1``), ``--epochs`` epochs (20 =
  the paper's recipe, batch 64) on ``--images`` synthetic 32x32x3 uint8 images
  (45,000 = CIFAR-10's training split after the validation split; pad-4 crop +
  flip augmentation), with ``cuda_graph`` off and on: training seconds,
  images/s, speed-up.
* ``loader``: ``train_child`` (graph on) against a conventional loop over a
  ``torch.utils.data.DataLoader`` with per-sample torchvision transforms
  (PIL, RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize;
  ``--loader-workers`` processes, pinned memory), one epoch of the same images,
  same Table-1 network and recipe: seconds, images/s, ratio.
* ``step``: the training step alone on one fixed batch (forward, backward,
  SGD; no input pipeline) at batch 64 and 512, eager against one replayed CUDA
  graph: milliseconds per step.
* ``densenet``: one epoch of DenseNet-BC(40,40) on the same images, graph
  off and on.
* ``round``: children per hour for a round of ``--round-children`` (8)
  stage-1-sized children (the Table-1 start after a seeded random episode of
  the paper's 4 wider + 5 deeper steps), ``--round-epochs`` (5) epochs each, trained 1,
  4 and 8 at once on one GPU (``ParallelEvaluator``, process back-end,
  ``children_per_gpu``); worker start-up and a warm-up child are excluded.
  The stage-1 estimate is 300 children at that rate.

Synthetic images are fine for speed (accuracy is checked on real data by the
GPU tests in ``tests/test_graphed.py``). ``train_child`` against a per-sample
DataLoader loop: ``python bench/bench_training.py --device cuda`` (train_child
uses CUDA graphs by default).

Every table row that used a CUDA graph says so (``graph used``) with the
child's precision and, when the graph path fell back, the recorded note.

    python bench/bench_gpu.py                          # everything, the paper's sizes
    python bench/bench_gpu.py --only child step         # the quick ones
    python bench/bench_gpu.py --dry-run                 # tiny sizes on CPU: checks the script
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eas.accel import autocast, choose_precision  # noqa: E402
from eas.arch import TABLE1, densenet_bc  # noqa: E402
from eas.data import AugmentConfig, Data  # noqa: E402
from eas.envs import NetTransformEnv, TrainerEvaluator  # noqa: E402
from eas.envs.parallel import ParallelEvaluator  # noqa: E402
from eas.network import ChildNet, build_network  # noqa: E402
from eas.recipe import TrainConfig
from eas.training import lr_at, make_optimizer, train_child

SECTIONS = ("child", "loader", "step", "densenet", "round")
SHAPE = (3, 32, 32)


def synthetic(images: int, val: int, device: str) -> Data:
    """Random uint8 32x32x3 images, 10 classes, CIFAR-like augmentation, on ``device``."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (images + val, *SHAPE), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (images + val,), generator=g)
    return Data("synthetic", x[:images], y[:images], x[images:], y[images:], x[images:],
                y[images:], 10, torch.full((3,), 0.5), torch.full((3,), 0.25),
                AugmentConfig(crop_padding=4, hflip=True)).to(device)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def machine(device: str) -> str:
    info = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, " \
           f"torch {torch.__version__}"
    if device.startswith("cuda"):
        info += f", GPU {torch.cuda.get_device_name(0)}"
    return info


# ------------------------------------------------------------------------ sections
def section_child(args: argparse.Namespace, data: Data) -> None:
    print(f"\n## One Table-1 child, {args.epochs} epochs, {len(data.train_y)} images, batch 64\n")
    print("| setting | train s | images/s | val acc | graph used | precision | note |")
    print("|---|---:|---:|---:|---|---|---|")
    times = {}
    for graph in (False, True):
        net = build_network(TABLE1, SHAPE, seed=0)
        res = train_child(net, data, TrainConfig(epochs=args.epochs, cuda_graph=graph),
                          device=args.device, seed=0)
        times[graph] = res.train_time
        print(f"| cuda_graph={graph} | {res.train_time:.1f} | {res.images_per_second:,.0f} | "
              f"{res.val_accuracy:.3f} | {res.cuda_graph} | {res.precision} | {res.note or ''} |")
    print(f"\nspeed-up of the graph: {times[False] / times[True]:.2f}x")


class _RGBImages(torch.utils.data.Dataset):
    """torchvision-style dataset: uint8 HWC arrays -> PIL image -> per-sample transforms."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def loader_epoch(data: Data, args: argparse.Namespace, cfg: TrainConfig) -> tuple[float, int]:
    """Seconds and steps of one epoch of the conventional DataLoader loop (Table-1 net)."""
    import torchvision.transforms as T

    device = torch.device(args.device)
    tf = T.Compose([T.RandomCrop(SHAPE[1], padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(data.mean.tolist(), data.std.tolist())])
    images = data.train_x.permute(0, 2, 3, 1).cpu().numpy()
    loader = torch.utils.data.DataLoader(
        _RGBImages(images, data.train_y.cpu().numpy(), tf), batch_size=cfg.batch_size,
        shuffle=True, drop_last=True, num_workers=args.loader_workers,
        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(0))
    net = build_network(TABLE1, SHAPE, seed=0).to(device)
    net.to(memory_format=torch.channels_last).train()
    opt = make_optimizer(net, cfg)
    precision = choose_precision(device, cfg.amp)
    total = len(loader)
    _sync(args.device)
    start = time.perf_counter()
    for step, (xb, yb) in enumerate(loader):
        xb = xb.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        yb = yb.to(device, non_blocking=True)
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, step, total)
        with autocast(device, precision):
            logits = net(xb)
        loss = F.cross_entropy(logits.float(), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(args.device)
    return time.perf_counter() - start, total


def section_loader(args: argparse.Namespace, data: Data) -> None:
    print(f"\n## train_child against a DataLoader loop, one epoch of {len(data.train_y)} images,"
          " Table-1 net, batch 64\n")
    print("| pipeline | epoch s | images/s | graph used | note |")
    print("|---|---:|---:|---|---|")
    cfg = TrainConfig(epochs=1)
    no_val = dataclasses.replace(data, val_x=data.val_x[:0], val_y=data.val_y[:0])
    res = train_child(build_network(TABLE1, SHAPE, seed=0), no_val, cfg, device=args.device,
                      seed=0)
    print(f"| train_child | {res.train_time:.1f} | {res.images_per_second:,.0f} | "
          f"{res.cuda_graph} | {res.note or ''} |")
    seconds, steps = loader_epoch(data, args, cfg)
    print(f"| DataLoader ({args.loader_workers} workers) | {seconds:.1f} | "
          f"{steps * cfg.batch_size / seconds:,.0f} | False | |")
    print(f"\ntrain_child is {seconds / res.train_time:.1f}x faster")


def _step_fns(net: ChildNet, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
              device: str, lr: torch.Tensor | None):
    opt = make_optimizer(net, cfg, lr=lr, fused=True if lr is not None else None)
    dev = torch.device(device)
    precision = choose_precision(dev, cfg.amp)

    def step() -> None:
        with autocast(dev, precision, cache_enabled=False):
            logits = net(x)
        F.cross_entropy(logits.float(), y).backward()
        opt.step()

    return opt, step


def section_step(args: argparse.Namespace, data: Data) -> None:
    print("\n## The training step alone (one fixed batch, no input pipeline), Table-1 net\n")
    print("| batch | eager ms/step | graph ms/step | speed-up |")
    print("|---:|---:|---:|---:|")
    cuda = args.device.startswith("cuda")
    for batch in (64, 512):
        x = (data.train_x[:batch].float() / 255).contiguous(memory_format=torch.channels_last)
        y = data.train_y[:batch]
        cfg = TrainConfig()
        results = {}
        for graph in (False, True):
            if graph and not cuda:
                results[graph] = float("nan")
                continue
            net = build_network(TABLE1, SHAPE, seed=0).to(args.device)
            net.to(memory_format=torch.channels_last).train()
            lr = torch.tensor(cfg.lr, device=args.device) if graph else None
            opt, step = _step_fns(net, x, y, cfg, args.device, lr)
            for _ in range(5):  # warm-up (cuDNN autotuning, momentum buffers)
                opt.zero_grad(set_to_none=True)
                step()
            run = step
            if graph:
                opt.zero_grad(set_to_none=True)
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    step()
                run = g.replay
            _sync(args.device)
            n = args.step_iters
            t = time.perf_counter()
            for _ in range(n):
                if not graph:
                    opt.zero_grad(set_to_none=True)
                run()
            _sync(args.device)
            results[graph] = (time.perf_counter() - t) / n * 1e3
        print(f"| {batch} | {results[False]:.2f} | {results[True]:.2f} | "
              f"{results[False] / results[True]:.1f}x |")


def section_densenet(args: argparse.Namespace, data: Data) -> None:
    print(f"\n## DenseNet-BC({args.densenet_depth},40), one epoch on {len(data.train_y)} images, batch 64\n")
    print("| setting | epoch s | images/s | graph used | precision | note |")
    print("|---|---:|---:|---|---|---|")
    for graph in (False, True):
        net = build_network(densenet_bc(args.densenet_depth, 40), SHAPE, seed=0)
        cfg = TrainConfig(epochs=1, cuda_graph=graph)
        res = train_child(net, dataclasses.replace(data, val_x=data.val_x[:0],
                                                   val_y=data.val_y[:0]),
                          cfg, device=args.device, seed=0)
        print(f"| cuda_graph={graph} | {res.train_time:.1f} | {res.images_per_second:,.0f} | "
              f"{res.cuda_graph} | {res.precision} | {res.note or ''} |")


def stage1_children(n: int) -> list[ChildNet]:
    """``n`` children of the Table-1 start: seeded random 4 wider + 5 deeper episodes."""
    env = NetTransformEnv(TABLE1, input_shape=SHAPE, evaluator=lambda net: 0.0, cache=False)
    env.action_space.seed(0)
    out = []
    for i in range(n):
        env.reset(seed=i)
        done = False
        while not done:
            _, _, done, _, _ = env.step(env.action_space.sample())
        assert env.net is not None
        out.append(env.net)
    return out


def section_round(args: argparse.Namespace, data: Data) -> None:
    cpu_data = data.to("cpu")
    cfg = TrainConfig(epochs=args.round_epochs)
    children = stage1_children(args.round_children)
    print(f"\n## A round of {len(children)} stage-1-sized children, {args.round_epochs} epochs each,"
          f" {len(data.train_y)} images\n")
    print("| at once | start-up s | round s | children/h | stage 1 (300 children) h | graphed |")
    print("|---:|---:|---:|---:|---:|---|")
    device = None if args.device.startswith("cuda") else "cpu"
    for k in args.at_once:
        base = TrainerEvaluator(cpu_data, cfg, seed=0, keep_weights=False)
        ev = ParallelEvaluator(base, workers=k, backend="serial" if k == 1 else "process",
                               children_per_gpu=k, device=device)
        try:
            t = time.perf_counter()
            ev.evaluate_many(children[:k])  # start-up + warm-up child per worker (excluded)
            startup = time.perf_counter() - t
            t = time.perf_counter()
            results = ev.evaluate_many(children)
            elapsed = time.perf_counter() - t
        finally:
            ev.close()
        failed = sum(r.failed for r in results)
        graphed = sum(bool(r.extra.get("cuda_graph")) for r in results)
        per_hour = len(children) / elapsed * 3600
        print(f"| {k} | {startup:.1f} | {elapsed:.1f} | {per_hour:,.0f} | "
              f"{300 / per_hour:.2f} | {graphed}/{len(results)} |"
              + (f" {failed} failed" if failed else ""))


DRY_RUN = {"device": "cpu", "epochs": 1, "images": 512, "val": 128, "step_iters": 3,
           "round_children": 2, "round_epochs": 1, "at_once": [1], "densenet_depth": 10,
           "loader_workers": 0, "threads": 1}
"""--dry-run: tiny sizes on CPU, to check the script's own logic in seconds (no GPU figures)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--epochs", type=int, default=20, help="epochs of the Table-1 child (child)")
    p.add_argument("--images", type=int, default=45_000, help="synthetic training images")
    p.add_argument("--val", type=int, default=5_000, help="synthetic validation images")
    p.add_argument("--step-iters", type=int, default=200, help="timed steps per step row")
    p.add_argument("--round-children", type=int, default=8)
    p.add_argument("--round-epochs", type=int, default=5, help="epochs per child (round)")
    p.add_argument("--at-once", type=int, nargs="+", default=[1, 4, 8],
                   help="children trained at once in the round section")
    p.add_argument("--densenet-depth", type=int, default=40, help="DenseNet-BC depth (densenet)")
    p.add_argument("--loader-workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="DataLoader worker processes (loader)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU runs)")
    p.add_argument("--max-minutes", type=float, default=10.0,
                   help="skip the sections that would start after this many minutes")
    p.add_argument("--dry-run", action="store_true",
                   help="tiny sizes on CPU: check the script, measure nothing")
    args = p.parse_args(argv)
    if args.dry_run:
        for key, value in DRY_RUN.items():
            setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    print(f"# {machine(args.device)}; device={args.device}"
          + ("; DRY RUN (tiny sizes, no figures)" if args.dry_run else ""))
    start = time.perf_counter()
    data = synthetic(args.images, args.val, args.device)
    for name in args.only:
        used = (time.perf_counter() - start) / 60
        if used > args.max_minutes:
            print(f"\n## {name}: skipped ({used:.1f} of --max-minutes {args.max_minutes:g} used)")
            continue
        t = time.perf_counter()
        globals()[f"section_{name}"](args, data)
        print(f"\n({name}: {time.perf_counter() - t:.1f} s)")
    print(f"\n# total {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()

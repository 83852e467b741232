"""Child-training throughput: eas.training.train_child vs a plain per-sample DataLoader loop.

Both sides train the SAME network (identical initial weights) with the same recipe
(SGD, Nesterov momentum 0.9, weight decay 1e-4, lr 0.02 cosine-annealed per step,
batch 64, cross-entropy) on the same number of Fashion-MNIST training images, and
the same compute settings (channels-last memory format unless --no-channels-last;
on CUDA also cuDNN autotuning and bf16 autocast; fp32 on CPU). Only the input
pipeline differs:

* ``train_child``: the dataset lives on the device as uint8 tensors; each batch is
  sliced with a seeded permutation and augmented with vectorised tensor ops.
* baseline: a torchvision-style ``Dataset`` returning PIL images through per-sample
  transforms ``RandomCrop(28, padding=2)``, ``RandomHorizontalFlip()``, ``ToTensor()``,
  ``Normalize(mean, std)``, batched by ``torch.utils.data.DataLoader`` (shuffle,
  drop_last, ``num_workers`` from ``--workers``; pinned memory on CUDA).

Each repeat times both methods back to back (alternating which goes first) after
an untimed warm-up; the table reports the best (least disturbed) and the median
time over repeats, and the ratio of the best train_child time to the best time of
the fastest DataLoader setting. Two extra rows
bound the result: the network's compute-only speed (one fixed batch, no input
pipeline) and each input pipeline alone (no training).

    python bench/bench_training.py --device cpu --images 12800 --repeats 5
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eas.data import Data, augment_batch, load_dataset  # noqa: E402
from eas.recipe import TrainConfig
from eas.training import lr_at, make_optimizer, train_child


class Table1Net(nn.Module):
    """EAS Table-1-like CNN for 28x28 inputs: conv-BN-ReLU 16/32/64 with max-pools, GAP, FC."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, seed: int = 0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for i, cout in enumerate((16, 32, 64)):
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)]
            layers.append(nn.ReLU(inplace=True))
            if i < 2:
                layers.append(nn.MaxPool2d(2))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)
        g = torch.Generator().manual_seed(seed)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=g)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a normalised NCHW batch."""
        return self.fc(self.features(x).mean(dim=(2, 3)))


class PerSampleImages(torch.utils.data.Dataset):
    """torchvision-style dataset: uint8 HxW arrays -> PIL image -> per-sample transform."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i], mode="L")), int(self.labels[i])


def make_loader(data: Data, workers: int, batch_size: int, seed: int, pin: bool):
    """The baseline DataLoader with per-sample torchvision transforms."""
    import torchvision.transforms as T

    # torchvision's transforms draw from the global torch RNG; that is how this
    # conventional pipeline works, so the baseline keeps it (nothing here seeds it).
    steps: list[Callable] = []
    if data.augment.crop_padding:
        steps.append(T.RandomCrop(data.input_shape[1], padding=data.augment.crop_padding))
    if data.augment.hflip:
        steps.append(T.RandomHorizontalFlip())
    steps += [T.ToTensor(), T.Normalize(data.mean.tolist(), data.std.tolist())]
    tf = T.Compose(steps)
    ds = PerSampleImages(data.train_x[:, 0].cpu().numpy(), data.train_y.cpu().numpy(), tf)
    return torch.utils.data.DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        pin_memory=pin,
        generator=torch.Generator().manual_seed(seed),
    )


_CLOCK: list[Callable[[], float]] = [time.perf_counter]


def _now() -> float:
    """The selected clock: wall time (default) or this process's CPU time (--timer cpu)."""
    return _CLOCK[0]()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def baseline_train(
    net: nn.Module, data: Data, cfg: TrainConfig, steps: int, workers: int, device: torch.device
) -> float:
    """Plain DataLoader training loop; returns seconds for ``steps`` SGD steps."""
    cuda = device.type == "cuda"
    net.to(device)
    if cfg.channels_last:
        net.to(memory_format=torch.channels_last)
    net.train()
    opt = make_optimizer(net, cfg)
    _sync(device)
    start = _now()
    step = 0
    while step < steps:
        for xb, yb in make_loader(data, workers, cfg.batch_size, seed=step, pin=cuda):
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            if cfg.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            for group in opt.param_groups:
                group["lr"] = lr_at(cfg, step, steps)
            with _autocast(device):
                logits = net(xb)
            loss = F.cross_entropy(logits.float(), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step == steps:
                break
    _sync(device)
    return _now() - start


def fast_train(net: nn.Module, data: Data, cfg: TrainConfig, steps: int, seed: int) -> float:
    """Seconds for ``train_child`` to run ``steps`` steps (the data has no validation split)."""
    cfg = dataclasses.replace(cfg, epochs=1, max_batches_per_epoch=steps)
    start = _now()
    res = train_child(net, data, cfg, seed=seed)
    elapsed = _now() - start
    if res.failed or res.steps != steps:
        raise RuntimeError(f"fast path did not run as expected: {res}")
    return elapsed


def compute_only(
    net: nn.Module, data: Data, cfg: TrainConfig, steps: int, device: torch.device
) -> float:
    """Seconds for ``steps`` SGD steps on one fixed pre-normalised batch (no input pipeline)."""
    net.to(device).train()
    if cfg.channels_last:
        net.to(memory_format=torch.channels_last)
    opt = make_optimizer(net, cfg)
    xb = (
        (data.train_x[: cfg.batch_size].float() / 255 - data.mean.view(-1, 1, 1))
        / data.std.view(-1, 1, 1)
    ).to(device)
    if cfg.channels_last:
        xb = xb.contiguous(memory_format=torch.channels_last)
    yb = data.train_y[: cfg.batch_size].to(device)
    _sync(device)
    start = _now()
    for _ in range(steps):
        with _autocast(device):
            logits = net(xb)
        loss = F.cross_entropy(logits.float(), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return _now() - start


def pipeline_only_fast(data: Data, batch_size: int, steps: int, seed: int) -> float:
    """Seconds to produce ``steps`` augmented batches with the batched tensor pipeline."""
    dev = data.device
    gen = torch.Generator(device=dev).manual_seed(seed)
    _sync(dev)
    start = _now()
    perm = torch.randperm(len(data.train_y), generator=gen, device=dev)
    for i in range(steps):
        idx = perm[i * batch_size : (i + 1) * batch_size]
        augment_batch(data.train_x[idx], data.augment, data.mean, data.std, gen)
        data.train_y[idx]
    _sync(dev)
    return _now() - start


def pipeline_only_loader(data: Data, batch_size: int, steps: int, workers: int, pin: bool) -> float:
    """Seconds to produce ``steps`` batches with the per-sample DataLoader."""
    start = _now()
    for i, _ in enumerate(make_loader(data, workers, batch_size, seed=0, pin=pin)):
        if i + 1 == steps:
            break
    return _now() - start


def machine_info(device: torch.device) -> str:
    """One line describing the machine, for BENCHMARKS.md."""
    cpu = platform.processor() or "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in out.splitlines()
            if line.startswith("Model name")
        )
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    info = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    if device.type == "cuda":
        info += f", GPU {torch.cuda.get_device_name(device)}"
    return info


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print a table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--images", type=int, default=12800, help="training images per timed run")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=None,
        help="DataLoader num_workers values to try (default: 0 1 2 on CPU, 4 on CUDA)",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)"
    )
    p.add_argument(
        "--timer",
        choices=["wall", "cpu"],
        default="wall",
        help="wall clock, or this process's CPU time (for a CPU shared with other jobs; "
        "forces --threads 1 and --workers 0, since worker processes' time is not counted)",
    )
    p.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="channels-last memory format on both sides (train_child's default)",
    )
    p.add_argument("--data-root", default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    device = torch.device(args.device)
    if args.timer == "cpu":
        if device.type != "cpu":
            p.error("--timer cpu only makes sense with --device cpu")
        _CLOCK[0] = time.process_time
        args.threads, args.workers = 1, [0]
    if args.threads:
        torch.set_num_threads(args.threads)
    workers = args.workers or ([0, 1, 2] if device.type == "cpu" else [4])
    data = load_dataset(
        "fashion-mnist", args.data_root, val_size=5000, seed=args.seed, device=device
    )
    data = dataclasses.replace(data, val_x=data.val_x[:0], val_y=data.val_y[:0])  # no eval cost
    cfg = TrainConfig(batch_size=args.batch_size, channels_last=args.channels_last)
    steps = args.images // args.batch_size
    images = steps * args.batch_size
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    init = Table1Net(data.input_shape[0], data.num_classes, seed=args.seed)

    print(f"# {machine_info(device)}; load average before: {os.getloadavg()[0]:.1f}")
    print(
        f"# timer={args.timer} channels_last={args.channels_last} device={device} "
        f"images={images} batch={args.batch_size} repeats={args.repeats} workers={workers}"
    )
    # warm-up (allocator, cuDNN autotune, oneDNN primitives) - not timed
    warm = max(5, steps // 20)
    fast_train(copy.deepcopy(init), data, cfg, warm, args.seed)
    baseline_train(copy.deepcopy(init), data, cfg, warm, workers[0], device)

    times: dict[str, list[float]] = {"train_child": []}
    times.update({f"DataLoader workers={w}": [] for w in workers})
    for r in range(args.repeats):
        order = ["fast", *workers] if r % 2 == 0 else [*workers, "fast"]
        for method in order:
            net = copy.deepcopy(init)
            if method == "fast":
                times["train_child"].append(fast_train(net, data, cfg, steps, args.seed + r))
            else:
                t = baseline_train(net, data, cfg, steps, int(method), device)
                times[f"DataLoader workers={method}"].append(t)
    ceiling = min(
        compute_only(copy.deepcopy(init), data, cfg, steps, device) for _ in range(args.repeats)
    )
    pipe_fast = min(
        pipeline_only_fast(data, args.batch_size, steps, args.seed) for _ in range(args.repeats)
    )
    pipe_loader = {
        w: pipeline_only_loader(data, args.batch_size, steps, w, device.type == "cuda")
        for w in workers
    }

    best = {k: min(v) for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    base_key = min((k for k in best if k != "train_child"), key=best.__getitem__)
    print(
        "\n| method | best s | median s | images/s (best) | images/s (median) | speed-up (best) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name in times:
        print(
            f"| {name} | {best[name]:.2f} | {med[name]:.2f} | {images / best[name]:,.0f} "
            f"| {images / med[name]:,.0f} | {best[base_key] / best[name]:.2f}x |"
        )
    print(
        f"| compute only (fixed batch, no input pipeline) | {ceiling:.2f} | | "
        f"{images / ceiling:,.0f} | | {best[base_key] / ceiling:.2f}x (upper bound) |"
    )
    print(
        "\ninput pipeline alone (no training), images/s: batched augment_batch "
        f"{images / pipe_fast:,.0f}; "
        + "; ".join(f"DataLoader workers={w} {images / t:,.0f}" for w, t in pipe_loader.items())
    )
    print(
        f"\nratio train_child / best DataLoader ({base_key}): "
        f"{best[base_key] / best['train_child']:.2f}x (best of {args.repeats}), "
        f"{med[base_key] / med['train_child']:.2f}x (medians)"
    )
    if os.getloadavg()[0] > 0.8 * (os.cpu_count() or 1):
        print(f"# warning: load average {os.getloadavg()[0]:.1f} - other processes share the CPU")


if __name__ == "__main__":
    main()

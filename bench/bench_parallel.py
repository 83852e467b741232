"""Children per hour: training a batch of children with 1 worker vs N at once.

Trains the same batch of Fashion-MNIST start networks
(``C(16,3,1), P(2,2,MAX), C(32,3,1), P(2,2,MAX), C(64,3,1), P(2,2,MAX), C(128,3,1),
P(3,3,AVG), FC(256), SM(10)``, input 1x28x28, one per init seed) on a slice of the
training set, side by side in one run, with ``eas.envs.parallel.ParallelEvaluator``:

* ``--device cpu`` (default): the serial back-end (one child at a time, torch using
  every core, and using one thread) against the process back-end with 1 and N
  workers (each worker gets ``cores // N`` intra-op threads).
* ``--device cuda``: 1 child at a time on one GPU against 2, 4, 8 children at
  once on that GPU (``children_per_gpu``), data resident on the GPU.

Worker start-up and warm-up (a spawned interpreter importing torch, then one
child per worker to pay first-use costs; once per search) is timed separately and
excluded from the children-per-hour figures. Accuracies are
printed per setting: they must agree (same seed per child whatever the back-end).

    python bench/bench_parallel.py                      # CPU: serial vs 1 and 2 processes
    python bench/bench_parallel.py --device cuda        # one GPU: 1, 2, 4, 8 at once
    python bench/bench_parallel.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from eas.envs.parallel import ParallelEvaluator, available_cores  # noqa: E402
from eas.network import build_network  # noqa: E402

START = (
    "C(16,3,1), P(2,2,MAX), C(32,3,1), P(2,2,MAX), C(64,3,1), P(2,2,MAX), "
    "C(128,3,1), P(3,3,AVG), FC(256), SM(10)"
)


def cpu_model() -> str:
    """The CPU model name (lscpu), or the platform's description."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or platform.machine()


def make_evaluator(args: argparse.Namespace):
    """``envs.TrainerEvaluator`` on a seeded slice of Fashion-MNIST."""
    from eas.data import load_dataset
    from eas.envs.evaluators import TrainerEvaluator
    from eas.recipe import TrainConfig

    data = load_dataset("fashion-mnist", val_size=args.val_size, train_subset=args.train_subset,
                        seed=args.seed, device="cpu")
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                         max_batches_per_epoch=args.max_batches)
    return TrainerEvaluator(data, config, seed=args.seed)


def run_setting(base, nets, *, label: str, backend: str, workers: int,
                children_per_gpu: int = 1, device: str | None = None) -> dict:
    """Start and warm up the pool (timed apart), train ``nets`` once, report throughput.

    The warm-up trains one child per worker: a fresh process pays one-time costs on
    its first child (lazy imports on the first optimizer step, allocator and
    kernel selection), which a search pays once, not per child.
    """
    ev = ParallelEvaluator(base, backend=backend, workers=workers,
                           children_per_gpu=children_per_gpu, device=device)
    try:
        t0 = time.perf_counter()
        ev.start()
        ev.evaluate_many(nets[: max(1, workers)])
        startup = time.perf_counter() - t0
        t0 = time.perf_counter()
        results = ev.evaluate_many(nets)
        wall = time.perf_counter() - t0
    finally:
        ev.close()
    failed = [r.reason for r in results if r.failed]
    row = {
        "setting": label,
        "backend": backend,
        "workers": workers,
        "children": len(nets),
        "startup_and_warmup_s": round(startup, 2),
        "wall_s": round(wall, 2),
        "children_per_hour": round(len(nets) / wall * 3600, 1),
        "mean_child_train_s": round(sum(r.train_time for r in results) / len(results), 2),
        "accuracies": [round(r.accuracy, 4) for r in results],
        "failed": failed,
    }
    print(f"{label:>28}: start-up+warm-up {startup:6.1f} s | batch {wall:7.1f} s | "
          f"{row['children_per_hour']:8.1f} children/h | mean child {row['mean_child_train_s']:.1f} s"
          f" | acc {row['accuracies']}", flush=True)
    return row


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--children", type=int, default=4, help="children in the batch")
    p.add_argument("--workers", default=None,
                   help="comma-separated worker counts to compare "
                        "(default: 1,<cores> on CPU; 1,2,4,8 on CUDA)")
    p.add_argument("--train-subset", type=int, default=4096, help="training images")
    p.add_argument("--val-size", type=int, default=1000, help="validation images")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-batches", type=int, default=None, help="cap on steps per epoch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = p.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA GPU is visible")
    cores = available_cores()
    if args.workers is None:
        counts = [1, 2, 4, 8] if args.device == "cuda" else sorted({1, max(2, cores)})
    else:
        counts = [int(c) for c in args.workers.split(",")]
    torch.manual_seed(args.seed)
    base = make_evaluator(args)
    nets = [build_network(START, (1, 28, 28), seed=args.seed + i) for i in range(args.children)]
    machine = {
        "cpu": cpu_model(),
        "cores": cores,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
        "python": platform.python_version(),
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    print(f"machine: {machine}")
    print(f"batch: {args.children} x start net, {args.train_subset} training images, "
          f"{args.epochs} epoch(s), batch size {args.batch_size}, val {args.val_size}")

    rows = []
    if args.device == "cpu":
        rows.append(run_setting(base, nets, label=f"serial (1 child, {cores} threads)",
                                backend="serial", workers=1, device="cpu"))
        if cores > 1:
            # One child at a time on one thread: separates the gain of running children
            # side by side from the gain (or loss) of intra-op threading.
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                rows.append(run_setting(base, nets, label="serial (1 child, 1 thread)",
                                        backend="serial", workers=1, device="cpu"))
            finally:
                torch.set_num_threads(threads)
        for n in counts:
            threads = max(1, cores // n)
            rows.append(run_setting(base, nets, label=f"process x{n} ({threads} thr each)",
                                    backend="process", workers=n, device="cpu"))
    else:
        base.data = base.data.to("cuda")
        for n in counts:
            rows.append(run_setting(base, nets, label=f"{n} at once on 1 GPU",
                                    backend="process" if n > 1 else "serial", workers=n,
                                    children_per_gpu=n, device="cuda"))
    reference = rows[0]["children_per_hour"]
    for row in rows:
        row["speedup"] = round(row["children_per_hour"] / reference, 2)
    print("speed-up vs the first setting: "
          + ", ".join(f"{r['setting']}: {r['speedup']}x" for r in rows))
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": machine, "args": vars(args) | {"json": str(args.json)},
                                         "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

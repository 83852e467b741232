"""Time to apply each function-preserving transformation to a 20-layer plain CNN (CPU).

The network has 18 conv layers (64/128/256 filters in three stages of six,
max-pooling between stages) and 2 FC layers of 512 units before ``SM(10)``, for
32x32x3 inputs. Each row is the median wall time over ``--repeats`` applications
(after one untimed warm-up) of one transformation to that same parent, with the
exactness ``max|y_child - y_parent| / max|y_parent|`` of the last child in eval
mode (noise off unless stated), in fp32 and, applying the same transformation to
a float64 copy of the parent, in fp64. BatchNorm statistics are calibrated on
random images first. DenseNet rows use ``densenet_bc(40, 40)``. The
``copy.deepcopy`` rows give the floor set by copying the parameters here.

    python bench/bench_morphisms.py --repeats 7 [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _machine import cpu_model  # noqa: E402  (bench/ is on sys.path when run)

from eas import SearchSpace, build_network, densenet_bc  # noqa: E402
from eas import morphisms as M  # noqa: E402
from eas.network import ChildNet  # noqa: E402

PLAIN20 = ", ".join(
    ["C(64,3,1)"] * 6 + ["P(2,2,MAX)"] + ["C(128,3,1)"] * 6 + ["P(2,2,MAX)"]
    + ["C(256,3,1)"] * 6 + ["P(2,2,MAX)", "FC(512)", "FC(512)", "SM(10)"]
)


def _machine() -> str:
    model = cpu_model()
    return f"{model}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def _rel_err(parent: ChildNet, child: ChildNet, x: torch.Tensor) -> float:
    with torch.no_grad():
        yp, yc = parent(x), child(x)
    return float((yc - yp).abs().max() / yp.abs().max())


def _calibrated(net: ChildNet) -> ChildNet:
    """Give BatchNorm realistic running statistics (a few train-mode passes on noise)."""
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # cumulative average
    g = torch.Generator().manual_seed(3)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(16, *net.input_shape, generator=g))
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.1
    return net.eval()


def _masks(net: ChildNet) -> ChildNet:
    M.widenable_layers(net.arch, SearchSpace())
    M.deeper_positions(net.arch)
    M.dense_insert_positions(net.arch)
    M.skip_candidates(net.arch, net.input_shape)
    return net


def _time(fn: Callable[[], ChildNet], repeats: int) -> tuple[float, ChildNet]:
    """Median wall time of ``fn()`` over ``repeats`` calls after a warm-up; the last result."""
    child = fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        child = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), child


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print a Markdown table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--no-dense", action="store_true", help="skip the DenseNet rows")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch intra-op threads (0: leave torch's default)")
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)

    plain = _calibrated(build_network(PLAIN20, (3, 32, 32), seed=0))
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    batch = torch.randn(32, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    blocks = plain.arch.blocks()
    Fn = Callable[[ChildNet], ChildNet]
    rows: list[tuple[str, Fn, ChildNet, torch.Tensor]] = [
        ("baseline: copy.deepcopy(net)", copy.deepcopy, plain, x),
        ("net2wider conv 64->96 (layer 2)",
         lambda n: M.net2wider(n, 2, rng=rng, noise=False), plain, x),
        ("net2wider conv 256->320 before flatten (layer 19)",
         lambda n: M.net2wider(n, 19, rng=rng, noise=False), plain, x),
        ("net2wider FC 512->640 (layer 21)",
         lambda n: M.net2wider(n, 21, rng=rng, noise=False), plain, x),
        ("net2wider conv 128->192 (layer 9), noise on",
         lambda n: M.net2wider(n, 9, rng=rng), plain, x),
        ("net2deeper conv 3x3 after layer 8",
         lambda n: M.net2deeper(n, 1, 1, rng=rng), plain, x),
        ("net2deeper conv + data_batch (32 images)",
         lambda n: M.net2deeper(n, 1, 1, data_batch=batch, rng=rng), plain, x),
        ("net2deeper FC after layer 21",
         lambda n: M.net2deeper(n, len(blocks) - 1, 0, rng=rng), plain, x),
        ("add_skip ADD (14 -> 17)", lambda n: M.add_skip(n, 14, 17, "ADD"), plain, x),
        ("add_skip CAT (14 -> 17)", lambda n: M.add_skip(n, 14, 17, "CAT"), plain, x),
        ("legal masks (all four, no network built)", _masks, plain, x),
    ]
    if not args.no_dense:
        dense = _calibrated(build_network(densenet_bc(40, 40), (3, 32, 32), seed=0))
        xd = x[:2]
        rows += [
            ("DenseNet-BC(40,40) baseline: copy.deepcopy(net)", copy.deepcopy, dense, xd),
            ("DenseNet-BC(40,40): dense_widen 40->44 (layer 1)",
             lambda n: M.dense_widen(n, 1, rng=rng, noise=False), dense, xd),
            ("DenseNet-BC(40,40): dense_insert block 1 position 3",
             lambda n: M.dense_insert(n, 1, 3, rng=rng), dense, xd),
            ("DenseNet-BC(40,40): net2wider stem conv 80->96",
             lambda n: M.net2wider(n, 0, rng=rng, noise=False), dense, xd),
        ]
    print(f"machine: {_machine()}")
    print(f"plain network ({len(plain.arch.layers)} layers incl. pools/SM, "
          f"{plain.num_parameters():,} parameters): {PLAIN20}\n")
    print("| transformation | median ms | rel. error fp32 | rel. error fp64 |")
    print("|---|---:|---:|---:|")
    doubles: dict[int, ChildNet] = {}
    for name, fn, parent, inp in rows:
        t, child = _time(lambda fn=fn, parent=parent: fn(parent), args.repeats)
        if child is parent:
            print(f"| {name} | {t * 1e3:.1f} | - | - |")
            continue
        p64 = doubles.setdefault(id(parent), copy.deepcopy(parent).double())
        err32 = _rel_err(parent, child, inp)
        err64 = _rel_err(p64, fn(p64), inp.double())
        print(f"| {name} | {t * 1e3:.1f} | {err32:.1e} | {err64:.1e} |")


if __name__ == "__main__":
    main()

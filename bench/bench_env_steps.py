"""Cost of the environment's action masks per step, before and after LegalActions (CPU).

For plain CNNs of 20, 41 conv and 50 layers (with ADD and CAT skips, 32x32x3
inputs) and DenseNet-BC(40,40), each row times, in one run and side by side:

* ``reference``: the previous code path (``tests/legal_reference.py``): every
  candidate asked of the transformations' ``*_refusal`` functions, a full shape
  inference per skip candidate; what one environment step used to cost;
* ``all masks, cold``: :class:`eas.morphisms.legal.LegalActions` with its
  per-architecture caches cleared, all six mask arrays built (what a step
  costs now: the observation carries every mask);
* ``one kind, cold``: only the kind being applied (``wider``), as
  ``check_action`` and ``action_space.sample()`` need;
* ``all masks, cached``: another episode on the same architecture (the copies
  of a vector environment after ``reset``).

Every timing is the median of ``--repeats`` runs; masks are checked equal to
the reference's before timing.

    python bench/bench_env_steps.py --repeats 5
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from _machine import cpu_model  # noqa: E402  (bench/ is on sys.path when run)
from legal_reference import ref_masks  # noqa: E402

from eas.arch import Architecture, SearchSpace, densenet_bc  # noqa: E402
from eas.envs.spaces import Masks  # noqa: E402
from eas.layers import Skip  # noqa: E402
from eas.morphisms import legal  # noqa: E402

SHAPE = (3, 32, 32)
L = 64


def plain(convs_per_stage: tuple[int, int, int], fcs: int, skips: int, seed: int = 0
          ) -> Architecture:
    """Three stages of 64/128/256-filter convs with max-pooling, FC(512)s, seeded random skips."""
    tokens: list[str] = []
    for n, width in zip(convs_per_stage, (64, 128, 256)):
        tokens += [f"C({width},3,1)"] * n + ["P(2,2,MAX)"]
    tokens += ["FC(512)"] * fcs + ["SM(10)"]
    arch = Architecture.parse(", ".join(tokens))
    rng = np.random.default_rng(seed)
    for _ in range(skips):
        cands = legal.skip_candidates(arch, SHAPE)
        s, d, m = cands[int(rng.integers(len(cands)))]
        arch = arch.add_skip(Skip(s, d, m))
    return arch


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _machine() -> str:
    model = cpu_model()
    return f"{model}, Python {platform.python_version()}, torch {torch.__version__}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per cell (median)")
    args = parser.parse_args(argv)
    space = SearchSpace()
    nets = [
        ("plain, 20 layers, 4 skips", plain((5, 5, 5), 2, 4)),
        ("plain, 41 convs (46 layers), 8 skips", plain((14, 14, 13), 2, 8)),
        ("plain, 50 layers, 10 skips", plain((15, 15, 15), 2, 10)),
        ("DenseNet-BC(40,40)", densenet_bc(40, 40)),
    ]

    def new_all(arch: Architecture) -> dict[str, np.ndarray]:
        legal.clear_caches()
        return Masks(legal.legal_actions(arch, SHAPE, space, L), None, False).arrays()

    def new_one(arch: Architecture) -> object:
        legal.clear_caches()
        return legal.legal_actions(arch, SHAPE, space, L).wider

    def cached(arch: Architecture) -> dict[str, np.ndarray]:
        return Masks(legal.legal_actions(arch, SHAPE, space, L), None, False).arrays()

    print(f"machine: {_machine()}; median of {args.repeats}; max_layers={L}\n")
    print("| network | reference ms | all masks, cold ms | one kind, cold ms | "
          "all masks, cached ms | speed-up (all, cold) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, arch in nets:
        want = ref_masks(arch, SHAPE, space, L, None, False)
        got = new_all(arch)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{name}: {key}")
        ref = _median_ms(lambda a=arch: ref_masks(a, SHAPE, space, L, None, False), args.repeats)
        cold = _median_ms(lambda a=arch: new_all(a), args.repeats)
        one = _median_ms(lambda a=arch: new_one(a), args.repeats)
        cached(arch)
        hit = _median_ms(lambda a=arch: cached(a), args.repeats)
        print(f"| {name} | {ref:.1f} | {cold:.2f} | {one:.2f} | {hit:.3f} | {ref / cold:.0f}x |")


if __name__ == "__main__":
    main()

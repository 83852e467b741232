"""How fast does the EAS controller's Net2Wider actor learn? Learning curves side by side.

A synthetic task that only the Net2Wider decisions can solve: the REINFORCE agent
runs episodes of the paper's 4 Net2Wider steps from the Fashion-MNIST start
network (``C(16) P C(32) P C(64) P C(128) P FC(256)``), and a child's accuracy
depends only on which layers its Net2Wider steps widened:

    acc = 0.80 + 0.02 * (widenings of the first two conv layers)
               - 0.02 * (widenings of the other conv layers and of the FC layer)

(each step that widens a layer counts once; 4 steps, so acc is in [0.56, 0.96];
a uniformly random policy scores 0.78 on average, the best one 0.96). With
``--noise s`` the agent sees ``acc + N(0, s)``, like the noise of short child
training; the table always reports the noiseless accuracy. The reward
is the EAS reward ``tan(acc * pi / 2)``. The episodes run at the architecture
level (:class:`WiderSim`: the environment's tokens and masks, no weights), so a
run of 40 rounds takes seconds instead of the minutes that building and
transforming the networks would cost; the Net2Deeper steps are left out because
they cannot change this reward.

Each variant (a set of ``ReinforceConfig`` overrides) runs ``--rounds`` controller
steps of ``--children`` children for every seed; the table gives, per variant, the
mean child accuracy of rounds 1-5, 11-15, ... (mean over seeds) and, at the end,
the controller's Net2Wider probability on the start network's "good" and "bad"
layers. Everything is seeded (agent, environment, noise); the same command
prints the same figures.

    python bench/bench_wider_learning.py --rounds 40 --seeds 0,1,2 [--noise 0.01] [--threads 1]
        [--variant paper:] [--variant "lr5x:lr=1e-2"] ...
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eas import envs  # noqa: E402
from eas.agents.base import AgentContext  # noqa: E402
from eas.agents.reinforce import ReinforceAgent  # noqa: E402
from eas.agents.reinforce_config import ReinforceConfig  # noqa: E402
from eas.arch import Architecture, SearchSpace, Tokenizer  # noqa: E402
from eas.envs.record import EvalResult
from eas.envs.spaces import Masks  # noqa: E402  (the env's own mask computation)
from eas.layers import Conv  # noqa: E402
from eas.morphisms import legal  # noqa: E402

SCHEDULE = ("wider",) * 4
SHAPE = (1, 28, 28)
GOOD = (0, 2)  # layer indices of the first two convs in FASHION_START
BAD = (4, 6, 8)  # the other two convs and the FC layer

DEFAULT_VARIANTS = [
    "paper:",
    "batch-baseline:baseline_mode=batch",
    "loo:baseline_mode=loo",
    "normalised:advantage_norm=True",
    "loo+normalised:baseline_mode=loo,advantage_norm=True",
    "lr5x:lr=1e-2",
    "loo+normalised+lr5x:baseline_mode=loo,advantage_norm=True,lr=1e-2",
    "wider-lr5x:wider_lr_scale=5",
    "wider-lr10x:wider_lr_scale=10",
    "loo+normalised+wider-lr5x:baseline_mode=loo,advantage_norm=True,wider_lr_scale=5",
]


def parse_variant(text: str) -> tuple[str, dict[str, object]]:
    """``name:key=value,key=value`` -> (name, overrides)."""
    name, _, rest = text.partition(":")
    overrides: dict[str, object] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, _, value = item.partition("=")
        overrides[key] = (value == "True") if value in ("True", "False") else (
            float(value) if any(c in value for c in ".e") else
            int(value) if value.lstrip("-").isdigit() else value)
    return name, overrides


def wider_accuracy(actions: list[dict[str, np.ndarray]]) -> float:
    """The synthetic accuracy of one child from its Net2Wider actions (see the docstring)."""
    good = bad = 0
    for step, kind in zip(actions, SCHEDULE):
        if kind != "wider":
            continue
        w = np.asarray(step["wider"]).reshape(-1)
        good += int(w[list(GOOD)].sum())
        bad += int(w[list(BAD)].sum())
    return 0.80 + 0.02 * good - 0.02 * bad


class WiderSim:
    """The environment's Net2Wider steps at the architecture level (no networks built).

    Observations are what ``NetTransformEnv`` gives for the same architecture (its
    tokenizer and its ``Masks``), and a "wider" action moves each chosen layer to
    the next width of the space, as ``net2wider`` does; only the weights are
    missing, which the synthetic reward does not read. Masks are cached per
    architecture string.
    """

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.tokenizer = Tokenizer(space)
        self._masks: dict[str, dict[str, np.ndarray]] = {}

    def obs(self, archs: list[Architecture]) -> dict[str, np.ndarray]:
        rows = []
        for a in archs:
            key = str(a)
            if key not in self._masks:
                self._masks[key] = Masks(legal.legal_actions(a, SHAPE, self.space, 50), "wider",
                                         False).arrays()
            rows.append({"tokens": np.asarray(self.tokenizer.encode(a, max_len=50), np.int64),
                         "length": np.int64(len(a.layers) - 1), **self._masks[key]})
        return {k: np.stack([r[k] for r in rows]) for k in rows[0]}

    def widen(self, arch: Architecture, chosen: np.ndarray) -> Architecture:
        for i in np.flatnonzero(chosen):
            layer = arch.layers[int(i)]
            width = self.space.next_width(layer)
            assert width is not None, "the mask allowed a layer at its widest"
            field = "filters" if isinstance(layer, Conv) else "units"
            arch = arch.replace_layer(int(i), dataclasses.replace(layer, **{field: width}))
        return arch


def run(overrides: dict[str, object], seed: int, rounds: int, children: int,
        noise: float = 0.0) -> tuple[list[float], float, float]:
    """One run: per-round mean accuracy, final widen probability on good / bad layers."""
    space = SearchSpace()
    start = Architecture.parse(envs.FASHION_START)
    ctx = AgentContext(max_layers=50, vocab_size=Tokenizer(space).vocab_size,
                       kernel_sizes=tuple(space.kernel_sizes), kinds=tuple(envs.KINDS),
                       schedule=SCHEDULE, steps_per_episode=len(SCHEDULE),
                       children_per_round=children, seed=seed)
    agent = ReinforceAgent(ctx, ReinforceConfig(**overrides))
    sim = WiderSim(space)
    rng = np.random.default_rng(10_000 + seed)  # the "training noise" of the reward
    first_obs = sim.obs([start])
    curve = []
    for _ in range(rounds):
        archs = [start] * children
        actions: list[list[dict[str, np.ndarray]]] = [[] for _ in range(children)]
        for _ in SCHEDULE:
            act = agent.propose(sim.obs(archs))
            for i in range(children):
                actions[i].append({k: np.asarray(v[i]) for k, v in act.items()})
            archs = [sim.widen(a, act["wider"][i]) for i, a in enumerate(archs)]
        accs = [wider_accuracy(a) for a in actions]
        seen = [min(acc + noise * float(rng.standard_normal()), 0.999) for acc in accs]
        results = [EvalResult(arch=str(arch), accuracy=acc, reward=envs.reward_of(acc),
                               actions=a) for arch, acc, a in zip(archs, seen, actions)]
        agent.learn(results)
        curve.append(float(np.mean(accs)))
    with torch.no_grad():
        p = agent.controller.widen_probabilities(first_obs)[0]
    return curve, float(p[list(GOOD)].mean()), float(p[list(BAD)].mean())


def machine() -> str:
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in
                   subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                   if line.startswith("Model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown CPU"
    return (f"{cpu}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}, "
            f"python {platform.python_version()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=40, help="controller steps per run")
    ap.add_argument("--children", type=int, default=10, help="children per controller step")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    ap.add_argument("--window", type=int, default=5, help="rounds per column of the table")
    ap.add_argument("--noise", type=float, default=0.0,
                    help="std of Gaussian noise added to the accuracy the agent sees "
                         "(child-training noise); the table reports the noiseless accuracy")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--variant", action="append", default=None,
                    help="name:key=value,... (ReinforceConfig overrides); repeatable")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = [parse_variant(v) for v in (args.variant or DEFAULT_VARIANTS)]
    cols = list(range(0, args.rounds, max(args.window, 1) * 2))
    print(f"machine: {machine()}")
    print(f"{args.rounds} rounds x {args.children} children, seeds {seeds}, "
          f"reward noise std {args.noise}; "
          f"mean child accuracy (random policy 0.78, best 0.96)\n")
    head = " | ".join(f"r{c + 1}-{min(c + args.window, args.rounds)}" for c in cols)
    print(f"| variant | {head} | last {args.window} | p(widen) good | p(widen) bad | s/run |")
    print("|---|" + "---:|" * (len(cols) + 4))
    for name, overrides in variants:
        t0 = time.perf_counter()
        out = [run(overrides, s, args.rounds, args.children, args.noise) for s in seeds]
        secs = (time.perf_counter() - t0) / len(seeds)
        curves = np.array([c for c, _, _ in out])
        cells = [f"{curves[:, c:c + args.window].mean():.3f}" for c in cols]
        last = curves[:, -args.window:].mean()
        good = np.mean([g for _, g, _ in out])
        bad = np.mean([b for _, _, b in out])
        print(f"| {name} | " + " | ".join(cells) +
              f" | {last:.3f} | {good:.2f} | {bad:.2f} | {secs:.0f} |", flush=True)
    assert math.isfinite(last)


if __name__ == "__main__":
    main()

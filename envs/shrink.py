"""Distilling a shrunk child from its episode's start network before it is evaluated.

The shrink actions (``narrow``, ``remove``: environments built with
``shrink=True``) are approximate, so a child made with one of them is first
distilled from the episode's start network for a few hundred steps
(:func:`eas.distill.distill`, KL to the parent's softened outputs plus the
labels' cross-entropy) and only then handed to the evaluator, which trains it
as usual. :class:`ShrinkDistiller` is that step as the environment's
``distill=`` hook: ``distiller(child, parent, seed) -> distilled child``. The
environment calls it at the end of an episode that applied a shrink action
(and whose child is not already in the evaluation cache), with a seed drawn
from its own RNG, and records ``info["distilled"]``.

It runs in the process that steps the environment, one child at a time, before
the (possibly parallel) evaluator sees the children.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from eas.data import Data
from eas.distill import DistillConfig, DistillResult, distill
from eas.network import ChildNet

__all__ = ["ShrinkDistiller", "distill_shrunk"]


class ShrinkDistiller:
    """Distil a shrunk child from its parent on ``data`` (the environment's ``distill=`` hook).

    ``data`` is a :class:`~eas.data.Data` or a function returning one (called on
    first use, so a search that never shrinks never loads it); ``config`` the
    :class:`~eas.distill.DistillConfig` (its ``steps``: a few hundred);
    ``device`` where to distil (default: the data's device). The distilled child
    comes back on the child's device, in the child's train/eval mode.
    """

    def __init__(self, data: Data | Callable[[], Data], config: DistillConfig | None = None,
                 device: str | torch.device | None = None) -> None:
        self._data = data
        self.config = config if config is not None else DistillConfig()
        self.device = device
        self.last: DistillResult | None = None
        """The result of the latest distillation (steps, losses, seconds)."""

    @property
    def data(self) -> Data:
        """The distillation data (loaded on first use)."""
        if not isinstance(self._data, Data):
            self._data = self._data()
        return self._data

    def __call__(self, child: ChildNet, parent: ChildNet, seed: int) -> ChildNet:
        """A distilled copy of ``child`` (``child`` and ``parent`` are not modified)."""
        like = next(child.parameters())
        res = distill(child, parent, self.data, self.config, device=self.device, seed=int(seed))
        self.last = res
        net = res.net.to(device=like.device)
        net.train(child.training)
        return net  # type: ignore[return-value]


def distill_shrunk(child: ChildNet, parent: ChildNet | None,
                   distiller: Callable[[ChildNet, ChildNet, int], ChildNet] | None,
                   rng: np.random.Generator, *, shrunk: bool, cached: bool,
                   info: dict[str, Any]) -> ChildNet:
    """The environment's end-of-episode distillation step (``NetTransformEnv(shrink=True)``).

    Returns ``child`` distilled from ``parent`` (the episode's start network) by
    ``distiller(child, parent, seed)``, with ``seed`` drawn from ``rng``, when the
    episode applied a shrink action (``shrunk``); otherwise ``child`` itself. Skipped
    (no draw from ``rng``) without a distiller or parent, and when the evaluation cache
    already holds the child (``cached``: its result, weights included, comes from
    there). Sets ``info["shrunk"]`` and ``info["distilled"]``, and ``distill_error``
    when the distiller raised: the child is then evaluated undistilled.
    """
    info["shrunk"], info["distilled"] = shrunk, False
    if not shrunk or distiller is None or parent is None or cached:
        return child
    seed = int(rng.integers(2**31 - 1))
    try:
        child = distiller(child, parent, seed)
    except Exception as exc:  # noqa: BLE001 - evaluate the child undistilled
        info["distill_error"] = f"{type(exc).__name__}: {exc}"
        return child
    info["distilled"] = True
    return child

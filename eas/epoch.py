"""An epoch's random augmentation, drawn in one batched call instead of one call per step.

Child training used to draw each step's crop offsets and flips when the step
came (:func:`eas.data.draw_augment`: ``randint`` for the offsets, then ``rand``
for the flips, step after step). :func:`draw_epoch_augment` draws the whole
epoch's at once and returns the SAME numbers on CPU, so a seed gives the same
children as before:

* torch's CPU generator (mt19937) turns one 32-bit draw into each element of
  ``randint(0, k)`` (``draw % k``, for ``k < 2**28``) and of a float32 ``rand``
  (``(draw & 0xFFFFFF) / 2**24``). The per-step draws of an epoch are thus one
  stream of 32-bit numbers, ``3 * batch`` per step (crops and flips), which
  :func:`_raw32` reads in two batched calls from the same generator state:
  an int32 ``random_`` (``draw % 2**31``) and a ``randint(0, 2**28 - 1)``,
  whose difference gives the top bit;
* whether this holds for the installed torch is checked once per process
  (:func:`batched_draws_exact`); where it does not, the per-step draws are
  made as before (slower, same numbers).

On CUDA the Philox generator's per-call offsets cannot be reproduced by one
call, so the epoch is simply drawn batched (offsets, then flips); both the
eager loop and the CUDA-graph steps use this function, so they see the same
batches.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from eas.data import AugmentConfig, draw_augment

__all__ = ["batched_draws_exact", "draw_epoch_augment"]

_M28 = 2**28 - 1  # largest randint range torch serves from one 32-bit draw, minus one


def _raw32(generator: torch.Generator, k: int) -> Tensor:
    """The next ``k`` 32-bit outputs of a CPU generator, as int64 (the generator advances by ``k``)."""
    state = generator.get_state()
    low31 = torch.empty(k, dtype=torch.int32).random_(generator=generator).to(torch.int64)
    generator.set_state(state)
    mod = torch.randint(0, _M28, (k,), generator=generator, dtype=torch.int64)
    # draw = low31 + top * 2**31 and 2**31 = 8 (mod 2**28 - 1): the residue tells the top bit
    top = (mod - low31).remainder(_M28) != 0
    return low31 + top.to(torch.int64) * 2**31


def _batched_cpu(steps: int, n: int, cfg: AugmentConfig,
                 generator: torch.Generator) -> tuple[Tensor | None, Tensor | None]:
    p = cfg.crop_padding
    crop = 2 * n if p > 0 else 0
    per_step = crop + (n if cfg.hflip else 0)
    raw = _raw32(generator, steps * per_step).view(steps, per_step)
    offsets = raw[:, :crop].remainder(2 * p + 1).view(steps, 2, n) if p > 0 else None
    flips = ((raw[:, crop:] & 0xFFFFFF).to(torch.float32).mul_(2.0**-24)
             if cfg.hflip else None)
    return offsets, flips


def _per_step(steps: int, n: int, cfg: AugmentConfig, generator: torch.Generator,
              device: torch.device) -> tuple[Tensor | None, Tensor | None]:
    drawn = [draw_augment(n, cfg, generator, device) for _ in range(steps)]
    offsets = torch.stack([o for o, _ in drawn]) if cfg.crop_padding > 0 else None
    flips = torch.stack([f for _, f in drawn]) if cfg.hflip else None
    return offsets, flips


@functools.cache
def batched_draws_exact() -> bool:
    """Whether the batched CPU draws equal the per-step ones with this torch (checked once)."""
    cfg = AugmentConfig(crop_padding=4, hflip=True)
    for seed in (0, 1, 12345):
        g1 = torch.Generator().manual_seed(seed)
        g2 = torch.Generator().manual_seed(seed)
        ref = _per_step(5, 33, cfg, g1, torch.device("cpu"))
        got = _batched_cpu(5, 33, cfg, g2)
        if not all(torch.equal(a, b) for a, b in zip(ref, got)):  # type: ignore[arg-type]
            return False
        if not torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2)):
            return False
    return True


def draw_epoch_augment(steps: int, n: int, cfg: AugmentConfig, generator: torch.Generator,
                       device: torch.device) -> tuple[Tensor | None, Tensor | None]:
    """Crop offsets ``(steps, 2, n)`` and flip draws ``(steps, n)`` of an epoch of ``steps`` batches.

    On CPU, equal to ``steps`` calls of :func:`eas.data.draw_augment` in a row
    (and the generator ends in the same state). None where the augmentation
    has no crop / no flip, and both None when there is nothing to draw.
    """
    if steps <= 0 or n <= 0 or not (cfg.crop_padding > 0 or cfg.hflip):
        return None, None
    if device.type == "cpu":
        if batched_draws_exact():
            return _batched_cpu(steps, n, cfg, generator)
        return _per_step(steps, n, cfg, generator, device)
    p = cfg.crop_padding
    offsets = (torch.randint(0, 2 * p + 1, (steps, 2, n), generator=generator, device=device)
               if p > 0 else None)
    flips = torch.rand((steps, n), generator=generator, device=device) if cfg.hflip else None
    return offsets, flips

"""eas.epoch: an epoch's augmentation drawn in one batched call equals the per-step draws on CPU."""

from __future__ import annotations

import pytest
import torch

from eas import epoch
from eas.data import AugmentConfig, draw_augment

CPU = torch.device("cpu")


@pytest.mark.parametrize(("padding", "hflip"), [(4, True), (1, True), (0, True), (2, False)])
@pytest.mark.parametrize("seed", [0, 1, 99])
def test_batched_draws_equal_the_per_step_draws(padding: int, hflip: bool, seed: int) -> None:
    cfg = AugmentConfig(crop_padding=padding, hflip=hflip)
    g_steps, g_epoch = (torch.Generator().manual_seed(seed) for _ in range(2))
    torch.randperm(300, generator=g_steps)  # an epoch starts with its permutation
    torch.randperm(300, generator=g_epoch)
    want = [draw_augment(37, cfg, g_steps, CPU) for _ in range(11)]
    offsets, flips = epoch.draw_epoch_augment(11, 37, cfg, g_epoch, CPU)
    assert (offsets is None) == (padding == 0) and (flips is None) == (not hflip)
    for i, (o, f) in enumerate(want):
        if o is not None:
            assert torch.equal(offsets[i], o)
        if f is not None:
            assert torch.equal(flips[i], f)
    # and the generator is left where the per-step draws leave it
    assert torch.equal(torch.rand(8, generator=g_steps), torch.rand(8, generator=g_epoch))


def test_the_top_bit_is_recovered() -> None:
    """Half of all 32-bit draws have the top bit set; int32 random_ alone loses it."""
    g = torch.Generator().manual_seed(3)
    raw = epoch._raw32(g, 20_000)
    assert raw.min() >= 0 and raw.max() < 2**32
    assert 0.45 < (raw >= 2**31).float().mean().item() < 0.55
    # the low 24 bits are the float draws, the residues the crop offsets
    g2 = torch.Generator().manual_seed(3)
    assert torch.equal(torch.randint(0, 9, (20_000,), generator=g2), raw % 9)


def test_exactness_is_checked_once_and_holds_here() -> None:
    assert epoch.batched_draws_exact() is True


def test_per_step_fallback_gives_the_same_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the batched draws would differ (another torch), the per-step draws are used."""
    cfg = AugmentConfig(crop_padding=2, hflip=True)
    fast = epoch.draw_epoch_augment(5, 16, cfg, torch.Generator().manual_seed(4), CPU)
    monkeypatch.setattr(epoch, "batched_draws_exact", lambda: False)
    slow = epoch.draw_epoch_augment(5, 16, cfg, torch.Generator().manual_seed(4), CPU)
    assert all(torch.equal(a, b) for a, b in zip(fast, slow))


def test_nothing_to_draw() -> None:
    g = torch.Generator().manual_seed(0)
    cfg = AugmentConfig(crop_padding=0, hflip=False)
    assert epoch.draw_epoch_augment(5, 16, cfg, g, CPU) == (None, None)
    assert epoch.draw_epoch_augment(0, 16, AugmentConfig(crop_padding=2), g, CPU) == (None, None)

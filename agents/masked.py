"""Masked categorical decisions: how every actor of the controller samples or scores a
choice among the legal options, and the (sum, count) statistics it logs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["masked_categorical", "masked_stat"]

_NEG = -1e9  # logit of a masked choice: exp() underflows to exactly 0 but stays finite


def masked_categorical(
    logits: torch.Tensor,
    mask: torch.Tensor,
    generator: torch.Generator | None,
    forced: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sample (or score ``forced``) one choice per row from a masked categorical.

    Returns ``(choice [B], log_prob [B], entropy [B], has_choice [B])``. Rows
    without any legal entry yield choice 0, log-prob 0 and entropy 0 and
    ``has_choice`` False.
    """
    has = mask.any(dim=-1)
    logits = logits.masked_fill(~mask, _NEG)
    logp_all = F.log_softmax(logits, dim=-1)
    probs = logp_all.exp()
    if forced is None:
        if generator is None:
            raise ValueError("sampling needs a torch.Generator")
        safe = torch.where(has[:, None], probs.detach(), torch.ones_like(probs))
        choice = torch.multinomial(safe, 1, generator=generator).squeeze(-1)
    else:
        choice = forced.long().reshape(-1)
        only = mask.sum(-1) == 1  # a single legal choice is taken whatever was passed
        choice = torch.where(only, mask.long().argmax(-1), choice)
        choice = torch.where(has, choice, torch.zeros_like(choice))
        bad = has & ((choice < 0) | (choice >= mask.shape[-1]))
        bad = bad | (has & ~mask.gather(-1, choice.clamp(0, mask.shape[-1] - 1)[:, None])[:, 0])
        if bool(bad.any()):
            rows = torch.nonzero(bad).flatten().tolist()
            raise ValueError(f"actions of batch rows {rows} choose masked (illegal) options")
    choice = torch.where(has, choice, torch.zeros_like(choice))
    logp = logp_all.gather(-1, choice[:, None]).squeeze(-1)
    logp = torch.where(has, logp, torch.zeros_like(logp))
    plogp = torch.where(mask, probs * logp_all, torch.zeros_like(probs))
    entropy = -plogp.sum(-1)
    entropy = torch.where(has, entropy, torch.zeros_like(entropy))
    return choice, logp, entropy, has


def masked_stat(values: torch.Tensor, where: torch.Tensor) -> tuple[float, float]:
    """(sum, count) of ``values`` over the entries selected by ``where``."""
    where = where.bool()
    return float(values.detach()[where].sum()), float(where.sum())

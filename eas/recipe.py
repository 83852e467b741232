"""The child-training recipe (:class:`TrainConfig`): light on purpose (no torch), so the
configuration schema can hold it; :mod:`eas.training` runs it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    """Hyper-parameters of child training (defaults: the EAS paper's child recipe)."""

    epochs: int = 20
    """Passes over the training set."""
    batch_size: int = 64
    """Images per SGD step (the last incomplete batch of an epoch is dropped)."""
    lr: float = 0.02
    """Initial (peak) learning rate."""
    lr_min: float = 0.0
    """Final learning rate of the cosine schedule (NASH hill climbing: lr_start -> lr_end)."""
    momentum: float = 0.9
    """SGD momentum."""
    nesterov: bool = True
    """Use Nesterov momentum."""
    weight_decay: float = 1e-4
    """L2 weight decay applied to all parameters."""
    schedule: Literal["cosine", "constant"] = "cosine"
    """"cosine": anneal from lr to lr_min over all steps (per step); "constant": keep lr."""
    label_smoothing: float = 0.0
    """Label smoothing of the cross-entropy loss."""
    max_batches_per_epoch: int | None = None
    """Cap on steps per epoch for low-fidelity evaluation (None = full epochs)."""
    amp: bool = True
    """Autocast for forward passes on CUDA: bf16 where the GPU has it, else fp16 with a gradient scaler (CPU always runs fp32)."""
    channels_last: bool = True
    """Channels-last memory format for network and batches while training (CUDA and CPU)."""
    eval_batch_size: int = 1024
    """Batch size for validation/test evaluation."""
    cuda_graph: bool = True
    """On CUDA, capture the training step once as a CUDA graph, check it against an eager step and replay it (any failure retrains the child eagerly)."""
    cuda_graph_min_steps: int = 200
    """Fewest training steps (epochs x batches) for which a CUDA graph is captured; shorter children run eagerly."""

    def __post_init__(self) -> None:
        """Refuse bad values with a ValueError naming the field (e.g. ``TrainConfig(lr=-1)``)."""
        def bad(name: str, rule: str) -> ValueError:
            return ValueError(f"{name} must be {rule}, got {getattr(self, name)!r}")

        def is_int(v: object) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v: object) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        if not (is_int(self.epochs) and self.epochs >= 0):
            raise bad("epochs", "an integer >= 0")
        for name in ("batch_size", "eval_batch_size"):
            if not (is_int(getattr(self, name)) and getattr(self, name) >= 1):
                raise bad(name, "an integer >= 1")
        if not (is_num(self.lr) and self.lr > 0):
            raise bad("lr", "a finite number > 0")
        for name in ("lr_min", "weight_decay"):
            if not (is_num(getattr(self, name)) and getattr(self, name) >= 0):
                raise bad(name, "a finite number >= 0")
        if self.lr_min > self.lr:  # the cosine schedule anneals from lr down to lr_min
            raise bad("lr_min", f"<= lr ({self.lr:g})")
        for name in ("momentum", "label_smoothing"):
            if not (is_num(getattr(self, name)) and 0 <= getattr(self, name) < 1):
                raise bad(name, "in [0, 1)")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"unknown schedule {self.schedule!r}; allowed: 'cosine', 'constant'")
        if not (is_int(self.cuda_graph_min_steps) and self.cuda_graph_min_steps >= 0):
            raise bad("cuda_graph_min_steps", "an integer >= 0")
        if self.max_batches_per_epoch is not None and not (
                is_int(self.max_batches_per_epoch) and self.max_batches_per_epoch >= 1):
            raise bad("max_batches_per_epoch", "an integer >= 1 or None")

"""Child-training steps run from static buffers, captured once as a CUDA graph.

On a GPU a child's training step (batch 64 through a small CNN) is bound by
Python and kernel launches, not by the GPU. :class:`StepRunner` turns the step
into a function of *static* device tensors, so that CUDA can record it once
(``torch.cuda.graph``) and replay it with one launch per step:

* the epoch's seeded permutation and the augmentation's random numbers are
  drawn at the start of the epoch, in exactly the order the eager loop draws
  them (:func:`eas.data.draw_augment`), into static buffers; a step counter on
  the device selects the step's slice, so the batch order and the crops/flips
  are those of the eager loop;
* the learning rate is a device tensor read from a precomputed schedule table
  (float32; the eager loop's Python floats round to the same values when the
  optimiser uses them) and handed to a fused SGD;
* forward (bf16 autocast with its weight cache off, as graphs require),
  backward, the optimiser step, the running loss/accuracy sums and the step
  counters all happen inside the graph.

The first :data:`WARMUP_STEPS` steps run eagerly (on a side stream on CUDA,
which also lets cuDNN pick its algorithms); they are real training steps. Then
one step is captured and every later step is a replay. If the capture fails
for any reason the runner notes why (:attr:`StepRunner.note`) and keeps
running the same step function eagerly: same batches, same result, slower.

Numeric differences from the eager loop of :func:`eas.training.train_child`:
fused instead of foreach SGD (the same update, possibly rounded differently in
the last bit) and cuDNN's algorithm choice; both are within bf16 noise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from eas.data import Data, crop_flip, draw_augment

__all__ = ["WARMUP_STEPS", "StepRunner", "capture"]

WARMUP_STEPS = 3
"""Eager steps before the capture (allocator, cuDNN autotuning, momentum buffers)."""


def capture(step: Callable[[], None]) -> torch.cuda.CUDAGraph:
    """Record one call of ``step`` as a CUDA graph (nothing is executed)."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph


class StepRunner:
    """Training steps of one child from static buffers; a replayed CUDA graph after warm-up.

    ``optimizer`` must take its learning rate from :attr:`lr` (a 0-dim
    tensor on ``device``), e.g. ``make_optimizer(net, cfg, lr=runner.lr,
    fused=True)``; set it with :meth:`set_optimizer` before the first step.
    ``lr_schedule[s]`` is the learning rate of global step ``s``.
    """

    def __init__(self, network: nn.Module, data: Data, *, batch: int, steps_per_epoch: int,
                 lr_schedule: list[float], amp: bool, channels_last: bool,
                 label_smoothing: float, device: torch.device, use_graph: bool) -> None:
        self.network = network
        self.data = data
        self.batch = batch
        self.steps_per_epoch = steps_per_epoch
        self.amp = amp and device.type == "cuda"
        self.channels_last = channels_last
        self.label_smoothing = label_smoothing
        self.device = device
        self.use_graph = use_graph
        self.note: str | None = None
        """Why the runner fell back to eager steps (None when it did not)."""
        self.graph: torch.cuda.CUDAGraph | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self._done = 0
        aug = data.augment
        self.padding = aug.crop_padding
        opts = {"device": device}
        self.lr = torch.tensor(lr_schedule[0] if lr_schedule else 0.0, dtype=torch.float32, **opts)
        self.lr_table = torch.tensor(lr_schedule or [0.0], dtype=torch.float32, **opts)
        self.perm = torch.zeros((steps_per_epoch, batch), dtype=torch.int64, **opts)
        self.offsets = (torch.zeros((steps_per_epoch, 2, batch), dtype=torch.int64, **opts)
                        if aug.crop_padding > 0 else None)
        self.flips = (torch.zeros((steps_per_epoch, batch), dtype=torch.float32, **opts)
                      if aug.hflip else None)
        self.local = torch.zeros(1, dtype=torch.int64, **opts)
        self.global_step = torch.zeros(1, dtype=torch.int64, **opts)
        self.loss_sum = torch.zeros((), dtype=torch.float32, **opts)
        self.correct = torch.zeros((), dtype=torch.int64, **opts)
        mean = data.mean.to(device=device, dtype=torch.float32).view(-1, 1, 1)
        std = data.std.to(device=device, dtype=torch.float32).view(-1, 1, 1)
        self.normalize = aug.normalize
        self.scale, self.shift = 1.0 / (255.0 * std), mean / std

    @property
    def graphed(self) -> bool:
        """Whether steps are now replays of a captured graph."""
        return self.graph is not None

    def set_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimiser stepped inside the step (its learning rate must be :attr:`lr`)."""
        self.optimizer = optimizer

    # ------------------------------------------------------------------ epochs
    def begin_epoch(self, perm: Tensor, generator: torch.Generator) -> None:
        """Load an epoch's permutation and draw its augmentation (the eager loop's order)."""
        n, bs = self.steps_per_epoch, self.batch
        self.perm.copy_(perm[: n * bs].view(n, bs))
        for i in range(n):
            offsets, flips = draw_augment(bs, self.data.augment, generator, self.device)
            if offsets is not None and self.offsets is not None:
                self.offsets[i].copy_(offsets)
            if flips is not None and self.flips is not None:
                self.flips[i].copy_(flips)
        self.local.zero_()
        self.loss_sum.zero_()
        self.correct.zero_()

    # ------------------------------------------------------------------- steps
    def _body(self) -> None:
        """One training step, reading and writing static tensors only (capturable)."""
        assert self.optimizer is not None
        at = self.local
        idx = self.perm.index_select(0, at).view(-1)
        x = self.data.train_x.index_select(0, idx)
        y = self.data.train_y.index_select(0, idx)
        offsets = self.offsets.index_select(0, at).view(2, -1) if self.offsets is not None else None
        flips = self.flips.index_select(0, at).view(-1) if self.flips is not None else None
        x = crop_flip(x, self.padding, offsets, flips).to(torch.float32)
        x = x.mul_(self.scale).sub_(self.shift) if self.normalize else x.div_(255.0)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        self.lr.copy_(self.lr_table.index_select(0, self.global_step).view(()))
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
                    if self.amp else contextlib.nullcontext())
        with autocast:
            logits = self.network(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
        loss.backward()
        self.optimizer.step()
        self.loss_sum.add_(loss.detach())
        self.correct.add_((logits.detach().argmax(1) == y).sum())
        self.local.add_(1)
        self.global_step.add_(1)

    def step(self) -> None:
        """Run the next training step (replay, or eager during warm-up / after a failed capture)."""
        if self.graph is not None:
            self.graph.replay()
            return
        assert self.optimizer is not None
        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda" and self.use_graph:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                self._body()
            torch.cuda.current_stream(self.device).wait_stream(side)
        else:
            self._body()
        self._done += 1
        if self.use_graph and self._done == WARMUP_STEPS:
            self._capture()

    def _capture(self) -> None:
        assert self.optimizer is not None
        self.optimizer.zero_grad(set_to_none=True)
        try:
            self.graph = capture(self._body)
        except Exception as exc:  # noqa: BLE001 - any capture failure: keep training eagerly
            self.graph = None
            self.use_graph = False
            self.optimizer.zero_grad(set_to_none=True)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            self.note = (f"CUDA graph capture failed ({type(exc).__name__}: {first}); "
                         "trained with eager steps")

    def close(self) -> None:
        """Free the graph and its memory pool (gradients pointing into it are dropped)."""
        self.graph = None
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)

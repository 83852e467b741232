"""Child-training steps run from static buffers, captured once as a CUDA graph, checked, replayed.

On a GPU a child's training step (batch 64 through a small CNN) is bound by
Python and kernel launches, not by the GPU. :class:`StepRunner` turns the step
into a function of *static* device tensors, so that CUDA can record it once
(``torch.cuda.graph``) and replay it with one launch per step:

* the epoch's seeded permutation and augmentation draws
  (:func:`eas.epoch.draw_epoch_augment`, the same call the eager loop makes)
  are copied into static buffers at the start of the epoch; a step counter on
  the device selects the step's slice, so batches and crops/flips are those
  of the eager loop;
* the learning rate is a device tensor read from a precomputed schedule table
  (float32) and handed to a fused SGD;
* forward (autocast with its weight cache off, as graphs require), backward,
  the optimiser step, the running loss/accuracy sums and the step counters all
  happen inside the graph.

Stages: the first :data:`WARMUP_STEPS` steps run eagerly (on a side stream on
CUDA, which also lets cuDNN pick its algorithms); they are real training
steps. Then the **self-check**: one eager step from a snapshot of the whole
state, the state put back, the step captured and replayed once from the same
state and batch; loss and parameters must agree within
:data:`SELF_CHECK_RTOL`/:data:`SELF_CHECK_ATOL`. The replay is that step;
every later step is a replay. The verdict is cached per process and
architecture family (:func:`family_of`), so later children of a family that
passed skip the eager reference step, and a family that failed is not
captured again.

Any exception in warm-up, capture, self-check or replay (and a self-check
mismatch) is raised as :class:`GraphStepError` naming the stage:
:func:`eas.training.train_child` then retrains the child eagerly from its
initial weights with the same seed and records why.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from eas.accel import autocast, rng_state, set_rng_state
from eas.data import Data, crop_flip

__all__ = ["SELF_CHECK_ATOL", "SELF_CHECK_RTOL", "WARMUP_STEPS", "GraphStepError", "StepRunner",
           "capture", "family_of", "self_check_verdict"]

WARMUP_STEPS = 3
"""Eager steps before the capture (allocator, cuDNN autotuning, momentum buffers)."""

SELF_CHECK_RTOL = 1e-3
"""Relative tolerance of the self-check (loss and every parameter element)."""
SELF_CHECK_ATOL = 1e-5
"""Absolute tolerance of the self-check (loss and every parameter element)."""

_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
             nn.FeatureAlphaDropout)

_VERDICTS: dict[str, bool] = {}
"""Self-check verdicts of this process: architecture family -> the graph matched eager."""


def capture(step: Callable[[], None]) -> Any:
    """Record one call of ``step`` as a CUDA graph (nothing is executed); has ``replay()``."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph


def family_of(network: nn.Module, precision: str, channels_last: bool) -> str:
    """The architecture family of ``network``: its layer kinds, dropout, precision, memory format.

    A :class:`~eas.network.ChildNet` (anything with an ``arch``) is known by
    the kinds of layer in its architecture string (``C``, ``P``, ``FC``, ...);
    another module by its class name. Dropout counts (a graph replays its
    random numbers differently from plain layers).
    """
    arch = getattr(network, "arch", None)
    kinds = sorted(set(re.findall(r"([A-Za-z_]+)\s*\(", str(arch)))) if arch is not None else []
    body = ",".join(kinds) if kinds else type(network).__name__
    dropout = any(isinstance(m, _DROPOUTS) and m.p > 0 for m in network.modules())
    return f"{body}|{'dropout' if dropout else 'no-dropout'}|{precision}|{'cl' if channels_last else 'cf'}"


def self_check_verdict(family: str) -> bool | None:
    """This process's cached self-check verdict for ``family`` (None: not checked yet)."""
    return _VERDICTS.get(family)


class GraphStepError(RuntimeError):
    """The graph path failed at ``stage`` (warm-up, capture, self-check, replay)."""

    def __init__(self, stage: str, message: str, cause: BaseException | None = None) -> None:
        super().__init__(f"CUDA graph {stage} failed: {message}")
        self.stage = stage
        self.cause = cause


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


class StepRunner:
    """Training steps of one child from static buffers; a checked, replayed CUDA graph after warm-up.

    ``optimizer`` must take its learning rate from :attr:`lr` (a 0-dim tensor
    on ``device``), e.g. ``make_optimizer(net, cfg, lr=runner.lr, fused=True)``;
    set it with :meth:`set_optimizer` before the first step. ``lr_schedule[s]``
    is the learning rate of global step ``s``. ``family`` keys the cached
    self-check verdict (:func:`family_of`).
    """

    def __init__(self, network: nn.Module, data: Data, *, batch: int, steps_per_epoch: int,
                 lr_schedule: list[float], precision: str, channels_last: bool,
                 label_smoothing: float, device: torch.device, family: str) -> None:
        self.network = network
        self.data = data
        self.batch = batch
        self.steps_per_epoch = steps_per_epoch
        self.precision = precision
        self.channels_last = channels_last
        self.label_smoothing = label_smoothing
        self.device = device
        self.family = family
        self.graph: Any = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.checked = False
        """Whether this runner ran the eager-vs-replay self-check (False: cached verdict)."""
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
        self.last_loss = torch.zeros((), dtype=torch.float32, **opts)
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
    def begin_epoch(self, perm: Tensor, offsets: Tensor | None, flips: Tensor | None) -> None:
        """Load an epoch's permutation and augmentation draws (one copy each)."""
        n, bs = self.steps_per_epoch, self.batch
        self.perm.copy_(perm[: n * bs].view(n, bs))
        if offsets is not None and self.offsets is not None:
            self.offsets.copy_(offsets)
        if flips is not None and self.flips is not None:
            self.flips.copy_(flips)
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
        with autocast(self.device, self.precision, cache_enabled=False):
            logits = self.network(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
        loss.backward()
        self.optimizer.step()
        self.last_loss.copy_(loss.detach())
        self.loss_sum.add_(loss.detach())
        self.correct.add_((logits.detach().argmax(1) == y).sum())
        self.local.add_(1)
        self.global_step.add_(1)

    def _eager(self) -> None:
        """The step run eagerly (on a side stream on CUDA, as the capture needs)."""
        assert self.optimizer is not None
        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                self._body()
            torch.cuda.current_stream(self.device).wait_stream(side)
        else:
            self._body()

    def step(self) -> None:
        """Run the next training step: warm-up, then the checked capture, then replays.

        Raises :class:`GraphStepError` (with the stage and the cause) on any failure.
        """
        stage = "replay" if self.graph is not None else "warm-up"
        try:
            if self.graph is not None:
                self.graph.replay()
            elif self._done < WARMUP_STEPS:
                self._eager()
            else:
                stage = "capture"
                self._capture_checked()
        except GraphStepError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of the graph path: the caller falls back
            raise GraphStepError(stage, _first_line(exc), exc) from exc
        self._done += 1

    # --------------------------------------------------------------- capturing
    def _state(self) -> list[Tensor]:
        """Every tensor one step changes: parameters, buffers, optimiser state, counters."""
        assert self.optimizer is not None
        tensors = [t for t in self.network.state_dict(keep_vars=True).values() if torch.is_tensor(t)]
        for st in self.optimizer.state.values():
            tensors += [v for v in st.values() if torch.is_tensor(v)]
        tensors += [self.lr, self.local, self.global_step, self.loss_sum, self.correct,
                    self.last_loss]
        return tensors

    def _capture_checked(self) -> None:
        """Capture the step; self-check it (unless the family passed before); replay it once."""
        assert self.optimizer is not None
        check = _VERDICTS.get(self.family) is None
        if check:
            state = self._state()
            saved = [t.detach().clone() for t in state]
            rng = rng_state(self.device)
            self._eager()  # the reference step from this state, batch and random numbers
            ref_loss = self.last_loss.detach().clone()
            ref_params = [p.detach().clone() for p in self.network.parameters()]
            with torch.no_grad():
                for t, s in zip(state, saved):
                    t.copy_(s)
            set_rng_state(self.device, rng)
            del saved
        self.optimizer.zero_grad(set_to_none=True)
        self.graph = capture(self._body)
        self.graph.replay()
        if check:
            self.checked = True
            problem = self._compare(ref_loss, ref_params)
            _VERDICTS[self.family] = problem is None
            if problem is not None:
                raise GraphStepError("self-check", problem)

    def _compare(self, ref_loss: Tensor, ref_params: list[Tensor]) -> str | None:
        """Why the replayed step differs from the eager one (None when they agree)."""
        loss, tol = float(self.last_loss.detach()), dict(rtol=SELF_CHECK_RTOL, atol=SELF_CHECK_ATOL)
        if not torch.isclose(self.last_loss, ref_loss, **tol).item():
            return f"replayed loss {loss:.6g} != eager loss {float(ref_loss):.6g}"
        for (name, p), ref in zip(self.network.named_parameters(), ref_params):
            if not torch.allclose(p.detach(), ref, **tol):
                got = float(p.detach().double().sum())
                want = float(ref.double().sum())
                return (f"parameter {name} after the replayed step differs from eager "
                        f"(checksum {got:.9g} != {want:.9g})")
        return None

    def close(self) -> None:
        """Free the graph and its memory pool (gradients pointing into it are dropped)."""
        self.graph = None
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)

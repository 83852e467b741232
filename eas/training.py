"""Child-network trainer: device-resident data, batched augmentation, no DataLoader.

``train_child`` trains a network with SGD + Nesterov momentum and a cosine
learning-rate schedule (the EAS paper's child recipe by default) on a
:class:`~eas.data.Data` whose tensors already live on the training device. Each
epoch draws a seeded permutation, slices batches straight from the tensors and
augments them with :func:`~eas.data.augment_batch`. On CUDA it turns on cuDNN
autotuning and bf16 autocast; on CPU the same code runs in fp32. Both use the
channels-last memory format while training (oneDNN's CPU convolutions are also
1.2-1.4x faster in it for the child networks measured), and the parameters are
handed back in the default contiguous format. A diverging run (NaN/inf loss) is reported as ``failed`` rather
than raised, so an architecture search can simply score it as 0.

On CUDA (``TrainConfig.cuda_graph``, on by default, for children of at least
``cuda_graph_min_steps`` steps) the step runs through
:class:`eas.graphed.StepRunner`: the same batches, augmentation and learning
rates from static device buffers, captured once per child as a CUDA graph,
checked against an eager step and replayed, with a fused SGD. Any failure of
that path retrains the child eagerly from its initial weights and says so in
``TrainResult.note``. The autocast precision is chosen once per child
(:func:`eas.accel.choose_precision`: bf16 where the GPU has it, else fp16 with a
gradient scaler; fp32 on CPU) and reported as ``TrainResult.precision``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from eas.accel import (
    SGD_HAS_FUSED,
    autocast,
    choose_precision,
    grad_scaler,
    is_sticky_cuda_error,
    rng_state,
    set_rng_state,
)
from eas.data import Data, crop_flip, normalize_batch
from eas.epoch import draw_epoch_augment
from eas.evaluation import evaluate
from eas.graphed import GraphStepError, StepRunner, family_of, self_check_verdict
from eas.recipe import TrainConfig

__all__ = ["TrainResult", "final_train", "lr_at", "make_optimizer", "train_child"]

_CHECK_EVERY = 50  # steps between host syncs that check the running loss for NaN/inf
CHANCE_LOSS_FACTOR = 3.0
"""A training run whose last-epoch loss is above this many times the chance-level loss
ln(num_classes) (what a uniform guess scores) has diverged: it is reported as failed."""


@dataclass
class TrainResult:
    """Outcome of one training run."""

    val_accuracy: float
    """Accuracy on the validation split (NaN if the data has no validation images)."""
    train_loss: float
    """Mean training loss over the last epoch."""
    train_accuracy: float
    """Accuracy on the (augmented) training batches of the last epoch."""
    epochs: int
    """Epochs completed (possibly partial when failed)."""
    steps: int
    """SGD steps taken."""
    train_time: float
    """Wall-clock seconds spent in the training loop (evaluation excluded)."""
    images_per_second: float
    """Training throughput: images processed / train_time."""
    failed: bool = False
    """True when training diverged (NaN/inf loss, or a loss far above chance level) or ran out of GPU memory."""
    reason: str | None = None
    """Why it failed, else None."""
    cpu_time: float = 0.0
    """CPU seconds of this process (all its threads) in the training loop: a cost that other
    load on a CPU machine does not inflate (``search.child_clock = "cpu"``)."""
    test_accuracy: float | None = None
    """Accuracy on the test split when requested (final_train / eval_on="test")."""
    cuda_graph: bool = False
    """True when the training steps were replays of a captured CUDA graph."""
    note: str | None = None
    """Anything worth knowing that is not a failure (e.g. why the CUDA graph was not used)."""
    precision: str = "fp32"
    """Autocast precision of the training steps: "fp32", "bf16" or "fp16" (with a gradient scaler)."""
    fallback: str | None = None
    """Stage of the CUDA-graph path that failed (warm-up, capture, self-check, replay) before the eager retraining, else None."""


def lr_at(config: TrainConfig, step: int, total_steps: int) -> float:
    """Learning rate at ``step`` (0-based) of ``total_steps`` under ``config.schedule``."""
    if config.schedule == "constant" or total_steps <= 0:
        return config.lr
    progress = min(step / total_steps, 1.0)
    return config.lr_min + 0.5 * (config.lr - config.lr_min) * (1.0 + math.cos(math.pi * progress))


def make_optimizer(network: nn.Module, config: TrainConfig, *, lr: float | Tensor | None = None,
                   fused: bool | None = None) -> torch.optim.SGD:
    """The child recipe's optimiser: SGD with (Nesterov) momentum and weight decay.

    ``lr`` overrides ``config.lr`` (a device tensor for CUDA-graph steps, which
    need ``fused=True``); ``fused=None`` lets torch choose the implementation
    and is not passed on, so this works on a torch whose SGD has no ``fused``
    (a ValueError asks for a newer torch when ``fused`` is requested there).
    """
    kwargs: dict[str, Any] = {}
    if fused is not None:
        if not SGD_HAS_FUSED:
            raise ValueError(f"torch {torch.__version__} has no fused SGD (torch >= 2.3 needed)")
        kwargs["fused"] = fused
    return torch.optim.SGD(
        network.parameters(),
        lr=config.lr if lr is None else lr,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,
        weight_decay=config.weight_decay,
        **kwargs,
    )


def _graph_steps_wanted(device: torch.device, config: TrainConfig) -> bool:
    """Whether CUDA-graph steps are asked for (CUDA with cuda_graph on); tests force it on CPU."""
    return device.type == "cuda" and config.cuda_graph


def _graph_plan(device: torch.device, config: TrainConfig, total_steps: int, precision: str,
                family: str) -> tuple[bool, str | None]:
    """``(use the graph, why not)``: the reason is given when a wanted graph is refused."""
    if not _graph_steps_wanted(device, config) or total_steps < config.cuda_graph_min_steps:
        return False, None  # not wanted, or too few steps to repay capture (nothing to report)
    if precision == "fp16":
        return False, ("CUDA graph not used: fp16 needs a gradient scaler, which checks for "
                       "inf on the host every step; trained with eager steps")
    if not SGD_HAS_FUSED:
        return False, (f"CUDA graph not used: torch {torch.__version__} has no fused SGD; "
                       "trained with eager steps")
    if self_check_verdict(family) is False:
        return False, ("CUDA graph not used: its self-check failed earlier in this process for "
                       f"this architecture family ({family}); trained with eager steps")
    return True, None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class _Plan:
    """What one training run of a child is set to do (shared by the graph and eager attempts)."""

    config: TrainConfig
    device: torch.device
    seed: int
    batch: int
    steps_per_epoch: int
    total_steps: int
    precision: str
    family: str
    progress: bool


def train_child(
    network: nn.Module,
    data: Data,
    config: TrainConfig | None = None,
    *,
    device: str | torch.device | None = None,
    seed: int = 0,
    progress: bool = False,
    eval_on: Literal["val", "test"] = "val",
) -> TrainResult:
    """Train ``network`` IN PLACE on ``data.train_*`` and evaluate it.

    The module itself is moved to ``device`` and its weights are updated; pass a
    copy (``copy.deepcopy``) if the original must be kept. ``device=None`` uses
    the data's device (data on another device is copied there once). ``seed``
    drives the batch order and augmentation (a ``torch.Generator`` on the device),
    so CPU runs are reproducible. Validation accuracy is always measured when the
    data has a validation split; ``eval_on="test"`` also measures test accuracy.
    A NaN/inf loss (checked every 50 steps and at each epoch end), a last-epoch
    loss far above the chance-level loss (:data:`CHANCE_LOSS_FACTOR` x ln(classes))
    or a CUDA out-of-memory error stops training and returns ``failed=True`` with
    ``val_accuracy=0.0`` instead of raising. The network ends in eval mode with
    its parameters in the default contiguous memory format.

    With CUDA-graph steps, any failure of the graph path (warm-up, capture,
    self-check, replay) retrains the child eagerly from its initial weights with
    the same seed and global RNG state; ``TrainResult.note`` says why. A sticky
    CUDA error (:func:`eas.accel.is_sticky_cuda_error`) is raised instead: the
    process's CUDA context is unusable and the caller must start a new one.
    """
    config = config if config is not None else TrainConfig()
    if eval_on not in ("val", "test"):
        raise ValueError(f"eval_on must be 'val' or 'test', got {eval_on!r}")
    dev = torch.device(device) if device is not None else data.device
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    data = data.to(dev)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    network.to(dev)
    if config.channels_last:
        network.to(memory_format=torch.channels_last)
    precision = choose_precision(dev, config.amp)

    n = len(data.train_y)
    bs = min(config.batch_size, n)
    steps_per_epoch = n // bs if n > 0 else 0
    if config.max_batches_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, config.max_batches_per_epoch)
    plan = _Plan(config, dev, seed, bs, steps_per_epoch, steps_per_epoch * config.epochs,
                 precision, family_of(network, precision, config.channels_last), progress)
    graph, why_not = _graph_plan(dev, config, plan.total_steps, precision, plan.family)
    if graph and steps_per_epoch > 0:
        initial = {k: v.detach().clone() for k, v in network.state_dict().items()}
        rng = rng_state(dev)
        try:
            res = _train(network, data, plan, graph=True)
        except GraphStepError as exc:
            if exc.cause is not None and is_sticky_cuda_error(exc.cause):
                raise exc.cause from None
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            with torch.no_grad():
                network.load_state_dict(initial)
            set_rng_state(dev, rng)
            res = _train(network, data, plan, graph=False)
            res.note = f"{exc}; retrained with eager steps from the initial weights"
            res.fallback = exc.stage
        del initial
    else:
        res = _train(network, data, plan, graph=False)
        res.note = why_not
    if network.training:  # a failed run has already been put in eval mode
        network.eval()
    if config.channels_last:
        network.to(memory_format=torch.contiguous_format)
    if res.failed:
        return res
    kwargs = {"batch_size": config.eval_batch_size, "amp": config.amp,
              "channels_last": config.channels_last}
    res.val_accuracy = evaluate(network, data.val_x, data.val_y, data, **kwargs)
    if eval_on == "test":
        res.test_accuracy = evaluate(network, data.test_x, data.test_y, data, **kwargs)
    network.eval()
    return res


def _train(network: nn.Module, data: Data, plan: _Plan, *, graph: bool) -> TrainResult:
    """The training loop of :func:`train_child` (no evaluation); GraphStepError escapes it."""
    config, dev, bs = plan.config, plan.device, plan.batch
    steps_per_epoch, total_steps = plan.steps_per_epoch, plan.total_steps
    n = len(data.train_y)
    gen = torch.Generator(device=dev).manual_seed(plan.seed)
    aug, mean, std = data.augment, data.mean, data.std
    runner: StepRunner | None = None
    scaler = grad_scaler() if plan.precision == "fp16" and not graph else None
    if graph:
        runner = StepRunner(
            network, data, batch=bs, steps_per_epoch=steps_per_epoch,
            lr_schedule=[lr_at(config, s, total_steps) for s in range(total_steps)],
            precision=plan.precision, channels_last=config.channels_last,
            label_smoothing=config.label_smoothing, device=dev, family=plan.family,
        )
        optimizer = make_optimizer(network, config, lr=runner.lr, fused=True)
        runner.set_optimizer(optimizer)
    else:
        optimizer = make_optimizer(network, config)

    def result(loss: float, acc: float, epochs: int, failed: bool, reason: str | None) -> TrainResult:
        _sync(dev)
        elapsed = time.perf_counter() - start
        cpu_time = time.process_time() - cpu_start
        graphed = runner is not None and runner.graphed
        if runner is not None:
            runner.close()
        if failed:
            network.eval()
        return TrainResult(
            val_accuracy=0.0 if failed else float("nan"), train_loss=loss, train_accuracy=acc,
            epochs=epochs, steps=step, train_time=elapsed,
            images_per_second=step * bs / elapsed if elapsed > 0 else 0.0,
            failed=failed, reason=reason, cuda_graph=graphed, precision=plan.precision,
            cpu_time=cpu_time,
        )

    bar = None
    if plan.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.epochs, desc="train", unit="epoch", leave=False)
    network.train()
    step = 0
    epoch = 0
    last_loss, last_acc = float("nan"), float("nan")
    start = time.perf_counter()
    cpu_start = time.process_time()
    try:
        for epoch in range(config.epochs):
            perm = torch.randperm(n, generator=gen, device=dev)
            offsets, flips = draw_epoch_augment(steps_per_epoch, bs, aug, gen, dev)
            if runner is not None:
                runner.begin_epoch(perm, offsets, flips)
                loss_sum, correct = runner.loss_sum, runner.correct
            else:
                loss_sum = torch.zeros((), device=dev)
                correct = torch.zeros((), dtype=torch.int64, device=dev)
            for i in range(steps_per_epoch):
                if runner is not None:  # the same step from static buffers (CUDA graph)
                    runner.step()
                    step += 1
                    if (i + 1) % _CHECK_EVERY == 0 and not math.isfinite(loss_sum.item()):
                        return result(float("nan"), 0.0, epoch, True, _nan_reason(step))
                    continue
                idx = perm[i * bs : (i + 1) * bs]
                xb = crop_flip(data.train_x[idx], aug.crop_padding,
                               None if offsets is None else offsets[i],
                               None if flips is None else flips[i])
                xb = normalize_batch(xb, mean, std, normalize=aug.normalize)
                yb = data.train_y[idx]
                if config.channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(config, step, total_steps)
                with autocast(dev, plan.precision):
                    logits = network(xb)
                loss = F.cross_entropy(logits.float(), yb, label_smoothing=config.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
                step += 1
                loss_sum += loss.detach()
                correct += (logits.detach().argmax(1) == yb).sum()
                if (i + 1) % _CHECK_EVERY == 0 and not math.isfinite(loss_sum.item()):
                    return result(float("nan"), 0.0, epoch, True, _nan_reason(step))
            if steps_per_epoch > 0:
                last_loss = loss_sum.item() / steps_per_epoch
                last_acc = correct.item() / (steps_per_epoch * bs)
                if not math.isfinite(last_loss):
                    return result(float("nan"), 0.0, epoch, True, _nan_reason(step))
            if bar is not None:
                bar.set_postfix(loss=f"{last_loss:.3f}", acc=f"{last_acc:.3f}")
                bar.update()
    except torch.cuda.OutOfMemoryError as exc:
        if runner is not None:
            runner.close()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        return result(float("nan"), 0.0, epoch, True, f"CUDA out of memory: {exc}")
    except BaseException:
        if runner is not None:
            runner.close()
        optimizer.zero_grad(set_to_none=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    classes = max(2, int(getattr(data, "num_classes", 2)))
    if last_loss > CHANCE_LOSS_FACTOR * math.log(classes):  # finite (checked above), diverging
        return result(last_loss, last_acc, config.epochs, True,
                      f"training loss {last_loss:.3g} stayed far above the chance-level loss "
                      f"ln({classes}) = {math.log(classes):.2f} (diverging: learning rate too "
                      "high?)")
    return result(last_loss, last_acc, config.epochs, False, None)


def _nan_reason(step: int) -> str:
    return f"non-finite training loss (NaN/inf) detected by step {step}"


def final_train(
    network: nn.Module,
    data: Data,
    config: TrainConfig | None = None,
    *,
    device: str | torch.device | None = None,
    seed: int = 0,
    progress: bool = False,
) -> TrainResult:
    """Train ``network`` IN PLACE on train + validation and report test accuracy.

    Uses :meth:`Data.full_train`; ``val_accuracy`` of the result is NaN (no
    validation images remain) and ``test_accuracy`` holds the final score.
    """
    return train_child(
        network,
        data.full_train(),
        config,
        device=device,
        seed=seed,
        progress=progress,
        eval_on="test",
    )

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

On CUDA (``TrainConfig.cuda_graph``, on by default) the step runs through
:class:`eas.graphed.StepRunner`: the same batches, augmentation and learning
rates from static device buffers, captured once per child as a CUDA graph and
replayed, with a fused SGD; a capture that fails falls back to eager steps and
says so in ``TrainResult.note``. The CPU path is the plain eager loop.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from eas.data import Data, augment_batch, normalize_batch
from eas.graphed import StepRunner

__all__ = ["TrainConfig", "TrainResult", "evaluate", "final_train", "lr_at", "make_optimizer", "train_child"]

_CHECK_EVERY = 50  # steps between host syncs that check the running loss for NaN/inf


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
    """bf16 autocast for forward passes (CUDA only; CPU always runs fp32)."""
    channels_last: bool = True
    """Channels-last memory format for network and batches while training (CUDA and CPU)."""
    eval_batch_size: int = 1024
    """Batch size for validation/test evaluation."""
    cuda_graph: bool = True
    """On CUDA, capture the training step once as a CUDA graph and replay it (a failed capture falls back to eager steps)."""

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
        for name in ("momentum", "label_smoothing"):
            if not (is_num(getattr(self, name)) and 0 <= getattr(self, name) < 1):
                raise bad(name, "in [0, 1)")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"unknown schedule {self.schedule!r}; allowed: 'cosine', 'constant'")
        if self.max_batches_per_epoch is not None and not (
                is_int(self.max_batches_per_epoch) and self.max_batches_per_epoch >= 1):
            raise bad("max_batches_per_epoch", "an integer >= 1 or None")


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
    """True when training diverged (NaN/inf loss) or ran out of GPU memory."""
    reason: str | None = None
    """Why it failed, else None."""
    test_accuracy: float | None = None
    """Accuracy on the test split when requested (final_train / eval_on="test")."""
    cuda_graph: bool = False
    """True when the training steps were replays of a captured CUDA graph."""
    note: str | None = None
    """Anything worth knowing that is not a failure (e.g. why the CUDA graph was not used)."""


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
    need ``fused=True``); ``fused=None`` lets torch choose the implementation.
    """
    return torch.optim.SGD(
        network.parameters(),
        lr=config.lr if lr is None else lr,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,
        weight_decay=config.weight_decay,
        fused=fused,
    )


def _graph_steps_wanted(device: torch.device, config: TrainConfig) -> bool:
    """Whether training runs through :class:`eas.graphed.StepRunner` (CUDA with cuda_graph on)."""
    return device.type == "cuda" and config.cuda_graph


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def evaluate(
    network: nn.Module,
    x_uint8: Tensor,
    y: Tensor,
    stats: Data | tuple[Tensor, Tensor],
    *,
    batch_size: int = 1024,
    normalize: bool | None = None,
    amp: bool = True,
    channels_last: bool = True,
) -> float:
    """Top-1 accuracy of ``network`` on ``uint8`` images ``x_uint8`` with labels ``y``.

    ``stats`` is a :class:`Data` (its mean/std/augment.normalize are used) or a
    ``(mean, std)`` pair. Runs in eval mode under ``no_grad`` (bf16 autocast on CUDA
    and channels-last inputs when enabled) and restores the previous train/eval mode.
    Batches are moved to the network's device. Returns NaN for an empty set.
    """
    if isinstance(stats, Data):
        mean, std = stats.mean, stats.std
        normalize = stats.augment.normalize if normalize is None else normalize
    else:
        mean, std = stats
        normalize = True if normalize is None else normalize
    n = len(y)
    if n == 0:
        return float("nan")
    param = next(network.parameters(), None)
    device = param.device if param is not None else x_uint8.device
    was_training = network.training
    network.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    try:
        with torch.no_grad(), _autocast(device, amp):
            for i in range(0, n, batch_size):
                xb = normalize_batch(
                    x_uint8[i : i + batch_size].to(device, non_blocking=True),
                    mean,
                    std,
                    normalize=normalize,
                )
                if channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                logits = network(xb)
                correct += (logits.argmax(1) == y[i : i + batch_size].to(device)).sum()
    finally:
        network.train(was_training)
    return correct.item() / n


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
    A NaN/inf loss (checked every 50 steps and at each epoch end) or a CUDA
    out-of-memory error stops training and returns ``failed=True`` with
    ``val_accuracy=0.0`` instead of raising. The network ends in eval mode with
    its parameters in the default contiguous memory format.
    """
    config = config if config is not None else TrainConfig()
    if eval_on not in ("val", "test"):
        raise ValueError(f"eval_on must be 'val' or 'test', got {eval_on!r}")
    dev = torch.device(device) if device is not None else data.device
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    data = data.to(dev)
    cuda = dev.type == "cuda"
    use_cl = config.channels_last
    if cuda:
        torch.backends.cudnn.benchmark = True
    network.to(dev)
    if use_cl:
        network.to(memory_format=torch.channels_last)

    n = len(data.train_y)
    bs = min(config.batch_size, n)
    steps_per_epoch = n // bs if n > 0 else 0
    if config.max_batches_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, config.max_batches_per_epoch)
    total_steps = steps_per_epoch * config.epochs
    gen = torch.Generator(device=dev).manual_seed(seed)
    aug, mean, std = data.augment, data.mean, data.std
    runner: StepRunner | None = None
    if steps_per_epoch > 0 and _graph_steps_wanted(dev, config):
        runner = StepRunner(
            network, data, batch=bs, steps_per_epoch=steps_per_epoch,
            lr_schedule=[lr_at(config, s, total_steps) for s in range(total_steps)],
            amp=config.amp, channels_last=use_cl, label_smoothing=config.label_smoothing,
            device=dev, use_graph=True,
        )
        optimizer = make_optimizer(network, config, lr=runner.lr, fused=True)
        runner.set_optimizer(optimizer)
    else:
        optimizer = make_optimizer(network, config)

    def result(
        val_acc: float, loss: float, acc: float, epochs: int, failed: bool, reason: str | None
    ) -> TrainResult:
        _sync(dev)
        elapsed = time.perf_counter() - start
        graphed = runner is not None and runner.graphed
        note = runner.note if runner is not None else None
        if runner is not None:
            runner.close()
        network.eval()
        if use_cl:
            network.to(memory_format=torch.contiguous_format)
        return TrainResult(
            val_accuracy=val_acc,
            train_loss=loss,
            train_accuracy=acc,
            epochs=epochs,
            steps=step,
            train_time=elapsed,
            images_per_second=step * bs / elapsed if elapsed > 0 else 0.0,
            failed=failed,
            reason=reason,
            cuda_graph=graphed,
            note=note,
        )

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.epochs, desc="train", unit="epoch", leave=False)
    network.train()
    step = 0
    epoch = 0
    last_loss, last_acc = float("nan"), float("nan")
    start = time.perf_counter()
    try:
        for epoch in range(config.epochs):
            perm = torch.randperm(n, generator=gen, device=dev)
            if runner is not None:
                runner.begin_epoch(perm, gen)
                loss_sum, correct = runner.loss_sum, runner.correct
            else:
                loss_sum = torch.zeros((), device=dev)
                correct = torch.zeros((), dtype=torch.int64, device=dev)
            for i in range(steps_per_epoch):
                if runner is not None:  # the same step from static buffers (CUDA graph)
                    runner.step()
                    step += 1
                    if (i + 1) % _CHECK_EVERY == 0 and not math.isfinite(loss_sum.item()):
                        return result(0.0, float("nan"), 0.0, epoch, True, _nan_reason(step))
                    continue
                idx = perm[i * bs : (i + 1) * bs]
                xb = augment_batch(data.train_x[idx], aug, mean, std, gen)
                yb = data.train_y[idx]
                if use_cl:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(config, step, total_steps)
                with _autocast(dev, config.amp):
                    logits = network(xb)
                loss = F.cross_entropy(logits.float(), yb, label_smoothing=config.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                loss_sum += loss.detach()
                correct += (logits.detach().argmax(1) == yb).sum()
                if (i + 1) % _CHECK_EVERY == 0 and not math.isfinite(loss_sum.item()):
                    return result(0.0, float("nan"), 0.0, epoch, True, _nan_reason(step))
            if steps_per_epoch > 0:
                last_loss = loss_sum.item() / steps_per_epoch
                last_acc = correct.item() / (steps_per_epoch * bs)
                if not math.isfinite(last_loss):
                    return result(0.0, float("nan"), 0.0, epoch, True, _nan_reason(step))
            if bar is not None:
                bar.set_postfix(loss=f"{last_loss:.3f}", acc=f"{last_acc:.3f}")
                bar.update()
    except torch.cuda.OutOfMemoryError as exc:
        if runner is not None:
            runner.close()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        return result(0.0, float("nan"), 0.0, epoch, True, f"CUDA out of memory: {exc}")
    finally:
        if bar is not None:
            bar.close()

    res = result(float("nan"), last_loss, last_acc, config.epochs, False, None)
    kwargs = {"batch_size": config.eval_batch_size, "amp": config.amp}
    kwargs["channels_last"] = config.channels_last
    res.val_accuracy = evaluate(network, data.val_x, data.val_y, data, **kwargs)
    if eval_on == "test":
        res.test_accuracy = evaluate(network, data.test_x, data.test_y, data, **kwargs)
    network.eval()
    return res


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

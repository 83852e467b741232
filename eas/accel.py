"""What the installed torch and the GPU can do, decided once: precision, fused SGD, CUDA errors.

Child training asks this module instead of assuming a feature:

* :func:`choose_precision`: the autocast precision of a child, ``"bf16"`` on a
  GPU with native bf16 (Ampere and later), ``"fp16"`` (with a gradient scaler)
  on older GPUs, ``"fp32"`` on CPU or with ``amp`` off;
* :data:`SGD_HAS_FUSED`: whether ``torch.optim.SGD`` takes ``fused=`` (the
  CUDA-graph step needs a fused SGD reading a tensor learning rate);
* :func:`is_sticky_cuda_error`: whether an exception poisoned the CUDA context
  (illegal address, launch failure, ECC error, ...), after which every later
  kernel in the process fails: an infrastructure failure, not the child's.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any, Literal

import torch

__all__ = ["PRECISIONS", "SGD_HAS_FUSED", "STICKY_CUDA_MESSAGES", "Precision", "autocast",
           "bf16_supported", "choose_precision", "grad_scaler", "is_sticky_cuda_error",
           "rng_state", "set_rng_state"]

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")

SGD_HAS_FUSED: bool = "fused" in inspect.signature(torch.optim.SGD).parameters
"""``torch.optim.SGD(fused=...)`` exists (torch >= 2.3); without it no CUDA graph is captured."""

STICKY_CUDA_MESSAGES: tuple[str, ...] = (
    "illegal memory access",
    "illegal address",
    "unspecified launch failure",
    "launch failure",
    "ecc error",
    "misaligned address",
    "illegal instruction",
    "device-side assert triggered",
    "hardware stack error",
    "launch timed out",
)
"""Lower-case fragments of the first line of CUDA errors after which the context is unusable."""

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def bf16_supported() -> bool:
    """Native bf16 on the current GPU (emulated bf16, where torch reports it, does not count)."""
    if not torch.cuda.is_available():
        return False
    check = torch.cuda.is_bf16_supported
    if "including_emulation" in inspect.signature(check).parameters:
        return bool(check(including_emulation=False))
    return bool(check())


def choose_precision(device: torch.device, amp: bool) -> Precision:
    """The autocast precision of child training on ``device`` (``amp`` off or CPU: fp32)."""
    if not amp or device.type != "cuda":
        return "fp32"
    return "bf16" if bf16_supported() else "fp16"


def autocast(device: torch.device, precision: str, *,
             cache_enabled: bool = True) -> contextlib.AbstractContextManager:
    """Autocast to ``precision`` on CUDA (a no-op for fp32 or another device)."""
    dtype = _DTYPES.get(precision)
    if dtype is None or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=dtype, cache_enabled=cache_enabled)


def rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The global RNG states a training step may draw from (dropout): CPU, and ``device`` on CUDA."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def set_rng_state(device: torch.device, state: tuple[torch.Tensor, torch.Tensor | None]) -> None:
    """Put back what :func:`rng_state` returned."""
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def grad_scaler() -> Any:
    """A CUDA gradient scaler for fp16 training (``torch.amp`` or the older ``torch.cuda.amp``)."""
    amp = getattr(torch, "amp", None)
    if amp is not None and hasattr(amp, "GradScaler"):
        return amp.GradScaler("cuda")
    return torch.cuda.amp.GradScaler()  # pragma: no cover - torch < 2.3


def is_sticky_cuda_error(exc: BaseException | str | None) -> bool:
    """Whether ``exc`` (or a failure reason) is a CUDA error that poisons the process's context.

    Matches the messages in :data:`STICKY_CUDA_MESSAGES` on a ``RuntimeError``
    (or torch's ``AcceleratorError``) whose text mentions CUDA, following
    ``__cause__``/``__context__``. Out of memory is not sticky (the allocator
    recovers) and is handled elsewhere.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, str):
            text = exc
        elif isinstance(exc, RuntimeError):
            text = f"{type(exc).__name__}: {exc}"
        else:
            text = ""
        text = (text.strip().splitlines() or [""])[0].lower()  # not torch's advice lines
        if ("cuda" in text or "accelerator" in text) and "out of memory" not in text \
                and any(m in text for m in STICKY_CUDA_MESSAGES):
            return True
        if isinstance(exc, str):
            return False
        exc = exc.__cause__ or exc.__context__
    return False

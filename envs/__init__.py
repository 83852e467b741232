"""Gymnasium environments for architecture search by network transformation.

``import envs`` registers ``"eas/NetTransform-v0"`` (:class:`NetTransformEnv`).
"""

import gymnasium

from envs.cache import EvalCache, fingerprint
from envs.evaluators import EvalResult, Evaluator, as_result, evaluate_batch
from envs.net_transform import (
    DEFAULT_SCHEDULE,
    FASHION_START,
    KINDS,
    InvalidActionError,
    NetTransformEnv,
    reward_of,
)

__all__ = [
    "DEFAULT_SCHEDULE",
    "FASHION_START",
    "KINDS",
    "EvalCache",
    "EvalResult",
    "Evaluator",
    "InvalidActionError",
    "NetTransformEnv",
    "as_result",
    "evaluate_batch",
    "fingerprint",
    "reward_of",
]

if "eas/NetTransform-v0" not in gymnasium.registry:
    gymnasium.register("eas/NetTransform-v0", entry_point="envs.net_transform:NetTransformEnv")

"""Gymnasium environments for architecture search by network transformation.

``from eas import envs`` registers ``"eas/NetTransform-v0"`` (:class:`NetTransformEnv`; its
vector entry point is :class:`VectorNetTransformEnv`, so
``gymnasium.make_vec("eas/NetTransform-v0", num_envs=n, vectorization_mode="vector_entry_point")``
works too), and ``"eas/NetTransformFlat-v0"`` (:class:`~envs.flat.FlatNetTransformEnv`, the
SB3-ready view: one ``Discrete`` action, numeric observations, ``action_masks()`` one flat array).
"""

import gymnasium

from eas.envs.actions import InvalidActionError
from eas.envs.cache import EvalCache, evaluate_children, fingerprint
from eas.envs.evaluators import EvalResult, Evaluator, TrainerEvaluator, as_result, evaluate_batch
from eas.envs.flat import FlatActions, FlatNetTransformEnv, sample_masked
from eas.envs.net_transform import DEFAULT_SCHEDULE, FASHION_START, NetTransformEnv
from eas.envs.objective_evaluator import ObjectivesEvaluator
from eas.envs.observation import sample_legal_action, sample_legal_actions
from eas.envs.rewards import (
    MAX_ACCURACY,
    ConstrainedReward,
    ObjectivesConfig,
    PaperReward,
    make_reward,
    paper_reward,
)
from eas.envs.shrink import ShrinkDistiller
from eas.envs.vector import VectorNetTransformEnv
from eas.morphisms.legal import KINDS

__all__ = [
    "DEFAULT_SCHEDULE",
    "FASHION_START",
    "KINDS",
    "MAX_ACCURACY",
    "EvalCache",
    "EvalResult",
    "Evaluator",
    "FlatActions",
    "FlatNetTransformEnv",
    "ConstrainedReward",
    "InvalidActionError",
    "NetTransformEnv",
    "ObjectivesConfig",
    "ObjectivesEvaluator",
    "PaperReward",
    "ShrinkDistiller",
    "TrainerEvaluator",
    "VectorNetTransformEnv",
    "as_result",
    "evaluate_batch",
    "evaluate_children",
    "fingerprint",
    "make_reward",
    "paper_reward",
    "sample_legal_action",
    "sample_legal_actions",
    "sample_masked",
]

if "eas/NetTransform-v0" not in gymnasium.registry:
    gymnasium.register(
        "eas/NetTransform-v0",
        entry_point="eas.envs.net_transform:NetTransformEnv",
        vector_entry_point="eas.envs.vector:VectorNetTransformEnv",
    )
if "eas/NetTransformFlat-v0" not in gymnasium.registry:
    gymnasium.register("eas/NetTransformFlat-v0", entry_point="eas.envs.flat:FlatNetTransformEnv")

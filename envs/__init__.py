"""Gymnasium environments for architecture search by network transformation.

``from eas import envs`` registers ``"eas/NetTransform-v0"`` (:class:`NetTransformEnv`; its
vector entry point is :class:`VectorNetTransformEnv`, so
``gymnasium.make_vec("eas/NetTransform-v0", num_envs=n, vectorization_mode="vector_entry_point")``
works too), and ``"eas/NetTransformFlat-v0"`` (:class:`~envs.flat.FlatNetTransformEnv`, the
SB3-ready view: one ``Discrete`` action, numeric observations, ``action_masks()`` one flat array).
"""

import gymnasium

from eas._lazy import lazy_exports

_HOMES: dict[str, str] = {
    "InvalidActionError": "eas.envs.actions",
    "EvalCache": "eas.envs.cache",
    "evaluate_children": "eas.envs.cache",
    "fingerprint": "eas.envs.cache",
    "Evaluator": "eas.envs.evaluators",
    "TrainerEvaluator": "eas.envs.evaluators",
    "evaluate_batch": "eas.envs.evaluators",
    "FlatActions": "eas.envs.flat",
    "FlatNetTransformEnv": "eas.envs.flat",
    "sample_masked": "eas.envs.flat",
    "FASHION_START": "eas.envs.net_transform",
    "NetTransformEnv": "eas.envs.net_transform",
    "ObjectivesEvaluator": "eas.envs.objective_evaluator",
    "sample_legal_action": "eas.envs.observation",
    "sample_legal_actions": "eas.envs.observation",
    "EvalResult": "eas.envs.record",
    "as_result": "eas.envs.record",
    "MAX_ACCURACY": "eas.envs.rewards",
    "ConstrainedReward": "eas.envs.rewards",
    "ObjectivesConfig": "eas.envs.rewards",
    "PaperReward": "eas.envs.rewards",
    "make_reward": "eas.envs.rewards",
    "paper_reward": "eas.envs.rewards",
    "DEFAULT_SCHEDULE": "eas.envs.settings",
    "ShrinkDistiller": "eas.envs.shrink",
    "VectorNetTransformEnv": "eas.envs.vector",
    "KINDS": "eas.kinds",
}
"""Public name -> the module it lives in (imported on first use: :mod:`eas._lazy`)."""

__getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals())

__all__ = sorted(_HOMES)

if "eas/NetTransform-v0" not in gymnasium.registry:
    gymnasium.register(
        "eas/NetTransform-v0",
        entry_point="eas.envs.net_transform:NetTransformEnv",
        vector_entry_point="eas.envs.vector:VectorNetTransformEnv",
    )
if "eas/NetTransformFlat-v0" not in gymnasium.registry:
    gymnasium.register("eas/NetTransformFlat-v0", entry_point="eas.envs.flat:FlatNetTransformEnv")

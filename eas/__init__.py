"""eas: efficient neural architecture search by function-preserving network transformation."""

from eas import _startup  # noqa: F401 - first: SIGTERM during start-up (command line)
from eas._lazy import lazy_exports

_HOMES: dict[str, str] = {
    "TABLE1": "eas.arch",
    "Architecture": "eas.arch",
    "SearchSpace": "eas.arch",
    "Tokenizer": "eas.arch",
    "densenet_bc": "eas.arch",
    "load_network": "eas.checkpoint",
    "Data": "eas.data",
    "load_dataset": "eas.data",
    "evaluate": "eas.evaluation",
    "FC": "eas.layers",
    "Conv": "eas.layers",
    "Dense": "eas.layers",
    "Pool": "eas.layers",
    "Skip": "eas.layers",
    "Softmax": "eas.layers",
    "ChildNet": "eas.network",
    "build_network": "eas.network",
    "count_flops": "eas.shapes",
    "count_parameters": "eas.network",
    "infer_shapes": "eas.shapes",
    "TrainConfig": "eas.recipe",
    "TrainResult": "eas.training",
    "final_train": "eas.training",
    "train_child": "eas.training",
}
"""Public name -> the module it lives in (imported on first use: :mod:`eas._lazy`)."""

__getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals())

__version__ = "0.1.0"

__all__ = sorted(_HOMES)

"""eas: efficient neural architecture search by function-preserving network transformation."""

from eas import _startup  # noqa: F401 - first: SIGTERM while torch is imported (command line)
from eas.arch import TABLE1, Architecture, SearchSpace, Tokenizer, densenet_bc
from eas.checkpoint import load_network
from eas.data import Data, load_dataset
from eas.evaluation import evaluate
from eas.layers import FC, Conv, Dense, Pool, Skip, Softmax
from eas.network import ChildNet, build_network, count_flops, count_parameters, infer_shapes
from eas.training import TrainConfig, TrainResult, final_train, train_child

__version__ = "0.1.0"

__all__ = [
    "FC",
    "TABLE1",
    "Architecture",
    "ChildNet",
    "Data",
    "Conv",
    "Dense",
    "Pool",
    "SearchSpace",
    "Skip",
    "Softmax",
    "Tokenizer",
    "TrainConfig",
    "TrainResult",
    "build_network",
    "count_flops",
    "count_parameters",
    "densenet_bc",
    "evaluate",
    "final_train",
    "infer_shapes",
    "load_dataset",
    "load_network",
    "train_child",
]

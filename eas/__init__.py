"""eas: efficient neural architecture search by function-preserving network transformation."""

from eas.arch import (
    FC,
    TABLE1,
    Architecture,
    Conv,
    Dense,
    Pool,
    SearchSpace,
    Skip,
    Softmax,
    Tokenizer,
    densenet_bc,
)
from eas.network import ChildNet, build_network, count_flops, count_parameters, infer_shapes

__version__ = "0.1.0"

__all__ = [
    "FC",
    "TABLE1",
    "Architecture",
    "ChildNet",
    "Conv",
    "Dense",
    "Pool",
    "SearchSpace",
    "Skip",
    "Softmax",
    "Tokenizer",
    "build_network",
    "count_flops",
    "count_parameters",
    "densenet_bc",
    "infer_shapes",
]

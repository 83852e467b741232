"""Function-preserving network transformations (EAS Net2Wider/Net2Deeper, DenseNet
extensions, NASH skip morphisms) and the action masks saying where they apply.

Every transformation is a pure function ``f(net, ...) -> ChildNet``: it returns a
new network whose ``.arch`` is the transformed architecture and which, in eval
mode and without noise, computes the same function as ``net``; ``net`` itself is
never modified. ``narrow`` and ``remove_layer`` shrink a network and are only
approximately function-preserving (distil the child from its parent with
``eas.distill``).
"""

from eas.morphisms.dense_insert import dense_insert
from eas.morphisms.dense_widen import dense_widen
from eas.morphisms.legal import (
    deeper_positions,
    dense_insert_positions,
    skip_candidates,
    widenable_layers,
)
from eas.morphisms.narrow import narrow
from eas.morphisms.net2deeper import net2deeper
from eas.morphisms.net2wider import net2wider
from eas.morphisms.remove_layer import remove_layer
from eas.morphisms.skip import add_skip

__all__ = [
    "add_skip",
    "deeper_positions",
    "dense_insert",
    "dense_insert_positions",
    "dense_widen",
    "net2deeper",
    "narrow",
    "net2wider",
    "remove_layer",
    "skip_candidates",
    "widenable_layers",
]

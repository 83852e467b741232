"""Checks across fields and sections: values each fine alone that make no sense together.

:func:`check_semantics` runs in :func:`eas.config.engine.validate`, after every
section has checked its own fields, and raises
:class:`~eas.config.sections.ConfigError` naming the first bad field:

* a learning rate's floor is not above the rate it anneals from (``child.lr_min``
  against ``child.lr``, ``start.lr`` and ``search.final_lr``; ``hill_climbing.lr_end``
  against ``lr_start``);
* every kernel size given anywhere (``space.kernel_sizes``, an agent's
  ``*kernels`` field such as ``hill_climbing.deeper_kernels``) is odd: a
  Net2Deeper conv keeps the spatial size only with an odd kernel;
* LEMONADE trains no more children per round than it generates (``n_ac <= n_pc``);
* the training set can feed a batch and show every class: ``data.train_subset``
  is at least the number of classes and ``child.batch_size`` at most the
  training images (when they are known before loading).

What needs the loaded data (every class present, at least two classes) is
checked by :func:`check_loaded_data`, before the run folder is created.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any

from eas.config.sections import ConfigError, require
from eas.datasets import DATASET_CLASSES, dataset_key

__all__ = ["check_loaded_data", "check_semantics"]


def _lr_floor(cfg: Any) -> None:
    c = cfg.child
    floor = float(c.lr_min)
    for name, lr in (("child.lr", c.lr), ("start.lr", cfg.start.lr),
                     ("search.final_lr", cfg.search.final_lr)):
        require(lr is None or floor <= float(lr), "child.lr_min",
                f"{c.lr_min:g} is above {name} = {lr:g}: the cosine schedule anneals from the "
                f"learning rate down to lr_min, so lr_min must be <= {lr:g}" if lr is not None
                else "")
    hc = getattr(cfg, "hill_climbing", None)
    if hc is not None and hasattr(hc, "lr_end") and hasattr(hc, "lr_start"):
        require(float(hc.lr_end) <= float(hc.lr_start), "hill_climbing.lr_end",
                f"{hc.lr_end:g} is above hill_climbing.lr_start = {hc.lr_start:g} (SGDR anneals "
                "from lr_start down to lr_end)")


def _odd_kernels(cfg: Any) -> None:
    for section, obj in cfg.sections().items():
        if not is_dataclass(obj):
            continue
        for f in fields(obj):
            if "kernel" not in f.name:
                continue
            values = getattr(obj, f.name)
            values = values if isinstance(values, (list, tuple)) else [values]
            bad = [k for k in values
                   if not (isinstance(k, int) and not isinstance(k, bool) and k >= 1 and k % 2)]
            require(not bad, f"{section}.{f.name}",
                    f"kernel sizes must be odd integers >= 1 (a Net2Deeper conv keeps the "
                    f"spatial size only with an odd kernel), got {list(values)}")


def check_semantics(cfg: Any) -> None:
    """Cross-field checks of a :class:`~eas.config.sections.SearchConfig` (see the module doc)."""
    _lr_floor(cfg)
    _odd_kernels(cfg)
    lem = getattr(cfg, "lemonade", None)
    if lem is not None and hasattr(lem, "n_ac") and hasattr(lem, "n_pc"):
        require(int(lem.n_ac) <= int(lem.n_pc), "lemonade.n_ac",
                f"{lem.n_ac} children per round cannot be picked from {lem.n_pc} candidates "
                f"(lemonade.n_pc); use n_ac <= n_pc")
    key = dataset_key(cfg.data.name)
    classes = DATASET_CLASSES.get(key)
    d, bs = cfg.data, cfg.child.batch_size
    if d.train_subset is not None:
        require(classes is None or d.train_subset >= classes, "data.train_subset",
                f"{d.train_subset} training images cannot show all {classes} classes of "
                f"{d.name}; use at least {classes} (better: many per class)")
        require(bs <= d.train_subset, "child.batch_size",
                f"{bs} is more than the {d.train_subset} training images (data.train_subset); "
                "use a smaller batch")


def check_loaded_data(cfg: Any, data: Any) -> None:
    """The loaded training set fits the search: two classes or more, every class present,
    at least one batch of images. Raises :class:`ConfigError` naming the field."""
    n = int(len(data.train_y))
    classes = int(data.num_classes)
    where = "data.root" if dataset_key(cfg.data.name) == "imagefolder" else "data.name"
    if classes < 2:
        raise ConfigError(where, f"{cfg.data.root or cfg.data.name} has {classes} class; a "
                          "classifier needs at least two")
    present = int(data.train_y.unique().numel())
    if present < classes:
        field = "data.train_subset" if cfg.data.train_subset is not None else where
        raise ConfigError(field, f"the {n} training images hold only {present} of the "
                          f"{classes} classes; every class needs training images (use a larger "
                          "data.train_subset or a smaller data.val_size)")
    require(cfg.child.batch_size <= n, "child.batch_size",
            f"{cfg.child.batch_size} is more than the {n} training images; use a smaller batch")

"""The built-in datasets' names, spellings, shapes and classes: the one home of dataset facts.

Light on purpose (no torch): the configuration checks read these before anything
is loaded; :mod:`eas.data` and :mod:`eas._data_files` load the images.
"""

from __future__ import annotations

__all__ = ["DATASET_ALIASES", "DATASET_CLASSES", "DATASET_CLASS_NAMES", "DATASET_NAMES",
           "DATASET_SHAPES", "dataset_facts", "dataset_key"]

DATASET_NAMES: tuple[str, ...] = (
    "fashion-mnist",
    "mnist",
    "cifar10",
    "cifar100",
    "svhn",
    "imagefolder",
)
"""Every dataset name ``data.dataset`` accepts (after :func:`dataset_key`)."""

DATASET_ALIASES: dict[str, str] = {"fashionmnist": "fashion-mnist"}
"""Other spellings of dataset names (after lower-casing and ``_`` -> ``-``)."""


def dataset_key(name: str) -> str:
    """The canonical spelling of a dataset name: lower case, ``_`` -> ``-``, aliases resolved.

    The one place dataset names are normalised (config checks, loading, facts):

    >>> dataset_key("Fashion_MNIST"), dataset_key("fashionmnist"), dataset_key("cifar10")
    ('fashion-mnist', 'fashion-mnist', 'cifar10')
    """
    key = str(name).strip().lower().replace("_", "-")
    return DATASET_ALIASES.get(key, key)


DATASET_SHAPES: dict[str, tuple[int, int, int]] = {
    "fashion-mnist": (1, 28, 28),
    "mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
    "cifar100": (3, 32, 32),
    "svhn": (3, 32, 32),
}
"""Input shape (C, H, W) of each built-in dataset (imagefolder: known only once loaded)."""

DATASET_CLASSES: dict[str, int] = {
    "fashion-mnist": 10, "mnist": 10, "cifar10": 10, "cifar100": 100, "svhn": 10,
}
"""Number of classes of each built-in dataset (imagefolder: its number of folders)."""

_DIGITS = tuple(str(d) for d in range(10))
DATASET_CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"),
    "mnist": _DIGITS,
    "svhn": _DIGITS,  # label 10 ("0") is stored as 0
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                "truck"),
    "cifar100": tuple("""apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split()),
}
"""Class names of each built-in dataset, by label (imagefolder: its folder names, sorted)."""


def dataset_facts(name: str) -> tuple[tuple[int, int, int], int] | None:
    """``(input_shape, num_classes)`` of a built-in dataset, None when only loading tells
    (``imagefolder``) or the name is unknown."""
    key = dataset_key(name)
    if key not in DATASET_SHAPES:
        return None
    return DATASET_SHAPES[key], DATASET_CLASSES[key]

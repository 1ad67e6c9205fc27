"""Class names for model outputs.

``data/imagenet_classes.txt`` holds the 1000 ImageNet-1k class names, one per line in
class-index order (the short names torchvision ships in ``torchvision/models/_meta.py``,
BSD-3-Clause). Models with another number of classes get ``class_<i>`` names.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

IMAGENET_NUM_CLASSES = 1000


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """The ImageNet-1k class names, index ``i`` at position ``i``."""
    text = resources.files("hyena_serve").joinpath("data/imagenet_classes.txt").read_text(encoding="utf-8")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != IMAGENET_NUM_CLASSES:
        raise RuntimeError(f"imagenet_classes.txt has {len(names)} names, expected {IMAGENET_NUM_CLASSES}")
    return names


def class_names(num_classes: int) -> tuple[str, ...]:
    """Names for a ``num_classes``-way head: ImageNet's for 1000, ``class_<i>`` otherwise."""
    if num_classes == IMAGENET_NUM_CLASSES:
        return imagenet_classes()
    return tuple(f"class_{i}" for i in range(num_classes))


#: Label lists shipped with the package, by the name a manifest uses for them.
NAMED_LABELS = {"imagenet-1k": imagenet_classes}


def named_labels(name: str) -> tuple[str, ...]:
    """A shipped label list by name (``"imagenet-1k"``); ValueError for unknown names."""
    try:
        return NAMED_LABELS[name]()
    except KeyError:
        raise ValueError(f"unknown label list {name!r}; known: {', '.join(sorted(NAMED_LABELS))}") from None

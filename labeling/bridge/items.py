"""Items as arrays: stored images as normalised pixels, given labels as class positions."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import numpy as np

from labeling.bridge.aggregation import label_positions
from labeling.models import Item, Project


def image_arrays(items: Sequence[Item], size: int, channels: int | None = None) -> np.ndarray:
    """Normalised images of ``items`` as float32 ``(n, C, size, size)`` in [0, 1].

    Grayscale projects give one channel, colour projects three; ``channels`` forces it.
    """
    from django.core.files.storage import default_storage
    from PIL import Image

    arrays = []
    for item in items:
        with default_storage.open(cast(str, item.image.name), "rb") as handle, Image.open(handle) as image:
            mode = {1: "L", 3: "RGB"}.get(channels or 0) or ("L" if image.mode == "L" else "RGB")
            resized = image.convert(mode).resize((size, size), Image.Resampling.BOX)
            pixels = np.asarray(resized, dtype=np.float32) / 255.0
        arrays.append(pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1))
    if not arrays:
        return np.zeros((0, channels or 1, size, size), dtype=np.float32)
    return np.stack(arrays)


def labels_array(project: Project, items: Sequence[Item], labels: Mapping[int, int]) -> tuple[np.ndarray, list[int]]:
    """Given labels as an int array over ``items`` (class positions, ``-1`` where
    ``labels``, ``{item_id: label_id}``, has none) and the project's label ids."""
    positions, label_ids = label_positions(project)
    y = np.full(len(items), -1, dtype=np.int64)
    for i, item in enumerate(items):
        if item.pk in labels:
            y[i] = positions[labels[item.pk]]
    return y, label_ids

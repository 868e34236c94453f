"""Trained models in and out of storage, and their predictions of pixels.

PyTorch is imported on first use, never when the bridge is: a web process that serves
no prediction does not pay for it. Uploads become pixels as training reads stored items
(:func:`labeling.bridge.image_arrays`), so a model sees the same pixels either way.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
from django.conf import settings
from PIL import Image

if TYPE_CHECKING:
    from ml.inference import LoadedModel

Pixels: TypeAlias = "np.ndarray"
"""One image as float32 ``(C, size, size)`` in [0, 1]."""


def device_name() -> str:
    """The device a training run here uses: ``cuda`` when there is one, else ``cpu``."""
    from ml.batches import choose_device

    return str(choose_device())


def model_export(state: Mapping[str, Any], config: Mapping[str, Any], classes: Sequence[Any]) -> bytes:
    """A trained model's weights, config and class names as the bytes of a model file."""
    from ml.inference import export_model

    return export_model(state, config, classes)


def model_load(data: bytes, device: str | None = None) -> LoadedModel:
    """A model file's bytes read back, ready to predict."""
    from ml.inference import load_model

    return load_model(data, device=device)


def image_pixels(image: Image.Image, size: int, channels: int) -> Pixels:
    """An upright decoded image as ``(C, size, size)`` float32 in [0, 1]: first bounded to
    the stored copy's longest side, as an imported item is, then as training reads it."""
    side = settings.CROWDLOOP_MAX_IMAGE_SIDE
    if max(image.size) > side:
        image = image.copy()
        image.thumbnail((side, side), Image.Resampling.LANCZOS)
    image = image.convert("L" if channels == 1 else "RGB").resize((size, size), Image.Resampling.BOX)
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def pixels_predict(
    loaded: LoadedModel, images: Sequence[Pixels], *, num_threads: int | None = None
) -> list[tuple[Any, dict[Any, float]]]:
    """Label and probabilities of each of ``images`` under ``loaded``, as JSON-ready
    pairs, in one batch on ``num_threads`` CPU threads."""
    from ml.inference import predict

    X = np.stack(images).astype(np.float32, copy=False)
    labels, probabilities = predict(loaded.model, X, num_threads=num_threads)
    classes = loaded.classes
    return [
        (classes[int(label)], {name: round(float(p), 6) for name, p in zip(classes, row, strict=True)})
        for label, row in zip(labels, probabilities, strict=True)
    ]

"""The demo's arrays: scikit-learn's bundled handwritten digits as PNGs, and gold drawn
at random from them."""
from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from PIL import Image

UPSCALE = 4


def digit_png(values: ArrayLike) -> bytes:
    """An 8x8 array of 0..16 ink values as a dark-on-white grayscale PNG, upscaled."""
    pixels = (255 - np.asarray(values, dtype=np.float64) * (255.0 / 16.0)).round().astype(np.uint8)
    image = Image.fromarray(pixels, mode="L").resize((8 * UPSCALE, 8 * UPSCALE), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def digits_pngs() -> list[tuple[bytes, str]]:
    """Every row of ``load_digits``, in order, as ``(PNG bytes, true label)``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return [(digit_png(digits.images[row]), str(int(digits.target[row]))) for row in range(len(digits.target))]


def per_class_sample(rows: Sequence[tuple[int, int]], per_class: int, seed: int) -> list[tuple[int, int]]:
    """``per_class`` of ``rows``, ``(item_id, label_id)``, drawn at random without
    replacement for each label (all of a label's rows when it has fewer), by label id."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label_id in sorted({label for _, label in rows}):
        ids = [item for item, label in rows if label == label_id]
        chosen += [(int(i), label_id) for i in rng.choice(ids, size=min(per_class, len(ids)), replace=False)]
    return chosen

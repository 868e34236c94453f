"""Images as pixel arrays: the fresh rendering of an image each time it is served, and
the pixel statistics that decoding an import needs."""
from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image

_RESAMPLING = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)
RENDER_KEEP = (0.86, 1.0)  # share of each side a rendering keeps
RENDER_GAIN = (0.9, 1.1)
RENDER_BIAS = 10.0  # brightness shift, at most, in grey levels
RENDER_NOISE = 3.0  # standard deviation of the pixel noise, in grey levels


def image_render(data: bytes, *, rng: random.Random | None = None) -> bytes:
    """A fresh PNG rendering of the normalised image ``data``, for one serve: a small
    random crop scaled back to the original size (a shift of a few pixels), a random
    resampling filter, a slight change of brightness and contrast, pixel noise and a new
    encoding. A person reads it as the original; its bytes (and their SHA-256) differ at
    every serve, so identical files never tell a recurring item apart."""
    rng = rng or random.SystemRandom()
    with Image.open(io.BytesIO(data)) as image:
        image.load()
    width, height = image.size
    crop_w = max(1, round(width * rng.uniform(*RENDER_KEEP)))
    crop_h = max(1, round(height * rng.uniform(*RENDER_KEEP)))
    left, top = rng.randint(0, width - crop_w), rng.randint(0, height - crop_h)
    out = image.resize((width, height), rng.choice(_RESAMPLING), box=(left, top, left + crop_w, top + crop_h))
    pixels = np.asarray(out, dtype=np.float32)
    noise = np.random.default_rng(rng.getrandbits(64)).standard_normal(pixels.shape, dtype=np.float32) * RENDER_NOISE
    pixels = pixels * rng.uniform(*RENDER_GAIN) + rng.uniform(-RENDER_BIAS, RENDER_BIAS) + noise
    rendered = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), mode=out.mode)
    buffer = io.BytesIO()
    rendered.save(buffer, format="PNG", compress_level=rng.randint(1, 3))
    return buffer.getvalue()


def gray_stretched(image: Image.Image) -> Image.Image:
    """A wide grayscale image (16-bit, 32-bit, float) as ``L``, its brightest pixel white."""
    values = np.asarray(image, dtype=np.float64)
    top = values.max() or 1.0
    return Image.fromarray(np.clip(values * (255.0 / top), 0, 255).astype(np.uint8), mode="L")


def palette_is_gray(image: Image.Image) -> bool:
    """Whether every colour of a palette image's palette is a grey."""
    palette = np.asarray(image.getpalette() or [], dtype=np.int32).reshape(-1, 3)
    return bool(len(palette)) and bool((palette == palette[:, :1]).all())

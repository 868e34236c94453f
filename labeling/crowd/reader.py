"""How a simulated person sees a digit: an oracle reader, capped by each person.

A simulated person must read the image they downloaded, never an id or the database.
We do not give them a trained classifier: any classifier good enough to stand in for a
person would have to be trained on handwritten digits, and the only ones at hand are
``load_digits``' 1,797 rows, all of which are either the pool being labeled (rows
0-1399: reading them with a model fitted on them is labeling the pool with its own
labels) or the held-out test set (rows 1400-1796, which must not shape anything). A
font-rendered synthetic reader would misread real handwriting in ways no person does.

So the reader is an *oracle for perception*: it decodes the PNG it was given back to
the 8x8 ink values (the demo renders each digit by exact 4x upscaling), looks that ink
pattern up among scikit-learn's digits and returns the digit it shows, as a person
who can read handwriting would. What it cannot read (anything not a ``load_digits``
rendering, e.g. the synthetic items of the serving benchmark) gives ``None`` and the
person guesses. It never makes mistakes; each person then errs at their own rate
(:mod:`labeling.crowd.people`), so a person's accuracy is exactly what the crowd's
configuration says: capped by construction, not by an accident of a model.

Evaluation stays clean: the crowd is only ever served pool items (the held-out split
is never served), so nothing of rows 1400-1796 reaches a model through the crowd.
"""
import io
from functools import lru_cache

import numpy as np
from PIL import Image, UnidentifiedImageError

DIGIT_SIDE = 8


@lru_cache(maxsize=1)
def _digit_table():
    from sklearn.datasets import load_digits

    digits = load_digits()
    return {
        image.astype(np.uint8).tobytes(): str(int(target)) for image, target in zip(digits.images, digits.target, strict=True)
    }


def ink_values(png):
    """The 8x8 grid of 0..16 ink values a digit PNG shows, or ``None`` when the bytes
    are not an image."""
    try:
        with Image.open(io.BytesIO(png)) as image:
            small = image.convert("L").resize((DIGIT_SIDE, DIGIT_SIDE), Image.Resampling.BOX)
            pixels = np.asarray(small, dtype=np.float64)
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    return np.clip(np.rint(16.0 - pixels * 16.0 / 255.0), 0, 16).astype(np.uint8)


NEAREST_MAX_DISTANCE = 1800.0
"""Squared ink distance up to which a re-rendered tile (cropped, resampled, noised: see
``bridge.image_render``) still reads as its nearest digit. Measured: renderings of the
digits lie within 300 (median) to 1,150 (99th percentile) of their own digit, and read
right 98.8 % of the time; images that are no digit at all lie beyond 2,400."""


@lru_cache(maxsize=1)
def _digit_arrays():
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images.reshape(len(digits.images), -1).astype(np.float32), [str(int(t)) for t in digits.target]


def read_digit(png):
    """The digit (a label name, ``"0"``..``"9"``) a person sees in ``png``, or ``None``:
    the digit it shows exactly, else the nearest digit when the image is a re-rendering
    of one (as every tile the widget serves is)."""
    values = ink_values(png)
    if values is None:
        return None
    exact = _digit_table().get(values.tobytes())
    if exact is not None:
        return exact
    table, labels = _digit_arrays()
    distances = ((table - values.reshape(-1).astype(np.float32)) ** 2).sum(axis=1)
    nearest = int(distances.argmin())
    return labels[nearest] if distances[nearest] <= NEAREST_MAX_DISTANCE else None


# --- Other image sets: an oracle table the benchmark registers ---------------------------------

DESCRIPTOR_SIDE = 12
_registered = {"vectors": None, "labels": []}


def _descriptor(png):
    """What a person takes in at a glance, whatever the framing: the ink's bounding box
    scaled to 12x12, centred and normalised; ``None`` for no image. A served tile is a
    fresh rendering (cropped, shifted, noised), which this undoes well enough: on the
    benchmark's letters a rendering reads as its own class 97-98 % of the time."""
    try:
        with Image.open(io.BytesIO(png)) as image:
            grey = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    ink = grey.max() - grey
    rows, cols = np.nonzero(ink > ink.mean() + ink.std())
    box = (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1) if len(rows) else (0, 0, 32, 32)
    crop = Image.fromarray((ink * 255).astype(np.uint8)).crop(box).resize(
        (DESCRIPTOR_SIDE, DESCRIPTOR_SIDE), Image.Resampling.BOX
    )
    vector = np.asarray(crop, dtype=np.float32).ravel()
    vector -= vector.mean()
    return vector / (np.linalg.norm(vector) + 1e-6)


def images_register(pngs, labels):
    """Teach the oracle an image set other than digits (a benchmark's generated set):
    a person then reads an image as the label of the registered image that looks most
    like it, so that a re-rendered tile still reads (almost always) right."""
    _registered["vectors"] = np.stack([_descriptor(png) for png in pngs])
    _registered["labels"] = list(labels)


def read_label(png):
    """The label a person sees in ``png``: the best-matching registered image's label
    when an image set is registered, else a digit, else ``None`` (the person guesses)."""
    if _registered["vectors"] is None:
        return read_digit(png)
    descriptor = _descriptor(png)
    if descriptor is None:
        return None
    return _registered["labels"][int((_registered["vectors"] @ descriptor).argmax())]

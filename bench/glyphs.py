"""A second image set, unlike digits: 10 lowercase letters rendered in every DejaVu font
on the machine, with random size, rotation, shear, shift, stroke weight, blur, contrast
and noise, as 28x28 grayscale PNGs.

Its classes include mirror images (b, d, p, q) and near twins (c, e, o; g, q), so a
pixel nearest-neighbour is fooled where a CNN is not: a set on which tuning for digits
would not carry over by accident.

``write_folders(root, n_pool, n_holdout, gold_per_class, seed)`` lays it out as a user's
folders: ``pool/`` (unlabeled PNGs with random names), ``gold/<class>/`` (copies of a
few pool images: gold imported after the pool must make those items gold) and
``holdout/<class>/``, and returns ``{file name: label}`` for the pool (the simulated
people's eyes and the measurement, never the loop).
"""
import glob
import io
import secrets
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

CLASSES = list("abcdegopqs")
SIDE = 28


def fonts():
    found = sorted(glob.glob("/usr/share/fonts/truetype/dejavu/*.ttf"))
    if not found:
        raise SystemExit("no DejaVu fonts: apt-get install fonts-dejavu-core")
    return found


def render(label, rng, font_paths):
    """One random rendering of ``label`` as PNG bytes."""
    size = int(rng.integers(18, 27))
    font = ImageFont.truetype(font_paths[int(rng.integers(len(font_paths)))], size)
    canvas = Image.new("L", (2 * SIDE, 2 * SIDE), 0)
    draw = ImageDraw.Draw(canvas)
    box = draw.textbbox((0, 0), label, font=font)
    x = SIDE - (box[0] + box[2]) / 2 + rng.normal(0, 2.0)
    y = SIDE - (box[1] + box[3]) / 2 + rng.normal(0, 2.0)
    draw.text((x, y), label, fill=255, font=font)
    if rng.random() < 0.3:
        canvas = canvas.filter(ImageFilter.MaxFilter(3))
    shear = rng.normal(0, 0.15)
    canvas = canvas.transform(canvas.size, Image.Transform.AFFINE, (1, shear, -shear * SIDE, 0, 1, 0),
                              resample=Image.Resampling.BILINEAR)
    canvas = canvas.rotate(rng.normal(0, 10), resample=Image.Resampling.BILINEAR, center=(SIDE, SIDE))
    canvas = canvas.crop((SIDE // 2, SIDE // 2, SIDE // 2 + SIDE, SIDE // 2 + SIDE))
    canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 0.9)))
    ink = np.asarray(canvas, dtype=np.float32) / 255.0
    background, contrast = rng.uniform(0.75, 1.0), rng.uniform(0.5, 0.9)
    pixels = background - contrast * ink + rng.normal(0, 0.06, ink.shape)
    image = Image.fromarray((np.clip(pixels, 0, 1) * 255).round().astype(np.uint8), mode="L")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_folders(root, *, n_pool=4000, n_holdout=1000, gold_per_class=3, seed=0):
    rng = np.random.default_rng(seed)
    paths = fonts()
    root = Path(root)
    truth = {}
    for sub in ("pool", "gold", "holdout"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n_pool):
        label = CLASSES[i % len(CLASSES)]
        name = f"{secrets.token_hex(8)}.png"
        (root / "pool" / name).write_bytes(render(label, rng, paths))
        truth[name] = label
    # Gold: known images that are also in the pool, as an owner labels a few of their own.
    for label in CLASSES:
        folder = root / "gold" / label
        folder.mkdir(parents=True, exist_ok=True)
        for name in [name for name, known in truth.items() if known == label][:gold_per_class]:
            (folder / name).write_bytes((root / "pool" / name).read_bytes())
    for label in CLASSES:
        folder = root / "holdout" / label
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(n_holdout // len(CLASSES)):
            (folder / f"{label}{j:04d}.png").write_bytes(render(label, rng, paths))
    return truth

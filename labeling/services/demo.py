"""The demo project: scikit-learn's bundled handwritten digits, rendered as PNGs.

Rows 0-1399 of ``load_digits`` are the pool, rows 1400-1796 the held-out test set (the
split published few-label baselines use). Every item's true label is stored as
evaluation truth, apart from gold; a few pool items per class become gold.
"""
import io

import numpy as np
from django.db import transaction
from PIL import Image

from labeling.models import EvaluationTruth, Item, ItemStatus, KnownLabel, KnownLabelSource, Project, Split
from labeling.services.imports import ImportEntry, LabelRole, items_import
from labeling.services.projects import project_create, project_stats_refresh

DEMO_SLUG = "digits"
POOL_SIZE = 1400
GOLD_PER_CLASS = 3
UPSCALE = 4


def digit_png(values):
    """An 8x8 array of 0..16 ink values as a dark-on-white grayscale PNG, upscaled."""
    pixels = (255 - np.asarray(values, dtype=np.float64) * (255.0 / 16.0)).round().astype(np.uint8)
    image = Image.fromarray(pixels, mode="L").resize((8 * UPSCALE, 8 * UPSCALE), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def demo_project_create(*, owner=None, progress=None, gold_per_class=GOLD_PER_CLASS, seed=0):
    """Create (or complete) the digits demo project; safe to run twice."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    project = Project.objects.filter(slug=DEMO_SLUG).first()
    if project is None:
        project = project_create(
            name="Handwritten digits",
            slug=DEMO_SLUG,
            labels=[str(k) for k in range(10)],
            data_kind="image",
            owner=owner,
            description="1,797 real handwritten digits from scikit-learn's load_digits.",
            image_size=8,
        )
    entries = [
        ImportEntry(
            name=f"load_digits[{row}]",
            data=digit_png(digits.images[row]),
            label=str(int(digits.target[row])),
            split=Split.POOL if row < POOL_SIZE else Split.HOLDOUT,
        )
        for row in range(len(digits.target))
    ]
    report = items_import(project, entries, label_role=LabelRole.EVALUATION, progress=progress)
    _gold_choose(project, gold_per_class, seed)
    project_stats_refresh(project)
    return project, report


def _gold_choose(project, per_class, seed):
    """Make ``per_class`` random pool items of each class gold (if none are yet)."""
    if KnownLabel.objects.filter(item__project=project).exists():
        return
    truths = list(
        EvaluationTruth.objects.filter(item__project=project, item__split=Split.POOL)
        .order_by("item_id")
        .values_list("item_id", "label_id")
    )
    rng = np.random.default_rng(seed)
    chosen = []
    for label_id in sorted({label for _, label in truths}):
        ids = [item for item, label in truths if label == label_id]
        chosen += [(int(i), label_id) for i in rng.choice(ids, size=min(per_class, len(ids)), replace=False)]
    with transaction.atomic():
        KnownLabel.objects.bulk_create(
            [KnownLabel(item_id=item, label_id=label, source=KnownLabelSource.GOLD) for item, label in chosen]
        )
        Item.objects.filter(pk__in=[item for item, _ in chosen]).update(status=ItemStatus.LABELED)

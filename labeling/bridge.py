"""The one narrow bridge between rows and ``ml/`` arrays.

Querysets become numpy arrays here and results come back as plain Python values keyed
by database ids. Nothing else in ``labeling/`` touches numpy or torch internals.
"""
import numpy as np

from labeling.models import Answer, KnownLabel, WorkerStatus
from ml.aggregation import make_aggregator
from ml.aggregation.incremental import one_coin_confusion, posterior_from_confusions

DEFAULT_ACCURACY = 0.7
PRIOR_STRENGTH = 4.0


def label_positions(project):
    """``{label_id: position}`` and the class count of a project."""
    ids = list(project.label_classes.order_by("position").values_list("id", flat=True))
    return {label_id: i for i, label_id in enumerate(ids)}, ids


def counted_answers(project, item_ids=None):
    """Answers that count as label votes: not from banned workers, not rejections."""
    query = Answer.objects.filter(item__project=project).without_banned_workers()
    query = query.exclude(verdict=False)
    if item_ids is not None:
        query = query.filter(item_id__in=item_ids)
    return query


def smoothed_accuracy(correct, total, prior=DEFAULT_ACCURACY, strength=PRIOR_STRENGTH):
    """Accuracy on control items with a Beta prior, so that 1/1 is not 100 %."""
    return (correct + prior * strength) / (total + strength)


PSEUDO_PRIOR_WEIGHT = 2.0


def items_posteriors(project, item_ids, skills, class_priors=None, pseudo=None):
    """Cheap path: the posterior of each item from its counted answers, with worker
    parameters fixed. ``skills`` maps worker id to a confusion matrix (K x K list) or an
    accuracy. ``pseudo`` maps item id to a pseudo-label id, which weighs in as a weak
    prior (odds x ``PSEUDO_PRIOR_WEIGHT``), never as a vote. Returns
    ``{item_id: (posterior list, n_answers)}``."""
    positions, label_ids = label_positions(project)
    n_classes = len(label_ids)
    priors = np.full(n_classes, 1.0 / n_classes) if class_priors is None else np.asarray(class_priors, float)
    pseudo = pseudo or {}
    known = dict(KnownLabel.objects.filter(item_id__in=item_ids).values_list("item_id", "label_id"))
    rows = counted_answers(project, item_ids).values_list("item_id", "worker_id", "label_id")
    per_item = {item_id: [] for item_id in item_ids}
    for item_id, worker_id, label_id in rows:
        per_item[item_id].append((worker_id, positions[label_id]))
    result = {}
    for item_id, answers in per_item.items():
        labels = np.array([label for _, label in answers], dtype=np.intp)
        confusions = np.array([_confusion(skills.get(worker), n_classes) for worker, _ in answers]).reshape(
            len(answers), n_classes, n_classes
        )
        known_position = positions[known[item_id]] if item_id in known else -1
        item_priors = priors
        if item_id in pseudo:
            item_priors = priors.copy()
            item_priors[positions[pseudo[item_id]]] *= PSEUDO_PRIOR_WEIGHT
            item_priors /= item_priors.sum()
        posterior = posterior_from_confusions(labels, confusions, item_priors, known_label=known_position)
        result[item_id] = (posterior.tolist(), len(answers))
    return result, label_ids


def _confusion(skill, n_classes):
    if skill is None:
        return one_coin_confusion(DEFAULT_ACCURACY, n_classes)
    if isinstance(skill, (int, float)):
        return one_coin_confusion(min(max(float(skill), 1e-3), 1 - 1e-3), n_classes)
    return np.asarray(skill, dtype=float)


def aggregate_fit(project, method="auto", init=None):
    """Full truth inference over all counted answers of a project.

    Returns a dict with per-item posteriors keyed by item id, per-worker accuracy and
    confusion keyed by worker id, class priors, the method used and its iterations.
    """
    positions, label_ids = label_positions(project)
    n_classes = len(label_ids)
    rows = np.array(
        list(counted_answers(project).order_by("id").values_list("item_id", "worker_id", "label_id")),
        dtype=np.int64,
    ).reshape(-1, 3)
    known_rows = list(KnownLabel.objects.filter(item__project=project).values_list("item_id", "label_id"))
    item_ids = np.unique(np.concatenate([rows[:, 0], np.array([i for i, _ in known_rows], dtype=np.int64)]))
    worker_ids = np.unique(rows[:, 1])
    lookup = np.vectorize(positions.__getitem__, otypes=[np.intp])
    answers = np.column_stack(
        [
            np.searchsorted(item_ids, rows[:, 0]),
            np.searchsorted(worker_ids, rows[:, 1]),
            lookup(rows[:, 2]) if len(rows) else rows[:, 2],
        ]
    ).astype(np.intp)
    known = np.full(len(item_ids), -1, dtype=np.intp)
    for item_id, label_id in known_rows:
        known[np.searchsorted(item_ids, item_id)] = positions[label_id]
    estimator = make_aggregator(method, n_classes)
    estimator.fit(answers, known=known, n_items=len(item_ids), n_workers=len(worker_ids), init=init)
    return {
        "label_ids": label_ids,
        "item_ids": item_ids.tolist(),
        "posteriors": estimator.posteriors_,
        "n_answers": np.bincount(answers[:, 0], minlength=len(item_ids)).tolist() if len(answers) else [0] * len(item_ids),
        "worker_ids": worker_ids.tolist(),
        "skills": np.asarray(estimator.skills_, dtype=float).tolist(),
        "confusions": np.asarray(estimator.confusions_, dtype=float).tolist(),
        "worker_answers": np.bincount(answers[:, 1], minlength=len(worker_ids)).tolist() if len(answers) else [],
        "class_priors": np.asarray(estimator.class_priors_, dtype=float).tolist(),
        "method": estimator.method_,
        "n_iter": int(getattr(estimator, "n_iter_", 0)),
    }


# --- Items as arrays ---------------------------------------------------------------------------


def image_arrays(items, size, channels=None):
    """Normalised images of ``items`` as float32 ``(n, C, size, size)`` in [0, 1].

    Grayscale projects give one channel, colour projects three; ``channels`` forces it.
    """
    from django.core.files.storage import default_storage
    from PIL import Image

    arrays = []
    for item in items:
        with default_storage.open(item.image.name, "rb") as handle, Image.open(handle) as image:
            mode = {1: "L", 3: "RGB"}.get(channels) or ("L" if image.mode == "L" else "RGB")
            image = image.convert(mode).resize((size, size), Image.Resampling.BOX)
            pixels = np.asarray(image, dtype=np.float32) / 255.0
        arrays.append(pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1))
    if not arrays:
        return np.zeros((0, channels or 1, size, size), dtype=np.float32)
    return np.stack(arrays)


def image_bytes_array(data, size, channels):
    """One uploaded image as ``(1, C, size, size)``, decoded the way imports decode."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("L" if channels == 1 else "RGB").resize((size, size), Image.Resampling.BOX)
        pixels = np.asarray(image, dtype=np.float32) / 255.0
    return (pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1))[None]

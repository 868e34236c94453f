"""What a training run fits: the model that suits the amount of labels.

1. Cheap candidates (label spreading, kNN, logistic regression over the round's
   features) are cross-validated on the same folds of the human-verified labels; the
   best labels every item. No label-count gate: two classes with labels are enough.
2. Once there are ``CROWDLOOP_CNN_MIN_LABELS_PER_CLASS`` labels per class, a CNN
   competes: trained on the human labels outside a fixed validation share plus the best
   candidate's labels for the whole pool (distillation), with that candidate refitted
   without the validation labels. The two are compared on the same validation items.

Whether the fitted model becomes the project's active one is decided by
:func:`labeling.services.modeling.promotion_decide`.
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage

from labeling.bridge.features import representation
from labeling.bridge.items import image_arrays
from labeling.models import DataKind, EvaluationTruth, Item, Prediction, Project, Split, TrainingRun

if TYPE_CHECKING:
    from ml.model_selection import CandidateSelector
    from ml.training import FitResult

logger = logging.getLogger(__name__)

OnEpoch = Callable[[int, int, dict[str, Any]], None]

MIN_COMPARED = 5
"""Fewer shared out-of-sample items than this and two runs are compared on their own
estimates instead (each with its interval); fewer validation labels than this and no CNN
competes."""


def in_validation(item_id: int, share: float) -> bool:
    """Whether a human-labeled item is in the fixed validation share: by a hash of its
    id, so that it stays there from run to run."""
    digest = hashlib.sha256(f"val:{item_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < share


def model_fit(
    run: TrainingRun, project: Project, app: dict[str, Any], config: dict[str, Any], label_ids: Sequence[int],
    human: Mapping[int, int], *, checkpoint_dir: Path, transfer_source: TrainingRun | None = None,
    on_epoch: OnEpoch | None = None, progress: Callable[[str], None] | None = None,
) -> tuple[list[Item], np.ndarray, np.ndarray, dict[str, Any], FitResult | None]:
    """Fit ``run``'s model on the human labels ``human`` (``{item_id: class position}``,
    frozen with the run). Returns ``(items, proba, confidence, metrics, cnn)``: every
    item of the project, the chosen model's class probabilities for each, the calibrated
    probability that its top class is right (learned out of sample), the metrics to
    record, and the CNN's fit result when the CNN won (else ``None``). A CNN keeps its
    resumable checkpoints in ``checkpoint_dir`` and starts from the weights of
    ``transfer_source``, a run already allowed to the requester, when given."""
    progress = progress or (lambda message: None)
    items = list(Item.objects.filter(project=project).only("id", "image", "text", "split").order_by("id"))
    y = _human_positions(items, human)
    progress("features")
    X, chosen, _ = representation(project, items, y)
    progress("cross-validating candidates")
    pinned = app.get("model", "auto")
    selector = _candidates_fit(X, y, len(label_ids), pinned)
    counts = np.bincount(y[y >= 0], minlength=len(label_ids))
    metrics = _candidates_metrics(selector, items, chosen, counts)
    proba, confidence, cnn = selector.proba_, selector.confidence_, None
    if pinned == "cnn" or (pinned == "auto" and _cnn_due(project, counts)):
        progress("training a CNN against the best candidate")
        outcome = _cnn_compete(
            run, project, app, config, items, X, y, selector.best_, on_epoch, checkpoint_dir, transfer_source
        )
        if outcome is None and pinned == "cnn":  # (on auto, the next run simply tries again)
            reason = (
                f"no CNN: fewer than {MIN_COMPARED} human labels fall in the validation share "
                f"({app['val_share']:.0%}) or the rest hold one class; {selector.best_} is the model"
            )
            metrics["cnn"] = {"skipped": reason, "human_labels": int(counts.sum())}
            progress(reason)
        elif outcome is not None:
            won = _cnn_record(metrics, outcome, items, y, counts, pinned)
            if won is not None:
                proba, confidence, cnn = won
    metrics["accuracy"] = metrics["estimate"]["accuracy"]
    metrics.update(_holdout_accuracy(project, items, proba, label_ids))
    return items, proba, confidence, metrics, cnn


def _human_positions(items: Sequence[Item], human: Mapping[int, int]) -> np.ndarray:
    """The human labels ``human`` (``{item_id: class position}``) as an int array over
    ``items``, ``-1`` where an item has none."""
    index = {item.pk: i for i, item in enumerate(items)}
    y = np.full(len(items), -1, dtype=np.int64)
    for item_id, position in human.items():
        if item_id in index:
            y[index[item_id]] = position
    return y


def _candidates_fit(X: np.ndarray, y: np.ndarray, n_classes: int, pinned: str) -> CandidateSelector:
    """The cheap candidates cross-validated on the human labels: only ``pinned`` when the
    project pins one of them."""
    from ml.model_selection import CANDIDATES, CandidateSelector

    candidates = (pinned,) if pinned in CANDIDATES else CANDIDATES
    return CandidateSelector(candidates=candidates, random_state=0).fit(X, y, n_classes=n_classes)


def _candidates_metrics(
    selector: CandidateSelector, items: list[Item], chosen: str, counts: np.ndarray
) -> dict[str, Any]:
    """The metrics of the best candidate, its rivals' scores and its out-of-fold labels."""
    from ml.model_selection import wilson_interval

    best = selector.scores_[selector.best_]
    return {
        "kind": selector.best_,
        "representation": chosen,
        "candidates": {name: {"accuracy": s.accuracy, "n": s.n} for name, s in selector.scores_.items()},
        "estimate": _estimate(best.correct, best.n, "cross-validation", wilson_interval),
        "baseline": float(counts.max() / counts.sum()),
        "human_labels": int(counts.sum()),
        "oof": {str(items[i].pk): int(selector.oof_[i]) for i in np.flatnonzero(selector.oof_ >= 0)},
    }


def _cnn_record(
    metrics: dict[str, Any], outcome: tuple[FitResult, np.ndarray, np.ndarray, int, int], items: list[Item],
    y: np.ndarray, counts: np.ndarray, pinned: str,
) -> tuple[np.ndarray, np.ndarray, FitResult] | None:
    """Record the CNN's duel with the best candidate in ``metrics``; when the CNN wins (or
    is pinned), make it the model there and return its ``(proba, confidence, fit
    result)``, else ``None``."""
    from ml.model_selection import calibrated_confidence, wilson_interval

    cnn_result, cnn_proba, val, cnn_hits, teacher_hits = outcome
    metrics["cnn"] = {"val_n": len(val), "accuracy": cnn_hits / len(val), "teacher_accuracy": teacher_hits / len(val),
                      "human_labels": int(counts.sum()), "best_epoch": cnn_result.best_epoch}
    if not (cnn_hits >= teacher_hits or pinned == "cnn"):
        return None
    confidence = calibrated_confidence(cnn_proba[val], y[val], cnn_proba.max(axis=1), cnn_hits / len(val))
    confidence[y >= 0] = 1.0
    metrics["kind"] = "cnn"
    metrics["estimate"] = _estimate(cnn_hits, len(val), "validation", wilson_interval)
    metrics["oof"] = {str(items[i].pk): int(cnn_proba[i].argmax()) for i in val}
    return cnn_proba, confidence, cnn_result


def _estimate(
    correct: float, n: int, method: str, wilson_interval: Callable[[float, int], tuple[float, float]]
) -> dict[str, Any]:
    low, high = wilson_interval(correct, n)
    return {"accuracy": correct / n if n else None, "n": n, "low": low, "high": high, "method": method}


def _cnn_due(project: Project, counts: np.ndarray) -> bool:
    """A CNN competes on image projects with enough labels per class, once the labels grew
    by ``CROWDLOOP_CNN_GROWTH`` since its last attempt (a CNN run costs minutes on a CPU)."""
    if project.data_kind != DataKind.IMAGE:
        return False
    if counts.sum() < settings.CROWDLOOP_CNN_MIN_LABELS_PER_CLASS * len(counts) or (counts < 2).any():
        return False
    last = (
        TrainingRun.objects.filter(project=project, metrics__has_key="cnn").order_by("-created_at")
        .values_list("metrics", flat=True).first()
    )
    if last is None:
        return True
    return counts.sum() >= (1 + settings.CROWDLOOP_CNN_GROWTH) * last["cnn"]["human_labels"]


def _cnn_compete(
    run: TrainingRun, project: Project, app: dict[str, Any], config: dict[str, Any], items: list[Item],
    X: np.ndarray, y: np.ndarray, teacher: str, on_epoch: OnEpoch | None, checkpoint_dir: Path,
    transfer_source: TrainingRun | None,
) -> tuple[FitResult, np.ndarray, np.ndarray, int, int] | None:
    """Distil the best candidate into a CNN and score both on the validation labels.

    The teacher is refitted without the validation labels, so neither sees them. Returns
    ``(fit result, CNN probabilities for every item, validation indices, CNN hits,
    teacher hits)``, or ``None`` with too few validation labels."""
    from ml.model_selection import CandidateSelector
    from ml.training import fit

    labeled = np.flatnonzero(y >= 0)
    val = np.array([i for i in labeled if in_validation(items[i].pk, app["val_share"])], dtype=np.int64)
    if len(val) < MIN_COMPARED or len(np.unique(y[np.setdiff1d(labeled, val)])) < 2:
        return None
    y_train = y.copy()
    y_train[val] = -1
    teacher_fit = CandidateSelector(candidates=(teacher,), random_state=0).fit(X, y_train, n_classes=config["n_classes"])
    teacher_proba = teacher_fit.proba_
    pool = np.array([item.split == Split.POOL for item in items])
    rows = np.flatnonzero(pool & ((y_train >= 0) | (y < 0)))
    targets = np.where(y_train[rows] >= 0, y_train[rows], teacher_proba[rows].argmax(axis=1))
    weights = np.where(y_train[rows] >= 0, 1.0, teacher_proba[rows].max(axis=1)).astype(np.float32)
    rng = np.random.default_rng(0)
    early = rows[(y_train[rows] < 0) & (rng.random(len(rows)) < 0.1)]  # teacher-labeled items watch overfitting
    train = np.setdiff1d(rows, early)
    size, channels = project.image_size, _channels(items)
    pixels = image_arrays(items, size, channels)
    position = {i: k for k, i in enumerate(rows)}
    init_state = None
    if transfer_source is not None:
        from ml.inference import load_model

        with transfer_source.artifact.open("rb") as handle:
            init_state = load_model(handle.read(), device="cpu").model.state_dict()
    X_watch, y_watch = (pixels[early], targets[[position[i] for i in early]]) if len(early) else (None, None)
    result = fit(
        pixels[train], targets[[position[i] for i in train]], weights[[position[i] for i in train]], X_watch, y_watch, config,
        checkpoint_dir=checkpoint_dir, resume=True, init_state=init_state,
        on_epoch=on_epoch,
    )
    from ml.inference import predict

    _, proba = predict(result.model, pixels)
    cnn_hits = int((proba[val].argmax(axis=1) == y[val]).sum())
    teacher_hits = int((teacher_proba[val].argmax(axis=1) == y[val]).sum())
    logger.info("run %s: CNN %d/%d against %s %d/%d on validation", run.pk, cnn_hits, len(val), teacher,
                teacher_hits, len(val))
    return result, proba, val, cnn_hits, teacher_hits


def _channels(items: Sequence[Item]) -> int:
    from PIL import Image

    name = next((item.image.name for item in items if item.image.name), None)
    if name is None:
        return 1
    with default_storage.open(name, "rb") as handle, Image.open(handle) as image:
        return 1 if image.mode == "L" else 3


def _holdout_accuracy(
    project: Project, items: Sequence[Item], proba: np.ndarray, label_ids: Sequence[int]
) -> dict[str, Any]:
    """Accuracy on the held-out split's labels, where the owner imported one."""
    truth = dict(EvaluationTruth.objects.filter(item__project=project, item__split=Split.HOLDOUT).values_list("item_id", "label_id"))
    hits = [label_ids[int(proba[i].argmax())] == truth[item.pk] for i, item in enumerate(items) if item.pk in truth]
    if not hits:
        return {}
    return {"eval_accuracy": float(np.mean(hits)), "eval_n": len(hits)}


def predictions_rows(
    run: TrainingRun, items: Sequence[Item], proba: np.ndarray, confidence: np.ndarray, label_ids: Sequence[int]
) -> list[Prediction]:
    """Prediction rows of every item: the top class of ``proba`` with its calibrated
    ``confidence``."""
    predicted = proba.argmax(axis=1)
    return [
        Prediction(item=item, run=run, label_id=label_ids[int(p)], confidence=float(min(max(c, 0.0), 1.0)))
        for item, p, c in zip(items, predicted, confidence, strict=True)
    ]

"""Which given labels a model disagrees with most confidently: confident learning.

Northcutt, Jiang and Chuang, "Confident learning: estimating uncertainty in dataset
labels" (JAIR 2021), on out-of-fold predicted probabilities:

1. Per-class thresholds: ``t_j`` is the mean probability of class ``j`` over the items
   *given* ``j`` (the model's average self-confidence on that class).
2. The confident joint ``C[i, j]`` counts the items given ``i`` whose probability of
   ``j`` reaches ``t_j`` (the highest such ``j`` when several do), calibrated so that
   each row sums to the number of items given ``i``.
3. ``prune_by_noise_rate``: for every off-diagonal cell ``(i, j)``, the ``C[i, j]``
   items given ``i`` with the largest margin ``p_j - p_i`` are suspects. The estimated
   number of errors, not a fixed threshold, decides how many are flagged.

Suspects are ranked by self-confidence (``p_given``) or by the normalised margin
``(p_given - max_{j != given} p_j + 1) / 2``; low means suspect.

Items with the label ``-1`` (unlabeled) or with no out-of-fold probability (an all-zero
row: never held out) are never scored or flagged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy import ndarray

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

UNLABELED = -1
RANKINGS = ("self_confidence", "normalized_margin")


def _checked(labels: ArrayLike, pred_probs: ArrayLike) -> tuple[ndarray, ndarray]:
    labels = np.asarray(labels, dtype=np.int64)
    pred_probs = np.asarray(pred_probs, dtype=np.float64)
    if pred_probs.ndim != 2 or len(pred_probs) != len(labels):
        raise ValueError(f"pred_probs must be 2-D with one row per label, got {pred_probs.shape} and {labels.shape}")
    if labels.max(initial=-1) >= pred_probs.shape[1]:
        raise ValueError(f"a label ({labels.max()}) is outside the {pred_probs.shape[1]} classes of pred_probs")
    return labels, pred_probs


def scorable(labels: ndarray, pred_probs: ndarray) -> np.ndarray:
    """Boolean mask of the items that can be scored: labeled, with a probability row."""
    labels, pred_probs = _checked(labels, pred_probs)
    return (labels >= 0) & (pred_probs.sum(axis=1) > 0)


def label_quality_scores(labels: ArrayLike, pred_probs: ArrayLike, method: str = "self_confidence") -> np.ndarray:
    """Quality of each given label in ``[0, 1]``; low means suspect, ``nan`` unscorable.

    Parameters
    ----------
    labels : array-like of shape (n_items,)
        Given labels, ``-1`` for unlabeled.
    pred_probs : array-like of shape (n_items, n_classes)
        Out-of-fold class probabilities (rows of zeros: not predicted).
    method : {"self_confidence", "normalized_margin"}
    """
    if method not in RANKINGS:
        raise ValueError(f"unknown method {method!r}; choose from {RANKINGS}")
    labels, pred_probs = _checked(labels, pred_probs)
    ok = scorable(labels, pred_probs)
    scores = np.full(len(labels), np.nan)
    rows = np.flatnonzero(ok)
    probs = pred_probs[rows] / pred_probs[rows].sum(axis=1, keepdims=True)
    given = probs[np.arange(len(rows)), labels[rows]]
    if method == "self_confidence":
        scores[rows] = given
    else:
        others = probs.copy()
        others[np.arange(len(rows)), labels[rows]] = -np.inf
        scores[rows] = (given - others.max(axis=1) + 1.0) / 2.0
    return scores


def per_class_thresholds(labels: ndarray, pred_probs: ndarray) -> np.ndarray:
    """``t_j``: mean probability of class ``j`` over the scorable items given ``j``
    (``inf`` for a class nobody was given, so that it never claims an item)."""
    labels, pred_probs = _checked(labels, pred_probs)
    ok = scorable(labels, pred_probs)
    n_classes = pred_probs.shape[1]
    thresholds = np.full(n_classes, np.inf)
    for j in range(n_classes):
        members = ok & (labels == j)
        if members.any():
            thresholds[j] = pred_probs[members, j].mean()
    return thresholds


def confident_joint(labels: ndarray, pred_probs: ndarray, calibrate: bool = True) -> tuple[ndarray, ndarray]:
    """The confident joint of given (rows) and likely true (columns) labels.

    Returns ``(joint, true_guess)``: the ``(n_classes, n_classes)`` counts, calibrated
    so that row ``i`` sums to the number of scorable items given ``i`` when
    ``calibrate``; and each item's confidently counted true class (``-1`` where no class
    reached its threshold or the item is not scorable).
    """
    labels, pred_probs = _checked(labels, pred_probs)
    ok = scorable(labels, pred_probs)
    n_classes = pred_probs.shape[1]
    thresholds = per_class_thresholds(labels, pred_probs)
    above = (pred_probs >= thresholds[None, :] - 1e-12) & ok[:, None]
    masked = np.where(above, pred_probs, -np.inf)
    true_guess = np.where(above.any(axis=1), masked.argmax(axis=1), UNLABELED)
    joint = np.zeros((n_classes, n_classes))
    counted = true_guess >= 0
    np.add.at(joint, (labels[counted], true_guess[counted]), 1.0)
    if calibrate:
        given = np.bincount(labels[ok], minlength=n_classes).astype(float)
        row = joint.sum(axis=1)
        joint = np.divide(joint * given[:, None], row[:, None], out=np.zeros_like(joint), where=row[:, None] > 0)
    return joint, true_guess


def find_label_issues(labels: ArrayLike, pred_probs: ArrayLike, *, filter_by: str = "prune_by_noise_rate",
                      rank_by: str = "normalized_margin", min_per_class: int = 1) -> tuple[ndarray, ndarray]:
    """Suspect labels, most suspect first.

    Parameters
    ----------
    labels, pred_probs : as in :func:`label_quality_scores`.
    filter_by : {"prune_by_noise_rate", "confident_joint", "both"}
        ``prune_by_noise_rate``: per off-diagonal cell ``(i, j)`` of the calibrated
        confident joint, the ``round(C[i, j])`` items given ``i`` with the largest
        ``p_j - p_i``. ``confident_joint``: the items counted off the diagonal. ``both``:
        items in both sets (higher precision).
    rank_by : {"self_confidence", "normalized_margin"}
    min_per_class : int
        Items kept per given class whatever the joint says (never prune a class empty).

    Returns
    -------
    suspects : ndarray of int
        Indices of the suspect items, ordered by ``rank_by`` (lowest quality first).
    suggested : ndarray of int of shape (n_items,)
        Each item's most likely other class (the confident joint's column, else the
        top class), ``-1`` where not scorable.
    """
    if filter_by not in ("prune_by_noise_rate", "confident_joint", "both"):
        raise ValueError(f"unknown filter_by {filter_by!r}")
    labels, pred_probs = _checked(labels, pred_probs)
    ok = scorable(labels, pred_probs)
    joint, true_guess = confident_joint(labels, pred_probs)
    by_joint = ok & (true_guess >= 0) & (true_guess != labels)
    by_rate = _prune_by_noise_rate(labels, pred_probs, joint, ok, min_per_class)
    mask = {"prune_by_noise_rate": by_rate, "confident_joint": by_joint, "both": by_rate & by_joint}[filter_by]
    scores = label_quality_scores(labels, pred_probs, rank_by)
    suspects = np.flatnonzero(mask)
    suspects = suspects[np.argsort(scores[suspects], kind="stable")]
    others = np.where(np.arange(pred_probs.shape[1])[None, :] == labels[:, None], -np.inf, pred_probs)
    suggested = np.where(by_joint, true_guess, others.argmax(axis=1))
    suggested = np.where(ok, suggested, UNLABELED)
    return suspects, suggested


def _prune_by_noise_rate(
    labels: ndarray, pred_probs: ndarray, joint: ndarray, ok: ndarray, min_per_class: int
) -> ndarray:
    n_classes = pred_probs.shape[1]
    mask = np.zeros(len(labels), dtype=bool)
    for i in range(n_classes):
        members = np.flatnonzero(ok & (labels == i))
        budget = max(0, len(members) - min_per_class)
        for j in np.argsort(-joint[i]):
            n_prune = int(round(joint[i, j]))
            if j == i or n_prune <= 0 or budget <= 0:
                continue
            free = members[~mask[members]]
            margin = pred_probs[free, j] - pred_probs[free, i]
            take = free[np.argsort(-margin, kind="stable")[: min(n_prune, budget)]]
            take = take[pred_probs[take, j] > pred_probs[take, i]]  # only where the model prefers j
            mask[take] = True
            budget -= len(take)
    return mask


def estimated_noise_rate(labels: ndarray, pred_probs: ndarray) -> float:
    """Share of the scorable labels the calibrated confident joint puts off its diagonal."""
    joint, _ = confident_joint(labels, pred_probs)
    total = joint.sum()
    return float((total - np.trace(joint)) / total) if total else 0.0

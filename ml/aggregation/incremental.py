"""The cheap path: one item's posterior from its answers with worker parameters fixed.

Used after every new answer, between full EM runs; equals the E-step of a full fit
for that item (see :meth:`BaseAggregator.update_item`) when given the fitted
confusions. Stateless, so the caller may keep worker parameters wherever it likes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy import ndarray

from ._base import one_coin_confusion

if TYPE_CHECKING:
    from collections.abc import Iterable

    from numpy.typing import ArrayLike


def posterior_from_confusions(
    labels: ArrayLike, confusions: ArrayLike, class_priors: ArrayLike, known_label: int = -1
) -> ndarray:
    """Posterior over the true class of one item.

    Parameters
    ----------
    labels : array-like of int, shape (m,)
        The label each of the ``m`` answers gave.
    confusions : array-like of float, shape (m, K, K)
        Each answering worker's confusion matrix, rows = true class, rows sum to 1.
    class_priors : array-like of float, shape (K,)
    known_label : int, default=-1
        A clamped label (gold or settled) gives a one-hot posterior.

    Returns
    -------
    ndarray of shape (K,)
    """
    priors = np.asarray(class_priors, dtype=float)
    n_classes = priors.shape[0]
    if known_label != -1:
        if not 0 <= known_label < n_classes:
            raise ValueError(f"known_label must be -1 or in [0, {n_classes}), got {known_label}")
        posterior = np.zeros(n_classes)
        posterior[known_label] = 1.0
        return posterior
    labels = np.asarray(labels, dtype=np.intp).ravel()
    confusions = np.asarray(confusions, dtype=float).reshape(labels.size, n_classes, n_classes)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must be in [0, {n_classes}), got {labels.tolist()}")
    scores = np.log(np.clip(priors, 1e-12, None))
    if labels.size:
        scores = scores + np.log(np.clip(confusions[np.arange(labels.size), :, labels], 1e-12, None)).sum(axis=0)
    scores = np.exp(scores - scores.max())
    return scores / scores.sum()


def binary_accuracy(accuracy: float, n_classes: int) -> float:
    """How often a worker with K-way ``accuracy`` answers a yes/no question ("is this a
    7?", a grid tile) right: chance level (``1 / n_classes``) maps to a coin flip and a
    perfect worker to 1."""
    if n_classes < 2:
        return 1.0
    chance = 1.0 / n_classes
    skill = (float(accuracy) - chance) / (1.0 - chance)
    return float(np.clip(0.5 + 0.5 * skill, 0.5, 1.0 - 1e-3))


def posterior_from_evidence(
    class_priors: ArrayLike,
    *,
    votes: Iterable[tuple[int, ArrayLike]] = (),
    verdicts: Iterable[tuple[int, bool, float]] = (),
    known_label: int = -1,
) -> ndarray:
    """Posterior over one item's true class from every kind of answer.

    Parameters
    ----------
    class_priors : array-like of float, shape (K,)
        The item's prior: project class priors, possibly times a model's calibrated
        belief about this item (a machine reading counts as evidence, as reCAPTCHA's
        OCR did).
    votes : sequence of (label, confusion)
        A K-way answer ``label`` from a worker with confusion matrix ``confusion``
        (K x K, rows = true class).
    verdicts : sequence of (label, said_yes, accuracy)
        A yes/no answer about ``label``: a verify question, or a grid tile selected
        (yes) or left unselected (no). ``accuracy`` is the worker's probability of
        answering a yes/no question right (see :func:`binary_accuracy`). A "no" lowers
        the label's probability and leaves the others' ratios as they were.
    known_label : int, default=-1
        A clamped label (gold or settled) gives a one-hot posterior.

    Returns
    -------
    ndarray of shape (K,)
    """
    priors = np.asarray(class_priors, dtype=float)
    n_classes = priors.shape[0]
    if known_label != -1:
        return posterior_from_confusions([], np.zeros((0, n_classes, n_classes)), priors, known_label)
    scores = np.log(np.clip(priors, 1e-12, None))
    for label, confusion in votes:
        if not 0 <= label < n_classes:
            raise ValueError(f"labels must be in [0, {n_classes}), got {label}")
        scores = scores + np.log(np.clip(np.asarray(confusion, dtype=float)[:, label], 1e-12, None))
    for label, said_yes, accuracy in verdicts:
        if not 0 <= label < n_classes:
            raise ValueError(f"labels must be in [0, {n_classes}), got {label}")
        accuracy = float(np.clip(accuracy, 1e-3, 1 - 1e-3))
        likelihood = np.full(n_classes, 1.0 - accuracy if said_yes else accuracy)
        likelihood[label] = accuracy if said_yes else 1.0 - accuracy
        scores = scores + np.log(likelihood)
    scores = np.exp(scores - scores.max())
    return scores / scores.sum()


def settle_chance(posterior: ArrayLike, accuracy: float, threshold: float) -> float:
    """Probability that one more K-way answer, from a worker right with probability
    ``accuracy`` (wrong uniformly otherwise), brings the item's top posterior to
    ``threshold``: the value of asking this item again rather than starting another."""
    probs = np.asarray(posterior, dtype=float)
    confusion = one_coin_confusion(float(np.clip(accuracy, 1e-3, 1 - 1e-3)), probs.shape[0])
    answer_proba = probs @ confusion
    chance = 0.0
    for label in range(probs.shape[0]):
        after = probs * confusion[:, label]
        if after.max() / after.sum() >= threshold:
            chance += answer_proba[label]
    return float(chance)

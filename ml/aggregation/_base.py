"""Shared plumbing for truth inference: input checks, fitted attributes, one-item updates.

Answers are an int array of shape ``(n_answers, 3)`` with columns ``item``, ``worker``,
``label`` (0-based). ``known`` holds a clamped label per item or ``-1`` (unknown).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
from numpy import ndarray
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Self

    from numpy.typing import ArrayLike


UNKNOWN = -1

Params = tuple[Any, ...]
"""An aggregator's parameters between EM steps (confusions or skills, class priors, ...)."""

Init: TypeAlias = "BaseAggregator | Mapping[str, ArrayLike]"
"""A fitted aggregator, or a mapping of its parameters, to start EM from."""


class Answers:
    """Validated answers of one fit, with the per-item bookkeeping every method needs.

    Build it with :func:`check_answers`; the arrays are read-only by convention.
    """

    __slots__ = (
        "has_info",
        "items",
        "known",
        "known_idx",
        "known_lab",
        "labels",
        "n_classes",
        "n_items",
        "n_per_item",
        "n_workers",
        "weights",
        "workers",
    )

    def __init__(
        self,
        items: ndarray,
        workers: ndarray,
        labels: ndarray,
        n_items: int,
        n_workers: int,
        n_classes: int,
        known: ndarray,
        weights: ndarray | None = None,
    ) -> None:
        self.items = items
        self.workers = workers
        self.labels = labels
        self.n_items = n_items
        self.n_workers = n_workers
        self.n_classes = n_classes
        self.known = known
        self.weights = np.ones(items.size) if weights is None else weights
        self.known_idx = np.flatnonzero(known >= 0)
        self.known_lab = known[self.known_idx]
        self.n_per_item = np.bincount(items, minlength=n_items)
        self.has_info = (self.n_per_item > 0) | (known >= 0)

    @property
    def n_answers(self) -> int:
        return self.items.size


def _as_int_array(values: ArrayLike, name: str) -> ndarray:
    arr = np.asarray(values)
    if arr.size == 0:
        return arr.astype(np.intp)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"{name} must hold integer indices, got non-integral values")
        return arr.astype(np.intp)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an integer array, got dtype {arr.dtype}")
    return arr.astype(np.intp, copy=False)


def check_n_classes(n_classes: int) -> int:
    """Return ``n_classes`` as an int, or raise ValueError when it is not an int >= 2."""
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    return int(n_classes)


def check_answers(
    answers: ArrayLike,
    n_classes: int,
    known: ArrayLike | None = None,
    n_items: int | None = None,
    n_workers: int | None = None,
    weights: ArrayLike | None = None,
) -> Answers:
    """Validate an answers array and return an :class:`Answers`.

    Parameters
    ----------
    answers : array-like of int, shape (n_answers, 3)
        Columns ``item``, ``worker``, ``label``; all 0-based. An empty array is allowed.
    n_classes : int
        Number of classes; every label must be in ``[0, n_classes)``.
    known : array-like of int, shape (n_items,), optional
        Clamped label per item or ``-1``.
    n_items, n_workers : int, optional
        Default to the largest index seen plus one (``len(known)`` for items when given).
    weights : array-like of float, shape (n_answers,), optional
        Each answer's weight in ``[0, 1]`` (default 1): how much evidence it carries.

    Returns
    -------
    Answers

    Raises
    ------
    ValueError
        On a wrong shape, a non-integer dtype, a negative index, a label outside
        ``[0, n_classes)``, an index beyond ``n_items``/``n_workers`` or a bad ``known``.
    """
    n_classes = check_n_classes(n_classes)
    arr = _as_int_array(answers, "answers")
    if arr.size == 0:
        arr = arr.reshape(0, 3)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(
            f"answers must have shape (n_answers, 3) with columns item, worker, label; got shape {arr.shape}"
        )
    if arr.size and arr.min() < 0:
        column = ("item", "worker", "label")[int(np.argmin(arr.min(axis=0)))]
        raise ValueError(
            f"answers hold a negative {column} index; item, worker and label must be >= 0 "
            "(-1 marks unknown only in `known`)"
        )
    items = np.ascontiguousarray(arr[:, 0])
    workers = np.ascontiguousarray(arr[:, 1])
    labels = np.ascontiguousarray(arr[:, 2])
    if labels.size and labels.max() >= n_classes:
        raise ValueError(
            f"answers hold label {labels.max()} but n_classes={n_classes}; labels must be in [0, n_classes)"
        )

    if known is not None:
        known = _as_int_array(known, "known").ravel()
    seen_items = int(items.max()) + 1 if items.size else 0
    if n_items is None:
        n_items = max(seen_items, known.size if known is not None else 0)
    n_items = int(n_items)
    if n_items < seen_items:
        raise ValueError(f"n_items={n_items} but answers refer to item {seen_items - 1}")
    seen_workers = int(workers.max()) + 1 if workers.size else 0
    n_workers = seen_workers if n_workers is None else int(n_workers)
    if n_workers < seen_workers:
        raise ValueError(f"n_workers={n_workers} but answers refer to worker {seen_workers - 1}")

    if known is None:
        known = np.full(n_items, UNKNOWN, dtype=np.intp)
    else:
        if known.size != n_items:
            raise ValueError(f"known must have length n_items={n_items}, got {known.size}")
        bad = (known < UNKNOWN) | (known >= n_classes)
        if bad.any():
            raise ValueError(
                f"known holds {known[bad][0]}; entries must be -1 (unknown) or a label in [0, {n_classes})"
            )
    return Answers(items, workers, labels, n_items, n_workers, n_classes, known, _check_weights(weights, items.size))


def _check_weights(weights: ArrayLike | None, n_answers: int) -> ndarray | None:
    if weights is None:
        return None
    checked = np.asarray(weights, dtype=float).ravel()
    if checked.size != n_answers:
        raise ValueError(f"weights must have one entry per answer ({n_answers}), got {checked.size}")
    if checked.size and not (np.all(np.isfinite(checked)) and checked.min() >= 0.0 and checked.max() <= 1.0):
        raise ValueError("weights must be finite and in [0, 1]")
    return checked


def softmax_rows(scores: ndarray) -> ndarray:
    """Normalise log-scores row-wise in place; return the row log-normalisers.

    The maximum is taken column by column and the sum with ``einsum``: with few classes
    and many rows both are several times faster than ``max(axis=1)``/``sum(axis=1)``.
    """
    top = scores[:, 0].copy()
    for k in range(1, scores.shape[1]):
        np.maximum(top, scores[:, k], out=top)
    scores -= top[:, None]
    np.exp(scores, out=scores)
    total = np.einsum("ij->i", scores)
    scores *= (1.0 / total)[:, None]
    return np.log(total) + top


def clamp(posteriors: ndarray, data: Answers) -> None:
    """Make the posterior of every known item one-hot on its known label, in place."""
    if data.known_idx.size:
        posteriors[data.known_idx] = 0.0
        posteriors[data.known_idx, data.known_lab] = 1.0


def one_coin_confusion(skills: ArrayLike, n_classes: int) -> ndarray:
    """Confusion matrix of a worker right with probability ``skills`` and wrong uniformly
    otherwise: ``(K, K)`` for one accuracy, ``(n_workers, K, K)`` for an array of them."""
    skills = np.asarray(skills, dtype=float)
    off = (1.0 - skills) / (n_classes - 1)
    conf = np.broadcast_to(off[..., None, None], skills.shape + (n_classes, n_classes)).copy()
    diag = np.arange(n_classes)
    conf[..., diag, diag] = skills[..., None]
    return conf


def vote_counts(data: Answers) -> ndarray:
    """Votes per item and class, shape ``(n_items, n_classes)``, as floats: each answer
    counts its weight."""
    flat = data.items * data.n_classes + data.labels
    counts = np.bincount(flat, weights=data.weights, minlength=data.n_items * data.n_classes)
    return counts.reshape(data.n_items, data.n_classes).astype(float)


def vote_shares(data: Answers) -> ndarray:
    """Fraction of each item's answers per class; rows of items without answers are 0."""
    votes = vote_counts(data)
    totals = votes.sum(axis=1, keepdims=True)
    return np.divide(votes, totals, out=votes, where=totals > 0)


def class_log_prior(class_totals: ndarray) -> ndarray:
    """Log class priors from (expected) class totals, with one pseudo-count per class."""
    return np.log((class_totals + 1.0) / (class_totals.sum() + class_totals.size))


def shrunk_accuracies(correct: ndarray, n_answered: ndarray, strength: float) -> tuple[ndarray, float]:
    """Worker accuracies shrunk toward the pooled accuracy with ``strength`` pseudo-answers.

    Returns ``(accuracies, pooled)``; both lie strictly inside (0, 1).
    """
    pooled = (correct.sum() + 1.0) / (n_answered.sum() + 2.0)
    return (correct + strength * pooled) / (n_answered + strength), pooled


def resize_workers(values: ndarray, n_workers: int, fill: float | ndarray) -> ndarray:
    """Truncate or pad a per-worker array (first axis) to ``n_workers``, padding with ``fill``."""
    if values.shape[0] >= n_workers:
        return values[:n_workers].copy()
    pad = np.broadcast_to(fill, (n_workers - values.shape[0],) + values.shape[1:])
    return np.concatenate([values, pad])


class BaseAggregator(BaseEstimator):
    """Common contract of the truth-inference estimators.

    Subclasses implement ``_fit(data, init)``, which sets ``posteriors_`` (unclamped
    items with no answers may hold anything), ``class_priors_``, ``skills_``,
    ``confusions_``, ``n_iter_`` and the private log-parameters used by
    :meth:`update_item`: ``_log_confusions`` ``(n_workers, K, K)``,
    ``_prior_log_confusion`` ``(K, K)`` for workers unseen during fit, and
    ``_log_class_priors`` ``(K,)``.
    """

    method_name: str | None = None

    def fit(
        self,
        answers: ArrayLike,
        known: ArrayLike | None = None,
        n_items: int | None = None,
        n_workers: int | None = None,
        init: Init | None = None,
        weights: ArrayLike | None = None,
    ) -> Self:
        """Infer the posterior over true labels of every item.

        Parameters
        ----------
        answers : array-like of int, shape (n_answers, 3)
            Columns ``item``, ``worker``, ``label``, all 0-based.
        known : array-like of int, shape (n_items,), optional
            Clamped label per item (gold, or settled by an admin) or ``-1``. Known items
            get a one-hot posterior and calibrate the workers who answered them.
        n_items, n_workers : int, optional
            Default to the largest index in ``answers`` plus one.
        init : estimator or dict, optional
            Warm start: a fitted estimator of the same class, or its parameters.
        weights : array-like of float, shape (n_answers,), optional
            Evidence weight of each answer in ``[0, 1]`` (default 1). An answer's
            log-likelihood counts ``weight`` times, in the posteriors and in the worker
            parameters (a weighted likelihood, as ``sample_weight`` in scikit-learn): an
            answer of weight 0 changes nothing.

        Returns
        -------
        self
        """
        data = check_answers(answers, self.n_classes, known, n_items, n_workers, weights)
        self._fit(data, init)
        self._finish(data)
        return self

    def _finish(self, data: Answers) -> None:
        no_info = ~data.has_info
        self.posteriors_[no_info] = self.class_priors_
        self.n_answers_ = data.n_per_item
        self.labels_ = self._argmax_labels(data)
        self.labels_[no_info] = UNKNOWN
        self.labels_[data.known_idx] = data.known_lab
        self.confidence_ = self.posteriors_.max(axis=1)
        self.method_ = self.method_name
        self.n_workers_ = data.n_workers

    def _argmax_labels(self, data: Answers) -> ndarray:
        return self.posteriors_.argmax(axis=1)

    def _check_fitted(self) -> None:
        if not hasattr(self, "posteriors_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit first")

    def update_item(
        self, item_answers_workers: ArrayLike, item_answers_labels: ArrayLike, known_label: int = UNKNOWN
    ) -> ndarray:
        """Posterior of one item from its answers, with the fitted worker parameters fixed.

        Touches nothing on the estimator; workers unseen during ``fit`` get the prior
        skill. Equals the E-step of a full fit for that item.

        Parameters
        ----------
        item_answers_workers : array-like of int, shape (m,)
        item_answers_labels : array-like of int, shape (m,)
        known_label : int, default=-1
            Clamped label, or ``-1``.

        Returns
        -------
        ndarray of shape (n_classes,)
        """
        self._check_fitted()
        n_classes = self.n_classes
        workers = np.asarray(item_answers_workers, dtype=np.intp).ravel()
        labels = np.asarray(item_answers_labels, dtype=np.intp).ravel()
        if workers.shape != labels.shape:
            raise ValueError(f"got {workers.size} workers but {labels.size} labels; pass one per answer")
        if known_label != UNKNOWN:
            if not 0 <= known_label < n_classes:
                raise ValueError(f"known_label must be -1 or in [0, {n_classes}), got {known_label}")
            posterior = np.zeros(n_classes)
            posterior[known_label] = 1.0
            return posterior
        if workers.size == 0:
            return self.class_priors_.copy()
        if workers.min() < 0 or labels.min() < 0 or labels.max() >= n_classes:
            raise ValueError(
                f"workers must be >= 0 and labels in [0, {n_classes}); "
                f"got workers {workers.tolist()}, labels {labels.tolist()}"
            )
        scores = self._item_scores(workers, labels)
        scores = np.exp(scores - scores.max())
        return scores / scores.sum()

    def _item_scores(self, workers: ndarray, labels: ndarray) -> ndarray:
        log_conf = self._log_confusions
        scores = self._log_class_priors.copy()
        if workers.max() < log_conf.shape[0]:
            scores += log_conf[workers, :, labels].sum(axis=0)
        else:
            seen = workers < log_conf.shape[0]
            scores += log_conf[workers[seen], :, labels[seen]].sum(axis=0)
            scores += self._prior_log_confusion[:, labels[~seen]].sum(axis=1)
        return scores

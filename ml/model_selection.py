"""Models that fit the amount of labels.

With a few dozen human labels a CNN overfits, while a nearest-neighbour vote, a linear
model or label spreading over good features already does well. Which one wins depends
on the data set and on how many labels there are, so nothing is assumed: every
candidate is cross-validated on the same stratified folds of the human labels, and the
best one labels the pool.

* ``knn`` -- distance-weighted k nearest labeled neighbours.
* ``logreg`` -- multinomial logistic regression.
* ``spreading`` -- label spreading over a kNN graph of all items (Zhou et al., 2003):
  transductive, so unlabeled items shape the decision boundary. Every fold is solved in
  one conjugate-gradient run (one column per class and fold).

Scores come with a Wilson interval, so that ten validation items are never read as a
precise figure (see :func:`wilson_interval`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state

from ml.cluster import knn_graph
from ml.propagation import knn_affinity, spread_labels

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from numpy.typing import ArrayLike
    from scipy.sparse import csr_matrix

    from ml._typing import RandomStateLike

logger = logging.getLogger(__name__)

UNLABELED = -1
CANDIDATES = ("spreading", "knn", "logreg")


def wilson_interval(correct: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion ``correct / n``; ``(0, 1)`` when ``n`` is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Score:
    """Out-of-fold accuracy of one candidate: ``correct`` of ``n`` labeled items."""

    name: str
    correct: int
    n: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.correct, self.n)


def stratified_folds(y: ArrayLike, n_folds: int, random_state: RandomStateLike = None) -> np.ndarray:
    """Fold id (``0 .. n_folds - 1``) of every labeled item, ``-1`` elsewhere.

    Items are dealt to folds class by class in random order, so every fold sees every
    class it can. A class with a single label is never held out (``-1``): hiding it
    would test a class with no label at all.
    """
    y = np.asarray(y)
    rng = check_random_state(random_state)
    folds = np.full(len(y), -1, dtype=np.int64)
    offset = 0
    for c in np.unique(y[y >= 0]):
        members = rng.permutation(np.flatnonzero(y == c))
        if len(members) < 2:
            continue
        folds[members] = (offset + np.arange(len(members))) % n_folds
        offset += len(members)
    return folds


def _knn_proba(X_train: np.ndarray, y_train: np.ndarray, X_query: np.ndarray, n_classes: int,
               n_neighbors: int) -> np.ndarray:
    from sklearn.neighbors import KNeighborsClassifier

    k = max(1, min(n_neighbors, len(y_train)))
    model = KNeighborsClassifier(n_neighbors=k, weights="distance").fit(X_train, y_train)
    return _full_proba(model.predict_proba(X_query), model.classes_, n_classes)


def _logreg_proba(X_train: np.ndarray, y_train: np.ndarray, X_query: np.ndarray, n_classes: int,
                  _n_neighbors: int) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y_train)) < 2:
        proba = np.zeros((len(X_query), n_classes))
        proba[:, int(y_train[0])] = 1.0
        return proba
    model = LogisticRegression(C=1.0, max_iter=500).fit(X_train, y_train)
    return _full_proba(model.predict_proba(X_query), model.classes_, n_classes)


def _full_proba(proba: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    full = np.zeros((len(proba), n_classes))
    full[:, np.asarray(classes, dtype=np.int64)] = proba
    return full


INDUCTIVE: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray, int, int], np.ndarray]] = {
    "knn": _knn_proba,
    "logreg": _logreg_proba,
}
MIN_CALIBRATION = 10


def _normalised(F: np.ndarray) -> np.ndarray:
    F = np.maximum(F, 0)
    total = F.sum(axis=1, keepdims=True)
    return np.divide(F, total, out=np.full_like(F, 1.0 / F.shape[1]), where=total > 0)


def calibrated_confidence(held_proba: np.ndarray, held_y: np.ndarray, top: np.ndarray, fallback: float) -> np.ndarray:
    """Probability of being right for top probabilities ``top``, learned from held-out
    items (class probabilities ``held_proba``, true classes ``held_y``) by isotonic
    regression; ``fallback`` everywhere when fewer than ``MIN_CALIBRATION`` are held out."""
    from sklearn.isotonic import IsotonicRegression

    if len(held_y) < MIN_CALIBRATION:
        return np.full(len(top), float(fallback))
    right = (held_proba.argmax(axis=1) == held_y).astype(float)
    curve = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(held_proba.max(axis=1), right)
    return np.clip(curve.predict(top), 0.0, 1.0)


class CandidateSelector(BaseEstimator):
    """Cross-validate cheap candidates on the human labels; label the pool with the best.

    Parameters
    ----------
    candidates : sequence of str, default=CANDIDATES
        Names among ``"spreading"``, ``"knn"``, ``"logreg"``.
    n_folds : int, default=5
        Folds of the stratified cross-validation (fewer when the labels are fewer).
    n_neighbors : int, default=10
        Neighbours of the kNN graph (spreading) and of the kNN vote (at most 5 there).
    alpha : float, default=0.9
        Label spreading's share of a node's score that comes from its neighbours.
    random_state : int, RandomState instance or None

    Attributes
    ----------
    scores_ : dict of str to Score
        Out-of-fold accuracy of every candidate, on the same folds.
    best_ : str
        The candidate with the most out-of-fold hits (ties: the earlier in ``candidates``).
    proba_ : ndarray of shape (n_items, n_classes)
        The best candidate, refitted on all labels, over every item.
    oof_ : ndarray of shape (n_items,)
        The best candidate's out-of-fold prediction of each held-out labeled item,
        ``-1`` for items never held out.
    oof_proba_ : ndarray of shape (n_items, n_classes)
        The best candidate's out-of-fold class probabilities (rows of zeros for items
        never held out): what a label-noise audit scores.
    confidence_ : ndarray of shape (n_items,)
        Calibrated probability that ``predict()`` is right: the best candidate's top
        probability mapped through an isotonic fit of out-of-fold top probability
        against being right (with fewer than ``MIN_CALIBRATION`` held-out items, its
        out-of-fold accuracy for every item). 1 for labeled items.
    """

    def __init__(
        self,
        candidates: Sequence[str] = CANDIDATES,
        n_folds: int = 5,
        n_neighbors: int = 10,
        alpha: float = 0.9,
        random_state: RandomStateLike = None,
    ) -> None:
        self.candidates = candidates
        self.n_folds = n_folds
        self.n_neighbors = n_neighbors
        self.alpha = alpha
        self.random_state = random_state

    def fit(self, X: ArrayLike, y: ArrayLike, *, n_classes: int | None = None) -> Self:
        X = np.ascontiguousarray(X, dtype=np.float32)
        y = np.asarray(y, dtype=np.int64)
        if X.ndim != 2 or len(X) != len(y):
            raise ValueError(f"X must be 2-D with one row per label, got {X.shape} and {y.shape}")
        unknown = [name for name in self.candidates if name not in ("spreading", *INDUCTIVE)]
        if unknown or not self.candidates:
            raise ValueError(f"unknown candidates {unknown}; choose from {CANDIDATES}")
        labeled = np.flatnonzero(y >= 0)
        if len(np.unique(y[labeled])) < 2:
            raise ValueError("at least two classes need human labels")
        self.n_classes_ = int(n_classes or y.max() + 1)
        rng = check_random_state(self.random_state)
        counts = np.bincount(y[labeled], minlength=self.n_classes_)
        n_folds = int(max(2, min(self.n_folds, counts[counts > 1].max() if (counts > 1).any() else 2)))
        folds = stratified_folds(y, n_folds, rng)
        self.folds_ = folds
        W = None
        if "spreading" in self.candidates:
            graph = knn_graph(X, min(self.n_neighbors, len(X) - 1), random_state=rng)
            W = knn_affinity(graph)
        oof: dict[str, np.ndarray] = {}
        for name in self.candidates:
            oof[name] = self._out_of_fold(name, X, y, folds, n_folds, W)
        held = folds >= 0
        self.scores_ = {
            name: Score(name, int((top[held].argmax(axis=1) == y[held]).sum()), int(held.sum()))
            for name, top in oof.items()
        }
        self.best_ = max(self.candidates, key=lambda name: (self.scores_[name].correct, -self.candidates.index(name)))
        self.oof_ = np.where(held, oof[self.best_].argmax(axis=1), UNLABELED)
        self.oof_proba_ = np.where(held[:, None], oof[self.best_], 0.0)
        self.proba_ = self._fit_all(self.best_, X, y, W)
        self.confidence_ = calibrated_confidence(
            oof[self.best_][held], y[held], self.proba_.max(axis=1), self.scores_[self.best_].accuracy
        )
        self.confidence_[labeled] = 1.0
        logger.info("candidates: %s; best %s", {k: round(s.accuracy, 3) for k, s in self.scores_.items()}, self.best_)
        return self

    def _out_of_fold(
        self, name: str, X: np.ndarray, y: np.ndarray, folds: np.ndarray, n_folds: int, W: csr_matrix | None
    ) -> np.ndarray:
        """Out-of-fold class probabilities of every held-out item (zeros elsewhere)."""
        pred = np.zeros((len(y), self.n_classes_))
        if name == "spreading":
            seeds = np.zeros((len(y), self.n_classes_ * n_folds))
            for f in range(n_folds):
                train = (y >= 0) & (folds != f)
                seeds[np.flatnonzero(train), y[train] + f * self.n_classes_] = 1.0
            F, _ = spread_labels(W, seeds, alpha=self.alpha)
            for f in range(n_folds):
                rows = np.flatnonzero(folds == f)
                pred[rows] = _normalised(F[rows, f * self.n_classes_ : (f + 1) * self.n_classes_])
            return pred
        for f in range(n_folds):
            train, test = np.flatnonzero((y >= 0) & (folds != f)), np.flatnonzero(folds == f)
            if len(test) and len(train):
                pred[test] = INDUCTIVE[name](X[train], y[train], X[test], self.n_classes_, min(5, self.n_neighbors))
        return pred

    def _fit_all(self, name: str, X: np.ndarray, y: np.ndarray, W: csr_matrix | None) -> np.ndarray:
        labeled = np.flatnonzero(y >= 0)
        if name == "spreading":
            seeds = np.zeros((len(y), self.n_classes_))
            seeds[labeled, y[labeled]] = 1.0
            F, _ = spread_labels(W, seeds, alpha=self.alpha)
            proba = _normalised(F)
            proba[labeled] = seeds[labeled]
            return proba
        return INDUCTIVE[name](X[labeled], y[labeled], X, self.n_classes_, min(5, self.n_neighbors))

    def predict(self) -> np.ndarray:
        """The best candidate's class for every item (after :meth:`fit`)."""
        return self.proba_.argmax(axis=1)

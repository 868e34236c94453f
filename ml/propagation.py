"""Pseudo-labels: spread known labels over a kNN graph, then accept only what is calibrated.

:class:`PseudoLabeler` turns a few human labels (gold answers and worker consensus;
``-1`` is unlabeled) into a label and a confidence for every item, and marks the
pseudo-labels that can be accepted at a chosen precision.

How it works
------------
1. A kNN graph of the features (:func:`ml.cluster.knn_graph`) is symmetrised into an
   affinity ``W`` (:func:`knn_affinity`).
2. Label spreading (Zhou et al., 2004) solves ``(I - alpha S) F = Y`` with
   ``S = D^-1/2 W D^-1/2``, by conjugate gradients on the sparse matrix
   (:func:`spread_labels`): memory and time per iteration are linear in the number of
   edges, so it runs on a million items. Each class's mass is divided by its number of
   labels, so a class with more labels does not swallow its neighbours; a label's
   ``sample_weight`` scales its own seed.
   ``method="cluster"`` instead gives each item the label mix of its cluster's seeds.
3. Calibration by cross-fitting: the labeled items are split into folds; each fold is
   hidden in turn, labels are spread from the others, and the predictions for the hidden
   items show how confidence relates to correctness. Both propagators are linear in the
   seeds, so all folds are solved at once as extra right-hand-side columns, and the full
   solution is their sum: cross-fitting costs one wider solve, not ``cv`` more.
4. The records give a calibration curve: a logistic fit of correctness on confidence
   and reach (how much label mass arrives), both with non-negative effect, with a prior
   that chance-level confidence is right by chance only. A class whose held-out records
   show more errors than the curve expects gets its error rates scaled up. For each
   class the threshold is the lowest calibrated probability at which the mean predicted
   precision of the accepted unlabeled items of that class still meets
   ``precision_target``; a fold that holds a class's only label is not held out.

Limits: held-out labels tell about regions that have labels. A region with no label at
all that borrows a wrong label from afar can only show up through its low reach, so with
few labels chosen at random the achieved precision can fall short of the target; labels
chosen for coverage (``ml.active``) avoid that, and make the calibration pessimistic
instead (a hidden cluster representative leaves its cluster unlabeled).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
from numpy import ndarray
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state

from ml.cluster import check_features, fit_clusters, knn_graph

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Self

    from numpy.typing import ArrayLike
    from scipy.sparse import csr_matrix

    from ml._typing import RandomStateLike

logger = logging.getLogger(__name__)

UNLABELED = -1


def check_partial_labels(y: ArrayLike, n_items: int) -> ndarray:
    """Validate a label vector where ``-1`` marks unlabeled items; return it as int64.

    Raises
    ------
    ValueError
        On a wrong shape, NaN, non-integer values, labels below ``-1``, or no labeled item.
    """
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n_items:
        raise ValueError(f"y must have shape ({n_items},), one label per item, got {y.shape}")
    if y.dtype.kind == "f":
        if np.isnan(y).any():
            raise ValueError("y contains NaN; mark unlabeled items with -1")
        if not np.array_equal(y, np.round(y)):
            raise ValueError("y must hold integer class labels (-1 for unlabeled)")
    elif y.dtype.kind not in "iub":
        raise ValueError(f"y must hold integer class labels (-1 for unlabeled), got {y.dtype}")
    y = y.astype(np.int64)
    if (y < UNLABELED).any():
        raise ValueError("class labels must be non-negative; -1 marks unlabeled items")
    if not (y != UNLABELED).any():
        raise ValueError("y has no labeled item (all -1); at least one label is needed")
    return y


def knn_affinity(graph: csr_matrix) -> csr_matrix:
    """Symmetric 0/1 affinity of a kNN graph: ``i ~ j`` when either lists the other.

    Parameters
    ----------
    graph : sparse matrix of shape (n_items, n_items)
        Directed neighbour lists, e.g. from :func:`ml.cluster.knn_graph`.

    Returns
    -------
    W : scipy.sparse.csr_matrix, float32, zero diagonal
    """
    if not sp.issparse(graph) or graph.shape[0] != graph.shape[1]:
        raise ValueError("graph must be a square scipy.sparse matrix")
    A = sp.csr_matrix(graph, dtype=np.float32, copy=True)
    A.data[:] = 1.0
    A.setdiag(0)
    A.eliminate_zeros()
    W = A.maximum(A.T).tocsr()
    W.sort_indices()
    return W


def _normalized_operator(W: csr_matrix) -> csr_matrix:
    degree = np.asarray(W.sum(axis=1)).ravel()
    inv_sqrt = 1.0 / np.sqrt(np.where(degree > 0, degree, 1.0))
    S = sp.diags(inv_sqrt.astype(W.dtype)) @ W @ sp.diags(inv_sqrt.astype(W.dtype))
    return S.tocsr()


def _locality_order(W: csr_matrix) -> ndarray:
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    return np.asarray(reverse_cuthill_mckee(W, symmetric_mode=True), dtype=np.int64)


def spread_labels(W: Any, B: ArrayLike, *, alpha: float = 0.9, tol: float = 1e-4, max_iter: int = 200,
                  reorder: str | bool = "auto") -> tuple[ndarray, int]:
    """Solve ``(I - alpha S) F = (1 - alpha) B`` for every column of ``B``.

    Conjugate gradients, each column with its own step sizes; the matrix is symmetric
    positive definite for ``0 <= alpha < 1``, so CG converges in about
    ``sqrt((1 + alpha) / (1 - alpha))`` times ``log(1 / tol)`` iterations.

    Parameters
    ----------
    W : sparse matrix of shape (n_items, n_items)
        Symmetric non-negative affinity, e.g. :func:`knn_affinity`.
    B : ndarray of shape (n_items, n_columns)
        Seed mass (one column per class, or per class and fold).
    alpha : float in [0, 1), default=0.9
        Share of a node's score that comes from its neighbours.
    tol : float, default=1e-4
        Relative residual at which a column counts as solved.
    max_iter : int, default=200
    reorder : bool or "auto", default="auto"
        Renumber the nodes (reverse Cuthill-McKee) so neighbours sit close in memory;
        makes each sparse product several times faster on large graphs. "auto" does it
        above 50,000 nodes.

    Returns
    -------
    F : ndarray of shape (n_items, n_columns)
    n_iter : int
    """
    if not 0 <= alpha < 1:
        raise ValueError(f"alpha must be in [0, 1), got {alpha}")
    n = W.shape[0]
    seeds = np.asarray(B)
    if seeds.ndim != 2 or seeds.shape[0] != n:
        raise ValueError(f"B must have shape ({n}, n_columns), got {seeds.shape}")
    dtype = np.float64 if n * seeds.shape[1] <= 5_000_000 else np.float32
    W = sp.csr_matrix(W, dtype=dtype)
    order = None
    if reorder is True or (reorder == "auto" and n > 50_000):
        order = _locality_order(W)
        W = W[order][:, order].tocsr()
        seeds = seeds[order]
    S = _normalized_operator(W)
    rhs: ndarray = np.ascontiguousarray((1 - alpha) * seeds, dtype=dtype)
    F = np.zeros_like(rhs)
    R = rhs.copy()
    P = R.copy()
    rs = np.einsum("ij,ij->j", R, R)
    stop = (tol ** 2) * np.maximum(rs, np.finfo(dtype).tiny)
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        AP = S @ P
        AP *= -alpha
        AP += P
        pap = np.einsum("ij,ij->j", P, AP)
        step = np.divide(rs, pap, out=np.zeros_like(rs), where=pap > 0)
        F += P * step
        R -= AP * step
        rs_new = np.einsum("ij,ij->j", R, R)
        if (rs_new <= stop).all():
            break
        beta = np.divide(rs_new, rs, out=np.zeros_like(rs), where=rs > 0)
        P *= beta
        P += R
        rs = rs_new
    else:
        logger.warning("label spreading stopped after max_iter=%d before reaching tol=%g",
                       max_iter, tol)
    if order is not None:
        unordered = np.empty_like(F)
        unordered[order] = F
        F = unordered
    return F, n_iter


def cluster_then_label(cluster_labels: ArrayLike, B: ndarray) -> ndarray:
    """Give every item the summed seed mass of its cluster (columns of ``B``).

    Parameters
    ----------
    cluster_labels : ndarray of shape (n_items,)
    B : ndarray of shape (n_items, n_columns)

    Returns
    -------
    F : ndarray of shape (n_items, n_columns)
    """
    ids, inverse = np.unique(np.asarray(cluster_labels), return_inverse=True)
    sums = np.zeros((len(ids), B.shape[1]))
    np.add.at(sums, inverse, B)
    return sums[inverse]


def _logit(p: ndarray) -> ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def _calibration_features(confidence: ndarray, reach: ndarray) -> ndarray:
    return np.column_stack([_logit(confidence), np.log(np.maximum(reach, 1e-12))])


class _ReliabilityCurve:
    """Probability that a pseudo-label is right, given its confidence and reach.

    A logistic fit of correctness on ``logit(confidence)`` and ``log(reach)`` (how much
    label mass arrives at the item) over the held-out records: three parameters, so a few
    dozen records with a handful of errors suffice. Reach matters because an item in a
    region without labels can still look confident, borrowing a label from afar; its low
    reach gives it away. Both effects are constrained to be non-negative (a feature
    whose fitted effect is negative is dropped). Two prior pseudo-records, at chance-level
    confidence and the lowest reach seen, say such an item is right by chance only; they
    keep the fit defined when every record is right.
    """

    def __init__(
        self,
        confidence: ndarray,
        reach: ndarray,
        correct: ndarray,
        weight: ndarray,
        n_classes: int,
        *,
        max_bins: int = 10,
        min_bin_size: int = 10,
    ) -> None:
        from sklearn.linear_model import LogisticRegression

        chance = 1.0 / max(n_classes, 2)
        floor = float(reach.min()) if len(reach) else 1.0
        F = np.vstack(
            [
                _calibration_features(confidence, reach),
                _calibration_features(np.array([chance] * 2), np.array([floor] * 2)),
            ]
        )
        t = np.concatenate([correct, [1.0, 0.0]]).astype(int)
        w = np.concatenate([weight, [chance, 1 - chance]])
        self.accuracy = float(np.average(correct, weights=weight))
        self.mean, self.scale = F.mean(axis=0), F.std(axis=0) + 1e-9
        Z = (F - self.mean) / self.scale
        self.features = [0, 1]
        while self.features:
            model = LogisticRegression(C=1.0).fit(Z[:, self.features], t, sample_weight=w)
            if (model.coef_[0] > 0).all():
                break
            self.features = [f for f, c in zip(self.features, model.coef_[0]) if c > 0]
        self.model = model if self.features else None
        order = np.argsort(confidence, kind="stable")
        n_bins = int(np.clip(len(order) // min_bin_size, 1, max_bins))
        fitted = self(confidence, reach)
        self.table = []
        for idx in np.array_split(order, n_bins):
            self.table.append(
                {
                    "confidence_low": float(confidence[idx].min()),
                    "confidence_high": float(confidence[idx].max()),
                    "n": len(idx),
                    "accuracy": float(np.average(correct[idx], weights=weight[idx])),
                    "calibrated": float(np.average(fitted[idx], weights=weight[idx])),
                }
            )

    def __call__(self, confidence: ndarray, reach: ndarray) -> ndarray:
        confidence = np.asarray(confidence, dtype=np.float64)
        if self.model is None:
            return np.full(confidence.shape, self.accuracy)
        Z = (_calibration_features(confidence, np.asarray(reach)) - self.mean) / self.scale
        return self.model.predict_proba(Z[:, self.features])[:, 1]


class PseudoLabeler(BaseEstimator):
    """Spread human labels to unlabeled items and accept those meeting a precision target.

    Parameters
    ----------
    n_neighbors : int, default=7
        Neighbours per item in the kNN graph.
    alpha : float in [0, 1), default=0.9
        Label spreading's propagation weight (higher reaches further from the seeds;
        0.9 ranks right and wrong pseudo-labels better than 0.99 on digits and needs
        about three times fewer iterations).
    precision_target : float in (0, 1], default=0.97
        Wanted precision of the accepted pseudo-labels, per class.
    method : {"spreading", "cluster"}, default="spreading"
        ``"spreading"``: label spreading on the kNN graph. ``"cluster"``: each item takes
        the label mix of the labeled items in its cluster (cluster-then-label).
    cv : int, default=10
        Folds of the cross-fitting that calibrates confidence; each fold hides a tenth
        of the labels, close to the final situation where none is hidden.
    n_repeats : int, default=3
        Cross-fitting repeats with new folds, while fewer than
        ``max_calibration_records`` records have been gathered.
    max_calibration_records : int, default=1000
        Held-out predictions to gather; with many labels only some folds are solved, so
        calibration costs a few extra right-hand sides, not ``cv`` of them.
    graph_method : {"auto", "exact", "ivf"}, default="auto"
        Passed to :func:`ml.cluster.knn_graph`.
    tol : float, default=1e-4
        Relative residual of the conjugate-gradient solve.
    max_iter : int, default=300
    min_labels_per_class : int, default=5
        A class with fewer human labels accepts no pseudo-label: held out a few at a
        time, so few labels cannot show whether the precision target is met (on digits,
        with 3 labels per class, accepted pseudo-labels were 90-93 % right against a
        97 % target).
    random_state : int, RandomState instance or None
        Folds of the cross-fitting, and the clustering when one is needed.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    labels_ : ndarray of shape (n_items,)
        Human label where given, else the spread label; ``-1`` only for items that no
        label reaches (a graph component without labeled items).
    confidence_ : ndarray of shape (n_items,)
        Share of the item's label mass on ``labels_``; 1 for labeled items, 0 if unreached.
    label_distributions_ : ndarray of shape (n_items, n_classes), float32
        Normalised label mass.
    reach_ : ndarray of shape (n_items,)
        Label mass arriving at the item (per label of its class): low in regions far
        from every label.
    probability_ : ndarray of shape (n_items,)
        Calibrated probability that ``labels_`` is right, from confidence and reach
        (1 for labeled items, NaN when there was nothing to calibrate on).
    accepted_ : ndarray of shape (n_items,), bool
        Labeled items, and pseudo-labels whose ``probability_`` reaches the threshold of
        their class.
    thresholds_ : ndarray of shape (n_classes,)
        Per-class thresholds on ``probability_``, the lowest that keeps the expected
        precision of the accepted pseudo-labels of that class at ``precision_target``
        (``inf``: accept none of that class).
    calibration_ : dict
        Report: reliability table, per-class thresholds, expected precision and coverage
        of the accepted pseudo-labels, and the held-out precision at the thresholds.
    graph_ : scipy.sparse.csr_matrix or None
        The kNN graph used (``None`` with ``method="cluster"``).
    n_iter_ : int
        Conjugate-gradient iterations of the widest solve.
    """

    def __init__(
        self,
        n_neighbors: int = 7,
        alpha: float = 0.9,
        precision_target: float = 0.97,
        method: str = "spreading",
        cv: int = 10,
        n_repeats: int = 3,
        max_calibration_records: int = 1000,
        graph_method: str = "auto",
        tol: float = 1e-4,
        max_iter: int = 300,
        min_labels_per_class: int = 5,
        random_state: RandomStateLike = None,
    ) -> None:
        self.min_labels_per_class = min_labels_per_class
        self.n_neighbors = n_neighbors
        self.alpha = alpha
        self.precision_target = precision_target
        self.method = method
        self.cv = cv
        self.n_repeats = n_repeats
        self.max_calibration_records = max_calibration_records
        self.graph_method = graph_method
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(
        self,
        X: ArrayLike,
        y: ArrayLike,
        *,
        graph: Any = None,
        cluster_labels: ArrayLike | None = None,
        sample_weight: ArrayLike | None = None,
    ) -> Self:
        """Spread the labels of ``y`` over ``X`` and calibrate the acceptance thresholds.

        Parameters
        ----------
        X : ndarray of shape (n_items, n_features)
        y : array-like of shape (n_items,)
            Class labels, ``-1`` for unlabeled items.
        graph : sparse matrix of shape (n_items, n_items) or None
            A precomputed kNN graph of ``X`` (reused instead of searching again).
        cluster_labels : ndarray of shape (n_items,) or None
            Clusters for ``method="cluster"``; computed from ``X`` when missing.
        sample_weight : array-like of shape (n_items,) or None
            Trust in each label (e.g. 1 for gold, lower for a thin consensus); weights the
            seed mass and the calibration records. Ignored for unlabeled items.

        Returns
        -------
        self : PseudoLabeler
        """
        self._check_params()
        X = check_features(X, min_rows=2)
        n = X.shape[0]
        y = check_partial_labels(y, n)
        weight = self._check_weight(sample_weight, y)
        rng = check_random_state(self.random_state)
        labeled = np.flatnonzero(y != UNLABELED)
        self.classes_, coded = np.unique(y[labeled], return_inverse=True)
        n_classes = len(self.classes_)

        propagate = self._propagator(X, graph, cluster_labels, rng)
        folds = self._folds(coded, rng)
        G_total, heldout = self._solve(propagate, n, labeled, coded, weight, folds, n_classes)

        dist = self._normalise(G_total, coded, n_classes)
        mass = dist.sum(axis=1)
        self.reach_ = mass.copy()
        reached = mass > 0
        dist[reached] /= mass[reached, None]
        pred = np.where(reached, dist.argmax(axis=1), -1)
        conf = np.where(reached, dist.max(axis=1), 0.0)
        pred[labeled] = coded
        conf[labeled] = 1.0
        dist[labeled] = 0.0
        dist[labeled, coded] = 1.0

        self.label_distributions_ = dist.astype(np.float32)
        self.labels_ = np.where(pred >= 0, self.classes_[np.maximum(pred, 0)], UNLABELED)
        self.confidence_ = conf
        self._calibrate(heldout, pred, conf, mass, labeled, n_classes)
        return self

    def _check_params(self) -> None:
        if not 0 <= self.alpha < 1:
            raise ValueError(f"alpha must be in [0, 1), got {self.alpha}")
        if not 0 < self.precision_target <= 1:
            raise ValueError(f"precision_target must be in (0, 1], got {self.precision_target}")
        if self.method not in ("spreading", "cluster"):
            raise ValueError(f"method must be 'spreading' or 'cluster', got {self.method!r}")
        if int(self.cv) < 2:
            raise ValueError(f"cv must be at least 2, got {self.cv}")
        if int(self.n_repeats) < 1:
            raise ValueError(f"n_repeats must be at least 1, got {self.n_repeats}")

    @staticmethod
    def _check_weight(sample_weight: ArrayLike | None, y: ndarray) -> ndarray:
        if sample_weight is None:
            return np.ones(len(y))
        weight = np.asarray(sample_weight, dtype=np.float64)
        if weight.shape != y.shape:
            raise ValueError(f"sample_weight must have shape {y.shape}, got {weight.shape}")
        if not np.isfinite(weight).all() or (weight < 0).any():
            raise ValueError("sample_weight must be finite and non-negative")
        if not (weight[y != UNLABELED] > 0).any():
            raise ValueError("every labeled item has sample_weight 0")
        return weight

    def _propagator(
        self, X: ndarray, graph: Any, cluster_labels: ArrayLike | None, rng: np.random.RandomState
    ) -> Callable[[ndarray], ndarray]:
        n = X.shape[0]
        if self.method == "cluster":
            self.graph_ = None
            if cluster_labels is None:
                cluster_labels, _ = fit_clusters(X, random_state=rng)
            cluster_labels = np.asarray(cluster_labels)
            if cluster_labels.shape != (n,):
                raise ValueError(f"cluster_labels must have shape ({n},)")
            self.n_iter_ = 0
            return lambda B: cluster_then_label(cluster_labels, B)
        if graph is None:
            graph = knn_graph(X, self.n_neighbors, method=self.graph_method, random_state=rng)
        elif not sp.issparse(graph) or graph.shape != (n, n):
            raise ValueError(f"graph must be a sparse ({n}, {n}) matrix")
        self.graph_ = sp.csr_matrix(graph)
        W = knn_affinity(self.graph_)

        def propagate(B: ndarray) -> ndarray:
            F, n_iter = spread_labels(W, B, alpha=self.alpha, tol=self.tol, max_iter=self.max_iter)
            self.n_iter_ = n_iter
            return F

        return propagate

    def _folds(self, coded: ndarray, rng: np.random.RandomState) -> list[tuple[ndarray, int]]:
        """Stratified fold ids per labeled item and repeat; -1 keeps an item as a seed.

        An item whose class has a single label is never held out: hiding it would test a
        class with no label at all, which is not the situation being calibrated.
        """
        cv = int(self.cv)
        n_labeled = len(coded)
        per_fold = max(1.0, n_labeled / cv)
        folds_wanted = int(np.ceil(self.max_calibration_records / per_fold))
        repeats = []
        gathered = 0
        for _ in range(int(self.n_repeats)):
            if gathered >= self.max_calibration_records:
                break
            fold = np.full(n_labeled, -1, dtype=np.int64)
            for c in np.unique(coded):
                members = np.flatnonzero(coded == c)
                if len(members) < 2:
                    continue
                members = rng.permutation(members)
                fold[members] = (np.arange(len(members)) + rng.randint(cv)) % cv
            solved = min(cv, folds_wanted)
            fold[fold >= solved] = -1
            repeats.append((fold, solved))
            gathered += int((fold >= 0).sum())
        return repeats

    def _solve(
        self,
        propagate: Callable[[ndarray], ndarray],
        n: int,
        labeled: ndarray,
        coded: ndarray,
        weight: ndarray,
        folds: list[tuple[ndarray, int]],
        n_classes: int,
    ) -> tuple[ndarray, dict[str, ndarray]]:
        """Spread all seed groups at once; return the full solution and held-out records."""
        groups = []
        for r, (fold, solved) in enumerate(folds):
            for f in range(solved):
                groups.append((r, f, fold == f))
            rest = fold < 0
            if rest.any():
                groups.append((r, -1, rest))
        B = np.zeros((n, len(groups) * n_classes))
        for g, (_, _, members) in enumerate(groups):
            rows = labeled[members]
            B[rows, g * n_classes + coded[members]] = weight[rows]
        G = propagate(B)
        G = np.maximum(G, 0)
        blocks = [G[:, g * n_classes : (g + 1) * n_classes] for g in range(len(groups))]
        first = [b for (r, _, _), b in zip(groups, blocks) if r == 0]
        G_total = np.sum(first, axis=0)

        class_mass = np.bincount(coded, minlength=n_classes).astype(np.float64)
        records: dict[str, list[ndarray]] = {"confidence": [], "reach": [], "correct": [], "weight": [], "pred": []}
        for (r, f, members), block in zip(groups, blocks):
            if f < 0:
                continue
            totals = np.sum([b for (r2, _, _), b in zip(groups, blocks) if r2 == r], axis=0)
            rows = labeled[members]
            hidden_mass = np.bincount(coded[members], minlength=n_classes)
            remaining = class_mass - hidden_mass
            scale = np.divide(1.0, remaining, out=np.zeros(n_classes), where=remaining > 0)
            D = (totals[rows] - block[rows]) * scale
            mass = D.sum(axis=1)
            ok = mass > 0
            p = np.zeros(len(rows))
            p[ok] = D[ok].max(axis=1) / mass[ok]
            pred = np.where(ok, D.argmax(axis=1), -1)
            records["confidence"].append(p)
            records["reach"].append(mass)
            records["correct"].append((pred == coded[members]).astype(np.float64))
            records["weight"].append(weight[rows])
            records["pred"].append(pred)
        heldout = {key: (np.concatenate(val) if val else np.zeros(0)) for key, val in records.items()}
        heldout["pred"] = heldout["pred"].astype(np.int64)
        # An item held out in several repeats is one piece of evidence, not several.
        times = np.zeros(n)
        for r, f, members in groups:
            if f >= 0:
                times[labeled[members]] += 1
        rows = np.concatenate([labeled[m] for _, f, m in groups if f >= 0] or [np.zeros(0, dtype=np.int64)])
        heldout["weight"] = heldout["weight"] / np.maximum(times[rows], 1)
        return G_total, heldout

    @staticmethod
    def _normalise(G: ndarray, coded: ndarray, n_classes: int) -> ndarray:
        """Divide each class's mass by its number of labels, so classes weigh the same."""
        counts = np.bincount(coded, minlength=n_classes)
        return G / np.where(counts > 0, counts, 1)

    def _calibrate(
        self,
        heldout: dict[str, ndarray],
        pred: ndarray,
        conf: ndarray,
        reach: ndarray,
        labeled: ndarray,
        n_classes: int,
    ) -> None:
        target = float(self.precision_target)
        unlabeled = np.ones(len(pred), dtype=bool)
        unlabeled[labeled] = False
        candidates = unlabeled & (pred >= 0)
        accepted = np.zeros(len(pred), dtype=bool)
        accepted[labeled] = True
        thresholds = np.full(n_classes, np.inf)
        probability = np.full(len(pred), np.nan)
        probability[labeled] = 1.0
        report: dict[str, Any] = {
            "precision_target": target,
            "n_records": len(heldout["confidence"]),
            "n_unlabeled": int(unlabeled.sum()),
        }
        if len(heldout["confidence"]) == 0:
            logger.warning(
                "no held-out labels to calibrate on (each class needs two labels); no pseudo-label is accepted"
            )
            report.update(
                reliability=[],
                per_class={},
                thresholds={},
                expected_precision=float("nan"),
                coverage=0.0,
                n_accepted=0,
                heldout_accuracy=float("nan"),
                heldout_precision=float("nan"),
                heldout_accepted=0,
            )
            self.accepted_, self.thresholds_, self.calibration_ = accepted, thresholds, report
            self.probability_ = probability
            return
        curve = _ReliabilityCurve(
            heldout["confidence"], heldout["reach"], heldout["correct"], heldout["weight"], n_classes
        )
        g_records = curve(heldout["confidence"], heldout["reach"])
        g_items = np.zeros(len(pred))
        g_items[candidates] = curve(conf[candidates], reach[candidates])
        record_prob = np.zeros(len(g_records))
        per_class = {}
        labels_per_class = np.bincount(pred[labeled][pred[labeled] >= 0], minlength=n_classes)
        for c in range(n_classes):
            mine = heldout["pred"] == c
            w = heldout["weight"][mine]
            observed = float(np.sum(w * (1 - heldout["correct"][mine])))
            expected = float(np.sum(w * (1 - g_records[mine])))
            # Only evidence of more errors than the curve expects changes it: a class with
            # few records and no error is not trusted beyond the pooled curve.
            ratio = max(1.0, (observed + 1.0) / (expected + 1.0))
            record_prob[mine] = 1 - np.minimum(1.0, ratio * (1 - g_records[mine]))
            members = np.flatnonzero(candidates & (pred == c))
            prob = 1 - np.minimum(1.0, ratio * (1 - g_items[members]))
            probability[members] = prob
            order = np.argsort(-prob, kind="stable")
            running = np.cumsum(prob[order]) / np.arange(1, len(members) + 1)
            ok = np.flatnonzero(running >= target)
            n_take = int(ok[-1] + 1) if len(ok) and labels_per_class[c] >= self.min_labels_per_class else 0
            if n_take:
                thresholds[c] = prob[order[n_take - 1]]
                accepted[members[prob >= thresholds[c]]] = True
            chosen = mine & (record_prob >= thresholds[c])
            took = accepted[members]
            per_class[self.classes_[c].item()] = {
                "threshold": float(thresholds[c]),
                "n_candidates": len(members),
                "n_accepted": int(took.sum()),
                "coverage": float(took.mean()) if len(members) else 0.0,
                "expected_precision": float(prob[took].mean()) if took.any() else float("nan"),
                "error_ratio": ratio,
                "heldout_n": int(mine.sum()),
                "labels": int(labels_per_class[c]),
                "heldout_accepted": int(chosen.sum()),
                "heldout_precision": (float(heldout["correct"][chosen].mean()) if chosen.any() else float("nan")),
            }
        pseudo = accepted & unlabeled
        n_pseudo = int(pseudo.sum())
        chosen_all = record_prob >= np.where(heldout["pred"] >= 0, thresholds[np.maximum(heldout["pred"], 0)], np.inf)
        report.update(
            reliability=curve.table,
            per_class=per_class,
            thresholds={self.classes_[c].item(): float(thresholds[c]) for c in range(n_classes)},
            expected_precision=float(probability[pseudo].mean()) if n_pseudo else float("nan"),
            coverage=n_pseudo / max(1, int(unlabeled.sum())),
            n_accepted=n_pseudo,
            heldout_accuracy=float(np.average(heldout["correct"], weights=heldout["weight"])),
            heldout_accepted=int(chosen_all.sum()),
            heldout_precision=(float(heldout["correct"][chosen_all].mean()) if chosen_all.any() else float("nan")),
        )
        self.accepted_, self.thresholds_, self.calibration_ = accepted, thresholds, report
        self.probability_ = probability

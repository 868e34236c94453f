"""Which items should a human label next.

Small named strategies score every item; :func:`select` combines the ones asked for by
name (like Django's password validators) and returns items in priority order, each with
a score and a reason a person can read ("uncovered cluster 17", "margin 0.04").

* ``coverage`` -- one item per cluster that has no human label yet: the member nearest the
  centroid. Clusters are ordered greedily so that each pick best covers the mass not yet
  covered (weighted k-medoids over centroids), so the first few labels spread over the
  data. Coverage scores lie in ``(1, 2]`` and every other strategy's in ``[0, 1]``: while a
  cluster is uncovered, its representative comes before any uncertain item.
* ``margin`` -- one minus the gap between the two most likely classes.
* ``entropy`` -- normalised entropy of the class distribution.
* ``disagreement`` -- how far the propagation's distribution is from a model's
  (total variation distance); the reason names both answers when they differ.

Every strategy takes keyword inputs (``y``, ``X``, ``cluster_labels``, ``proba``, ...) and
returns ``(scores, describe)``: one score per item and a function giving reasons for
chosen indices, so reasons are only formatted for what is selected.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
from numpy import ndarray
from sklearn.utils import check_random_state

from ml.cluster import nearest_to_centroids

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from numpy.typing import ArrayLike

    from ml._typing import RandomStateLike

logger = logging.getLogger(__name__)

UNLABELED = -1
GREEDY_COVERAGE_MAX_CLUSTERS = 5000
"""Above this many clusters, uncovered clusters are ordered by size (the greedy order
needs a clusters-by-clusters distance matrix)."""

Describe: TypeAlias = "Callable[[Iterable[int]], list[str]]"
"""Reasons, one per given item index."""

Strategy: TypeAlias = "Callable[..., tuple[ndarray, Describe]]"
"""A scoring function: keyword inputs in, ``(scores, describe)`` out."""

STRATEGIES: dict[str, Strategy] = {}


def strategy(name: str) -> Callable[[Strategy], Strategy]:
    """Register a scoring function under ``name`` for :func:`select`."""
    def register(func: Strategy) -> Strategy:
        STRATEGIES[name] = func
        return func
    return register


@dataclass(frozen=True)
class Selection:
    """Items to label, most urgent first.

    Attributes
    ----------
    indices : ndarray of shape (n_selected,)
    scores : ndarray of shape (n_selected,)
        Combined score (coverage picks above 1).
    reasons : list of str
    """

    indices: np.ndarray
    scores: np.ndarray
    reasons: list[str]


def _require(inputs: Mapping[str, Any], name: str, strategy_name: str) -> Any:
    if inputs.get(name) is None:
        raise ValueError(f"strategy {strategy_name!r} needs {name}=")
    return inputs[name]


def _check_proba(proba: ArrayLike, n_items: int, name: str = "proba") -> ndarray:
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[0] != n_items:
        raise ValueError(f"{name} must have shape ({n_items}, n_classes), got {proba.shape}")
    if not np.isfinite(proba).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if (proba < 0).any():
        raise ValueError(f"{name} must be non-negative")
    total = proba.sum(axis=1, keepdims=True)
    return np.divide(proba, total, out=np.zeros_like(proba), where=total > 0)


def _top_two(proba: ndarray) -> tuple[ndarray, ndarray]:
    if proba.shape[1] == 1:
        return proba[:, 0], np.zeros(len(proba))
    part = -np.partition(-proba, 1, axis=1)
    return part[:, 0], part[:, 1]


def _coverage_order(centers: ndarray, sizes: ndarray, covered: ndarray, n_wanted: int) -> ndarray:
    """Uncovered clusters in greedy weighted k-medoid order over the centroids."""
    uncovered = np.flatnonzero(~covered & (sizes > 0))
    if len(uncovered) == 0:
        return uncovered
    if len(centers) > GREEDY_COVERAGE_MAX_CLUSTERS:
        return uncovered[np.argsort(-sizes[uncovered], kind="stable")]
    sq = np.einsum("ij,ij->i", centers, centers)
    dist = np.sqrt(np.maximum(sq[:, None] - 2 * centers @ centers.T + sq[None, :], 0))
    weights = sizes.astype(np.float64)
    if covered.any():
        nearest = dist[:, covered].min(axis=1)
    else:
        nearest = np.full(len(centers), dist.max() + 1.0)
    order = []
    remaining = list(uncovered)
    for _ in range(min(n_wanted, len(uncovered))):
        cand = np.array(remaining)
        gain = (weights[:, None] * np.maximum(nearest[:, None] - dist[:, cand], 0)).sum(axis=0)
        best = int(np.argmax(gain))
        pick = cand[best]
        order.append(pick)
        remaining.pop(best)
        nearest = np.minimum(nearest, dist[:, pick])
    if remaining:
        rest = np.array(remaining)
        order.extend(rest[np.argsort(-sizes[rest], kind="stable")])
    return np.array(order, dtype=np.int64)


@strategy("coverage")
def coverage(*, y: ndarray, X: ArrayLike | None = None, cluster_labels: ArrayLike | None = None,
             centers: ArrayLike | None = None, exclude: ArrayLike | None = None, n_wanted: int | None = None,
             **_: Any) -> tuple[ndarray, Describe]:
    """Score the most central item of every cluster that has no label yet.

    Parameters
    ----------
    y : ndarray of shape (n_items,)
        ``-1`` for unlabeled items.
    X : ndarray of shape (n_items, n_features)
        Features, to find each cluster's member nearest its centroid.
    cluster_labels : ndarray of shape (n_items,)
        Cluster ids ``0 .. n_clusters - 1``.
    centers : ndarray of shape (n_clusters, n_features) or None
        Centroids (default: cluster means).
    exclude : ndarray of item indices or None
        Items already handed out; their clusters count as covered.
    n_wanted : int or None
        How many picks need the careful greedy order (the rest follow by size).

    Returns
    -------
    scores : ndarray of shape (n_items,)
        In ``(1, 2]`` for each uncovered cluster's representative, first pick highest;
        0 elsewhere.
    describe : callable
    """
    X = np.asarray(_require({"X": X}, "X", "coverage"))
    labels = np.asarray(_require({"cluster_labels": cluster_labels}, "cluster_labels",
                                 "coverage")).astype(np.int64)
    n = len(y)
    if labels.shape != (n,):
        raise ValueError(f"cluster_labels must have shape ({n},), got {labels.shape}")
    reps = nearest_to_centroids(X, labels, centers)
    n_clusters = len(reps)
    if centers is None:
        centers = np.zeros((n_clusters, X.shape[1]))
        np.add.at(centers, labels, X)
        centers /= np.maximum(np.bincount(labels, minlength=n_clusters), 1)[:, None]
    centers = np.asarray(centers, dtype=np.float64)
    sizes = np.bincount(labels, minlength=n_clusters)
    covered = np.zeros(n_clusters, dtype=bool)
    covered[np.unique(labels[y != UNLABELED])] = True
    if exclude is not None and np.size(exclude):
        covered[np.unique(labels[np.asarray(exclude)])] = True
    order = _coverage_order(centers, sizes, covered,
                            n_clusters if n_wanted is None else int(n_wanted))
    scores = np.zeros(n)
    if len(order):
        scores[reps[order]] = 1.0 + (len(order) - np.arange(len(order))) / len(order)
    cluster_of = labels

    def describe(indices: Iterable[int]) -> list[str]:
        return [f"uncovered cluster {cluster_of[i]}" for i in indices]

    return scores, describe


@strategy("margin")
def margin(*, y: ndarray, proba: ArrayLike | None = None, **_: Any) -> tuple[ndarray, Describe]:
    """Score ``1 - (p_first - p_second)``: high when the two best classes are close.

    Parameters
    ----------
    y : ndarray of shape (n_items,)
    proba : ndarray of shape (n_items, n_classes)
        Class distribution per item (e.g. ``PseudoLabeler.label_distributions_``).
    """
    proba = _check_proba(_require({"proba": proba}, "proba", "margin"), len(y))
    first, second = _top_two(proba)
    gap = first - second

    def describe(indices: Iterable[int]) -> list[str]:
        return [f"margin {gap[i]:.2f}" for i in indices]

    return 1.0 - gap, describe


@strategy("entropy")
def entropy(*, y: ndarray, proba: ArrayLike | None = None, **_: Any) -> tuple[ndarray, Describe]:
    """Score the entropy of the class distribution divided by its maximum, ``log(n_classes)``.

    Parameters
    ----------
    y : ndarray of shape (n_items,)
    proba : ndarray of shape (n_items, n_classes)
    """
    proba = _check_proba(_require({"proba": proba}, "proba", "entropy"), len(y))
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(proba > 0, proba * np.log(proba), 0.0).sum(axis=1)
    h = h / np.log(proba.shape[1]) if proba.shape[1] > 1 else np.zeros(len(y))
    h[proba.sum(axis=1) == 0] = 1.0

    def describe(indices: Iterable[int]) -> list[str]:
        return [f"entropy {h[i]:.2f}" for i in indices]

    return h, describe


@strategy("disagreement")
def disagreement(*, y: ndarray, proba: ArrayLike | None = None, model_proba: ArrayLike | None = None,
                 classes: ArrayLike | None = None, **_: Any) -> tuple[ndarray, Describe]:
    """Score the total variation distance between propagation and a model's probabilities.

    Parameters
    ----------
    y : ndarray of shape (n_items,)
    proba : ndarray of shape (n_items, n_classes)
        From label propagation.
    model_proba : ndarray of shape (n_items, n_classes)
        From a trained model, same class order.
    classes : ndarray of shape (n_classes,) or None
        Class names for the reasons.
    """
    p = _check_proba(_require({"proba": proba}, "proba", "disagreement"), len(y))
    q = _check_proba(_require({"model_proba": model_proba}, "model_proba", "disagreement"),
                     len(y), "model_proba")
    if p.shape != q.shape:
        raise ValueError(f"proba {p.shape} and model_proba {q.shape} differ in shape")
    tv = 0.5 * np.abs(p - q).sum(axis=1)
    a, b = p.argmax(axis=1), q.argmax(axis=1)
    names = np.arange(p.shape[1]) if classes is None else np.asarray(classes)

    def describe(indices: Iterable[int]) -> list[str]:
        return [f"propagation says {names[a[i]]}, model says {names[b[i]]}" if a[i] != b[i]
                else f"disagreement {tv[i]:.2f}" for i in indices]

    return tv, describe


def select(n: int, *, y: ArrayLike, strategies: str | Sequence[str] = ("coverage", "margin"),
           exclude: ArrayLike | None = None, max_per_cluster: int | None = None,
           random_state: RandomStateLike = None, **inputs: Any) -> Selection:
    """Pick ``n`` unlabeled items for human labelling, most urgent first.

    Parameters
    ----------
    n : int
        How many items to return (fewer if fewer are unlabeled).
    y : array-like of shape (n_items,)
        Known labels, ``-1`` for unlabeled; labeled items are never picked.
    strategies : sequence of str, default=("coverage", "margin")
        Names from :data:`STRATEGIES`. Each item's score is its best strategy score;
        coverage scores exceed every other, so uncovered clusters come first.
    exclude : array-like of int or None
        Items already handed out and awaiting answers: not picked, and their clusters
        count as covered.
    max_per_cluster : int or None
        Cap on non-coverage picks from one cluster (needs ``cluster_labels``), so a batch
        does not spend itself on one confusing region.
    random_state : int, RandomState instance or None
        Breaks ties between equal scores.
    **inputs
        What the strategies need: ``X``, ``cluster_labels``, ``centers``, ``proba``,
        ``model_proba``, ``classes``.

    Returns
    -------
    selection : Selection
    """
    y = np.asarray(y)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError(f"y must be a non-empty 1-D label vector, got shape {y.shape}")
    if y.dtype.kind == "f" and np.isnan(y).any():
        raise ValueError("y contains NaN; mark unlabeled items with -1")
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    if isinstance(strategies, str):
        strategies = (strategies,)
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or not strategies:
        raise ValueError(f"unknown strategies {unknown}; choose from {sorted(STRATEGIES)}")
    n_items = len(y)
    exclude = np.asarray([] if exclude is None else exclude, dtype=np.int64)
    if exclude.size and (exclude.min() < 0 or exclude.max() >= n_items):
        raise ValueError("exclude holds indices outside 0 .. n_items - 1")
    best = np.full(n_items, -np.inf)
    source = np.full(n_items, -1, dtype=np.int64)
    describers = []
    for k, name in enumerate(strategies):
        scores, describe = STRATEGIES[name](y=y, exclude=exclude, n_wanted=n, **inputs)
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (n_items,):
            raise ValueError(f"strategy {name!r} returned scores of shape {scores.shape}")
        better = scores > best
        best[better] = scores[better]
        source[better] = k
        describers.append(describe)
    candidate = y == UNLABELED
    candidate[exclude] = False
    rng = check_random_state(random_state)
    tiebreak = rng.permutation(n_items)
    pool = np.flatnonzero(candidate)
    ranked = pool[np.lexsort((tiebreak[pool], -best[pool]))]
    if max_per_cluster is not None:
        labels = _require(inputs, "cluster_labels", "max_per_cluster")
        labels = np.asarray(labels)
        counts: dict[int, int] = {}
        kept = []
        for i in ranked:
            if best[i] <= 1.0:
                c = labels[i]
                if counts.get(c, 0) >= max_per_cluster:
                    continue
                counts[c] = counts.get(c, 0) + 1
            kept.append(i)
            if len(kept) == n:
                break
        chosen = np.array(kept, dtype=np.int64)
    else:
        chosen = ranked[:n]
    reasons = [""] * len(chosen)
    for k, describe in enumerate(describers):
        mine = np.flatnonzero(source[chosen] == k)
        for pos, text in zip(mine, describe(chosen[mine])):
            reasons[pos] = text
    return Selection(indices=chosen, scores=best[chosen], reasons=reasons)

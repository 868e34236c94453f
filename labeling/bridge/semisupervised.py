"""A semi-supervised round's arrays: the items' features, their clusters and 2-D map,
labels spread from the human ones, and the selection scores that rank items for human
attention. Results come back keyed by item id (:class:`RoundFit`); the round's service
(:mod:`labeling.services.semisupervised`) decides what to save."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy import ndarray

from labeling.bridge.features import Progress, representation
from labeling.bridge.items import labels_array
from labeling.models import Item, Prediction, Project

if TYPE_CHECKING:
    from ml.active import Selection


@dataclass(frozen=True)
class ItemPlace:
    """An item's cluster and place on the 2-D map."""

    cluster: int
    x: float
    y: float
    representative: bool


@dataclass(frozen=True)
class SpreadLabel:
    """A label spread to an item: its label id, calibrated confidence in [0, 1], and
    whether it clears the precision target."""

    item_id: int
    label_id: int
    confidence: float
    accepted: bool


@dataclass(frozen=True)
class RoundFit:
    """What a round computed. ``places`` and ``priority`` (``{item_id: (score,
    reason)}``) are keyed by item id; ``spread`` (in item order), ``accepted`` and
    ``calibration`` stay empty on a cold round."""

    representation: str
    representation_scores: dict[str, dict[str, float]]
    n_clusters: int
    places: dict[int, ItemPlace]
    priority: dict[int, tuple[float, str]]
    spread: list[SpreadLabel]
    accepted: int
    calibration: Any


@dataclass(frozen=True)
class _Clusters:
    """The round's clusters of the items (a label per item, the centroids, each
    cluster's most representative item) and their 2-D map."""

    n_clusters: int
    labels: ndarray
    centers: ndarray
    representatives: ndarray
    coords: ndarray


def round_fit(
    project: Project, items: Sequence[Item], human: Mapping[int, int], servable: Sequence[bool], *, cold: bool,
    progress: Progress,
) -> RoundFit:
    """Fit a round on ``items`` with their human labels ``human`` (``{item_id:
    label_id}``); ``servable`` says, per item, whether people may still be served it.
    A cold round (fewer than two classes labeled) only clusters and ranks cluster
    representatives; a warm one spreads the labels too."""
    y, label_ids = labels_array(project, items, human)
    X, chosen, scores = representation(project, items, y, progress=progress)
    progress(0.4, f"clustering {len(items)} items ({chosen})")
    clusters = _clusters_fit(X, len(label_ids))
    if cold:
        progress(0.8, "ranking cluster representatives")
        selection = _select(servable, y, X, clusters, strategies=("coverage",))
        return _round_result(items, chosen, scores, clusters, selection)
    return _warm_round_fit(project, items, y, X, label_ids, clusters, servable, chosen, scores, progress)


def _clusters_fit(X: ndarray, n_classes: int) -> _Clusters:
    """Many more clusters than classes, their representatives and a 2-D map of ``X``."""
    from ml.cluster import default_n_clusters, fit_clusters, nearest_to_centroids, project_2d

    n_clusters = default_n_clusters(len(X), n_classes)
    cluster_labels, kmeans = fit_clusters(X, n_clusters, random_state=0)
    representatives = nearest_to_centroids(X, cluster_labels, kmeans.cluster_centers_)
    coords = project_2d(X, random_state=0)
    return _Clusters(n_clusters, cluster_labels, kmeans.cluster_centers_, representatives, coords)


def _select(
    servable: Sequence[bool], y: ndarray, X: ndarray, clusters: _Clusters, *, strategies: tuple[str, ...],
    **scores: Any,
) -> Selection:
    """Selection scores for every servable item without a human label."""
    from ml.active import select

    mask = np.array(servable)
    return select(
        int(mask.sum()), y=y, strategies=strategies, exclude=np.flatnonzero(~mask & (y < 0)),
        X=X, cluster_labels=clusters.labels, centers=clusters.centers, **scores, random_state=0,
    )


def _warm_round_fit(
    project: Project, items: Sequence[Item], y: ndarray, X: ndarray, label_ids: Sequence[int], clusters: _Clusters,
    servable: Sequence[bool], chosen: str, scores: dict[str, dict[str, float]], progress: Progress,
) -> RoundFit:
    """Calibrated pseudo-labels spread from the human labels, and selection scores from
    coverage, uncertainty and model disagreement."""
    from ml.propagation import PseudoLabeler

    n_classes = len(label_ids)
    progress(0.6, "spreading labels")
    labeler = PseudoLabeler(precision_target=project.pseudo_label_precision, random_state=0).fit(
        X, y, cluster_labels=clusters.labels
    )
    model_proba = _model_probabilities(project, items, label_ids)

    progress(0.8, "scoring items for human attention")
    proba = np.zeros((len(items), n_classes))
    proba[:, labeler.classes_] = labeler.label_distributions_  # classes without labels get 0
    strategies = ("coverage", "margin") + (("disagreement",) if model_proba is not None else ())
    selection = _select(
        servable, y, X, clusters, strategies=strategies, proba=proba, model_proba=model_proba,
        classes=np.arange(n_classes),
    )
    spread = [
        SpreadLabel(
            item_id=item.pk, label_id=label_ids[int(labeler.labels_[i])],
            confidence=float(np.clip(labeler.confidence_[i], 0, 1)), accepted=bool(labeler.accepted_[i]),
        )
        for i, item in enumerate(items)
        if labeler.labels_[i] >= 0
    ]
    accepted = int((labeler.accepted_ & (y < 0)).sum())
    return _round_result(
        items, chosen, scores, clusters, selection, spread=spread, accepted=accepted,
        calibration=_jsonable(labeler.calibration_),
    )


def _round_result(
    items: Sequence[Item], chosen: str, scores: dict[str, dict[str, float]], clusters: _Clusters,
    selection: Selection, *, spread: list[SpreadLabel] | None = None, accepted: int = 0, calibration: Any = None,
) -> RoundFit:
    ids = [item.pk for item in items]
    rep = set(int(i) for i in clusters.representatives if i >= 0)
    places = {
        item_id: ItemPlace(
            cluster=int(clusters.labels[i]), x=float(clusters.coords[i, 0]), y=float(clusters.coords[i, 1]),
            representative=i in rep,
        )
        for i, item_id in enumerate(ids)
    }
    priority = {
        ids[int(i)]: (float(score), reason)
        for i, score, reason in zip(selection.indices, selection.scores, selection.reasons, strict=True)
    }
    return RoundFit(
        representation=chosen, representation_scores=scores, n_clusters=int(clusters.n_clusters), places=places,
        priority=priority, spread=spread or [], accepted=accepted, calibration=calibration,
    )


def _model_probabilities(project: Project, items: Sequence[Item], label_ids: Sequence[int]) -> ndarray | None:
    """The active model's class probabilities per item (from its Prediction rows)."""
    if project.active_run_id is None:
        return None
    rows = dict(
        Prediction.objects.filter(run_id=project.active_run_id, item_id__in=[i.pk for i in items]).values_list(
            "item_id", "label_id"
        )
    )
    if not rows:
        return None
    confidence = dict(
        Prediction.objects.filter(run_id=project.active_run_id).values_list("item_id", "confidence")
    )
    position = {label_id: i for i, label_id in enumerate(label_ids)}
    proba = np.full((len(items), len(label_ids)), 1.0 / len(label_ids))
    for i, item in enumerate(items):
        if item.pk in rows:
            c = confidence[item.pk]
            proba[i] = (1 - c) / max(len(label_ids) - 1, 1)
            proba[i, position[rows[item.pk]]] = c
    return proba


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value

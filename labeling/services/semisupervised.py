"""The semi-supervised round: features, clusters, calibrated pseudo-labels, selection.

Runs on the ``cpu`` queue, one at a time per project (a :class:`PipelineRun` of kind
``cluster``), after every ``CROWDLOOP_PIPELINE_EVERY_LABELS`` new human labels and on a
schedule, and right after every import (cold start: before any label the round still
clusters and ranks representatives). Idempotent: the same labels and items give the
same rows.

1. Features of every item (normalised pixels, and the active model's penultimate layer
   once a model exists); the representation is chosen by measuring it on the human
   labels (kNN accuracy and cluster purity), not by assumption.
2. PCA, MiniBatchKMeans with many more clusters than classes, a 2-D map.
3. Label spreading from gold + consensus labels, calibrated on held-out human labels so
   that accepted pseudo-labels meet the project's precision target per class.
4. Selection scores for every servable item: uncovered clusters first (their most
   representative member), then uncertainty and model disagreement. The widget and the
   worker UI serve by these scores (``Item.priority``).

Accepted pseudo-labels put their item in ``pseudo_labeled``: it is then served as a
cheap ``verify`` challenge, whose confirmations count as human votes (through truth
inference) and whose rejections send the item back to ``choice``.
"""
from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
from django.conf import settings
from django.db import transaction
from numpy import ndarray

from labeling import bridge
from labeling.models import (
    DataKind,
    Item,
    ItemEmbedding,
    ItemStatus,
    KnownLabel,
    PipelineKind,
    PipelineRun,
    Prediction,
    Project,
    PseudoLabel,
    PseudoLabelSource,
    Split,
)
from labeling.selectors import human_labels
from labeling.services import hot, runs
from labeling.services.audit import held_items
from labeling.services.outbox import task_send
from labeling.services.pipeline import (
    pipeline_run_fail,
    pipeline_run_finish,
    pipeline_run_progress,
    pipeline_run_start,
)

if TYPE_CHECKING:

    from ml.active import Selection
    from ml.propagation import PseudoLabeler

logger = logging.getLogger(__name__)

Progress: TypeAlias = Callable[[float, str], object]
"""``progress(fraction, message)``: reports how far a round has come."""


def pipeline_start(project: Project) -> None:
    """Queue a semi-supervised round on the ``cpu`` queue; returns at once."""
    from labeling.tasks import cpu_semisupervised_task

    task_send(cpu_semisupervised_task, project.pk)


def representation(
    project: Project, items: Sequence[Item], y: ndarray, progress: Progress | None = None
) -> tuple[ndarray, str, dict[str, dict[str, float]]]:
    """The features the round and the models work on: each candidate representation of
    ``items`` measured on the human labels ``y`` (``-1`` unlabeled) when every labeled
    class has two labels, the best reduced to at most 32 dimensions. Returns
    ``(X, chosen, scores)``."""
    from ml.cluster import reduce_dimensions
    from ml.features import choose_representation

    candidates = _features(project, items, progress)
    labeled = y[y >= 0]
    counts = np.bincount(labeled) if len(labeled) else np.zeros(0, dtype=np.int64)
    if len(candidates) > 1 and len(set(labeled.tolist())) >= 2 and counts[counts > 0].min() >= 2:
        chosen, scores = choose_representation(candidates, y, random_state=0)
    else:
        chosen, scores = next(iter(candidates)), {}
    X = candidates[chosen]
    if X.shape[1] > 32:
        X = reduce_dimensions(X, n_components=32, random_state=0)
    return np.ascontiguousarray(X, dtype=np.float32), chosen, scores


TEXT_HASH_FEATURES = 2**18
_embedded: OrderedDict[bytes, ndarray] = OrderedDict()
_embedded_lock = threading.Lock()


def _sentence_embeddings_cached(texts: Sequence[str]) -> ndarray:
    """MiniLM vectors of ``texts``, each text embedded once per process (rounds and runs
    embed the same items again and again); at most ``CROWDLOOP_TEXT_EMBEDDING_CACHE``
    vectors are kept, the least recently used dropped first."""
    from ml.features import sentence_embeddings

    keys = [hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest() for text in texts]
    with _embedded_lock:
        known = {key: _embedded[key] for key in set(keys) if key in _embedded}
    missing = sorted({key: text for key, text in zip(keys, texts) if key not in known}.items())
    if missing:
        vectors = sentence_embeddings([text for _, text in missing], device="cpu")
        known.update({key: vector for (key, _), vector in zip(missing, vectors)})
    limit = settings.CROWDLOOP_TEXT_EMBEDDING_CACHE
    with _embedded_lock:
        for key in keys:
            _embedded[key] = known[key]
            _embedded.move_to_end(key)
        while len(_embedded) > limit:
            _embedded.popitem(last=False)
    return np.stack([known[key] for key in keys]) if keys else np.zeros((0, 384), dtype=np.float32)


def _text_features(items: Sequence[Item], progress: Progress | None = None) -> dict[str, ndarray]:
    """Texts: hashed TF-IDF + SVD always (no vocabulary, no download); with the optional
    ``text-embeddings`` extra, all-MiniLM-L6-v2 sentence embeddings too, and the human
    labels choose between them (:func:`representation`)."""
    from ml.features import TextFeatures, sentence_embeddings_available

    texts = [item.text for item in items]
    candidates: dict[str, ndarray] = {}
    if settings.CROWDLOOP_TEXT_EMBEDDINGS and sentence_embeddings_available():
        if progress:
            progress(0.15, "sentence embeddings")
        candidates["minilm"] = _sentence_embeddings_cached(texts)  # first: the default with few labels
    n_components = max(2, min(64, len(items) - 1))
    candidates["tfidf_hashed"] = TextFeatures(
        n_components=n_components, n_hash_features=TEXT_HASH_FEATURES, random_state=0
    ).fit_transform(texts)
    return candidates


def _features(project: Project, items: Sequence[Item], progress: Progress | None = None) -> dict[str, ndarray]:
    """Candidate representations of ``items``."""
    from ml.features import ImageFeatures

    if project.data_kind == DataKind.TEXT:
        return _text_features(items, progress)
    pixels = bridge.image_arrays(items, project.image_size)
    images = pixels.transpose(0, 2, 3, 1)  # (n, H, W, C) for ml.features
    images = images[..., 0] if images.shape[-1] == 1 else images
    candidates = {
        "pixels": ImageFeatures(norm="l2").fit_transform(images),
        "pixels_centered": ImageFeatures(norm="center").fit_transform(images),
    }
    if images[0].size > 64:
        candidates["pixels_pca"] = ImageFeatures(norm="center", n_components=64, random_state=0).fit_transform(images)
    run_model = project.active_run
    if run_model is not None and run_model.artifact:
        from ml.inference import embed, load_model

        if progress:
            progress(0.15, "embedding with the active model")
        with run_model.artifact.open("rb") as handle:
            loaded = load_model(handle.read(), device="cpu")
        candidates["model"] = embed(loaded.model, pixels)
    return candidates


def project_semisupervised(project: Project) -> PipelineRun | None:
    """Run one round for ``project``; returns the run or ``None`` if one is running."""
    run = pipeline_run_start(project, PipelineKind.CLUSTER)
    if run is None:
        return None
    try:
        with runs.run_heartbeating(run):
            return _round(project, run)
    except runs.RunLost:
        return None
    except Exception as exc:
        pipeline_run_fail(run, f"{type(exc).__name__}: {exc}")
        raise


def _round(project: Project, run: PipelineRun) -> PipelineRun:
    pipeline_run_progress(run, 0.05, "loading items")
    items = list(Item.objects.filter(project=project, split=Split.POOL).order_by("id").only("id", "image", "text", "status"))
    y, label_ids = _human_label_positions(project, items)
    if not items or (y < 0).sum() == 0:
        reason = "every item has a human label" if items else "no items"
        return pipeline_run_finish(run, result={"skipped": reason, "human_labels": int((y >= 0).sum())})
    cold = len(set(y[y >= 0].tolist())) < 2

    X, chosen, scores = representation(project, items, y, progress=lambda p, m: pipeline_run_progress(run, p, m))

    pipeline_run_progress(run, 0.4, f"clustering {len(items)} items ({chosen})")
    clusters = _clusters_fit(X, len(label_ids))
    if cold:
        return _cold_round(project, run, items, y, X, clusters)
    return _warm_round(project, run, items, y, X, label_ids, clusters, chosen, scores)


@dataclass(frozen=True)
class _Clusters:
    """The round's clusters of the items (a label per item, the centroids, each
    cluster's most representative item) and their 2-D map."""

    n_clusters: int
    labels: ndarray
    centers: ndarray
    representatives: ndarray
    coords: ndarray


def _human_label_positions(project: Project, items: Sequence[Item]) -> tuple[ndarray, list[int]]:
    """The human labels of ``items`` as class positions (``-1``: none) and the project's
    label ids."""
    positions, label_ids = bridge.label_positions(project)
    index = {item.pk: i for i, item in enumerate(items)}
    y = np.full(len(items), -1, dtype=np.int64)
    for item_id, label_id in human_labels(project).items():
        if item_id in index:
            y[index[item_id]] = positions[label_id]
    return y, label_ids


def _clusters_fit(X: ndarray, n_classes: int) -> _Clusters:
    """Many more clusters than classes, their representatives and a 2-D map of ``X``."""
    from ml.cluster import default_n_clusters, fit_clusters, nearest_to_centroids, project_2d

    n_clusters = default_n_clusters(len(X), n_classes)
    cluster_labels, kmeans = fit_clusters(X, n_clusters, random_state=0)
    representatives = nearest_to_centroids(X, cluster_labels, kmeans.cluster_centers_)
    coords = project_2d(X, random_state=0)
    return _Clusters(n_clusters, cluster_labels, kmeans.cluster_centers_, representatives, coords)


def _warm_round(
    project: Project, run: PipelineRun, items: Sequence[Item], y: ndarray, X: ndarray, label_ids: Sequence[int],
    clusters: _Clusters, chosen: str, scores: dict[str, dict[str, float]],
) -> PipelineRun:
    """A round once two classes have human labels: calibrated pseudo-labels spread from
    them, and selection scores from coverage, uncertainty and model disagreement."""
    from ml.active import select
    from ml.propagation import PseudoLabeler

    n_classes = len(label_ids)
    pipeline_run_progress(run, 0.6, "spreading labels")
    labeler = PseudoLabeler(precision_target=project.pseudo_label_precision, random_state=0).fit(
        X, y, cluster_labels=clusters.labels
    )
    model_proba = _model_probabilities(project, items, label_ids)

    pipeline_run_progress(run, 0.8, "scoring items for human attention")
    servable = np.array([item.status in (ItemStatus.UNLABELED, ItemStatus.PSEUDO_LABELED) for item in items])
    proba = np.zeros((len(items), n_classes))
    proba[:, labeler.classes_] = labeler.label_distributions_  # classes without labels get 0
    strategies = ("coverage", "margin") + (("disagreement",) if model_proba is not None else ())
    selection = select(
        int(servable.sum()), y=y, strategies=strategies, exclude=np.flatnonzero(~servable & (y < 0)),
        X=X, cluster_labels=clusters.labels, centers=clusters.centers,
        proba=proba, model_proba=model_proba, classes=np.arange(n_classes), random_state=0,
    )
    _save(project, items, label_ids, labeler, clusters, selection)
    accepted = int((labeler.accepted_ & (y < 0)).sum())
    return pipeline_run_finish(
        run,
        result={
            "items": len(items),
            "human_labels": int((y >= 0).sum()),
            "representation": chosen,
            "representation_scores": scores,
            "clusters": int(clusters.n_clusters),
            "pseudo_labels": int((y < 0).sum()),
            "accepted": accepted,
            "calibration": _jsonable(labeler.calibration_),
        },
    )


def _cold_round(
    project: Project, run: PipelineRun, items: Sequence[Item], y: ndarray, X: ndarray, clusters: _Clusters
) -> PipelineRun:
    """A round before two classes have human labels: clusters, the map and coverage
    priorities, so that the first unknown items served are representatives of uncovered
    clusters. No pseudo-labels: nothing to spread yet."""
    from ml.active import select

    pipeline_run_progress(run, 0.8, "ranking cluster representatives")
    servable = np.array([item.status in (ItemStatus.UNLABELED, ItemStatus.PSEUDO_LABELED) for item in items])
    selection = select(
        int(servable.sum()), y=y, strategies=("coverage",), exclude=np.flatnonzero(~servable & (y < 0)),
        X=X, cluster_labels=clusters.labels, centers=clusters.centers, random_state=0,
    )
    with transaction.atomic():
        _map_save(items, clusters, selection)
    return pipeline_run_finish(
        run,
        result={"items": len(items), "human_labels": int((y >= 0).sum()), "clusters": int(clusters.n_clusters),
                "cold_start": True, "pseudo_labels": 0, "accepted": 0},
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


def _save(
    project: Project, items: Sequence[Item], label_ids: Sequence[int], labeler: PseudoLabeler, clusters: _Clusters,
    selection: Selection,
) -> None:
    ids = [item.pk for item in items]
    known = set(KnownLabel.objects.filter(item_id__in=ids).values_list("item_id", flat=True))
    labeled = {item.pk for item in items if item.status == ItemStatus.LABELED} | known
    held = held_items(ids)  # the label audit sent these back to people: no accepted pseudo-label
    pseudo = [
        PseudoLabel(
            item_id=item.pk, label_id=label_ids[int(labeler.labels_[i])], confidence=float(np.clip(labeler.confidence_[i], 0, 1)),
            source=PseudoLabelSource.PROPAGATION, accepted=bool(labeler.accepted_[i]) and item.pk not in held,
        )
        for i, item in enumerate(items)
        if item.pk not in labeled and labeler.labels_[i] >= 0
    ]
    accepted_ids = [p.item_id for p in pseudo if p.accepted]
    with transaction.atomic():
        _map_save(items, clusters, selection)
        PseudoLabel.objects.filter(item_id__in=ids).delete()
        PseudoLabel.objects.bulk_create(pseudo, batch_size=2000)
        Item.objects.filter(pk__in=accepted_ids, status=ItemStatus.UNLABELED).update(status=ItemStatus.PSEUDO_LABELED)
        Item.objects.filter(pk__in=ids, status=ItemStatus.PSEUDO_LABELED).exclude(pk__in=accepted_ids).update(
            status=ItemStatus.UNLABELED
        )
    if items:
        hot.pseudo_labels_changed(items[0].project_id)


def _map_save(items: Sequence[Item], clusters: _Clusters, selection: Selection) -> None:
    """Replace the items' clusters and 2-D map, and save the selection's priorities.
    Call inside the round's transaction."""
    ids = [item.pk for item in items]
    rep = set(int(i) for i in clusters.representatives if i >= 0)
    embeddings = [
        ItemEmbedding(item_id=item.pk, cluster=int(clusters.labels[i]), x=float(clusters.coords[i, 0]), y=float(clusters.coords[i, 1]), is_representative=i in rep)
        for i, item in enumerate(items)
    ]
    priority = {ids[int(i)]: (float(score), reason[:120]) for i, score, reason in zip(selection.indices, selection.scores, selection.reasons, strict=True)}
    ItemEmbedding.objects.filter(item_id__in=ids).delete()
    ItemEmbedding.objects.bulk_create(embeddings, batch_size=2000)
    _priorities_save(ids, priority)


def _priorities_save(ids: Sequence[int], priority: Mapping[int, tuple[float, str]]) -> None:
    """Save the round's selection scores. A started item (answered, still servable) keeps
    the higher score that consensus gave it for finishing it (see
    ``consensus.FINISH_PRIORITY``)."""
    from labeling.services.consensus import FINISH_PRIORITY

    rows = Item.objects.filter(pk__in=ids).only("id", "priority", "priority_reason", "answer_count", "status")
    changed = []
    for item in rows:
        score, reason = priority.get(item.pk, (0.0, ""))
        started = item.answer_count > 0 and item.status in (ItemStatus.UNLABELED, ItemStatus.PSEUDO_LABELED)
        if started and item.priority >= FINISH_PRIORITY and item.priority > score:
            continue
        if item.priority != score or item.priority_reason != reason:
            item.priority, item.priority_reason = score, reason
            changed.append(item)
    Item.objects.bulk_update(changed, ["priority", "priority_reason"], batch_size=2000)


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

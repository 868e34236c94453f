"""The features the semi-supervised round, the models and the audit work on: each
candidate representation of the items (pixels, hashed TF-IDF, sentence embeddings, the
active model's embedding), the one the human labels choose, reduced to 32 dimensions."""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TypeAlias

import numpy as np
from django.conf import settings
from numpy import ndarray

from labeling.bridge.items import image_arrays
from labeling.models import DataKind, Item, Project

Progress: TypeAlias = Callable[[float, str], object]
"""``progress(fraction, message)``: reports how far a round has come."""


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
    pixels = image_arrays(items, project.image_size)
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

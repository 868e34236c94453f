"""Predictions of a project's active model: one uploaded image, many, or stored items.

Loading a model from storage costs about half a second; predicting one small image,
about a millisecond. So each process keeps the models it used last, keyed by training
run id. A succeeded run never changes, and a promotion changes the project's
``active_run``, so the next request looks up a new key: no other invalidation is needed.
Each call runs on ``CROWDLOOP_PREDICT_THREADS`` CPU threads (one by default): a web
process serves requests side by side, and intra-op threads that wait on each other made
one prediction a hundred times slower on a busy two-core machine.
Uploads are decoded as imports decode them (:func:`labeling.services.media.image_decode`)
and scaled as training scales stored items, so a model sees the same pixels either way.
"""
from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from django.conf import settings

from labeling import bridge
from labeling.models import Item, Project, TrainingRun
from labeling.services.media import ImageRejected, image_decode

if TYPE_CHECKING:
    from labeling.bridge.inference import LoadedModel

logger = logging.getLogger(__name__)

_models: OrderedDict[uuid.UUID, LoadedModel] = OrderedDict()
_models_lock = threading.Lock()


class PredictionRefused(ValueError):
    """The project cannot predict now (no trained model); the message says why."""


def predictions_cache_clear() -> None:
    """Forget every loaded model of this process (tests, benchmarks)."""
    with _models_lock:
        _models.clear()


def _model_of(project: Project) -> tuple[uuid.UUID, LoadedModel]:
    """``(run id, LoadedModel)`` of the project's active run, loaded once per process."""
    run_id = project.active_run_id
    if run_id is None:
        raise PredictionRefused("this project has no trained model yet")
    with _models_lock:
        loaded = _models.get(run_id)
        if loaded is not None:
            _models.move_to_end(run_id)
            return run_id, loaded
    run = TrainingRun.objects.filter(pk=run_id).only("id", "artifact").first()
    if run is None:
        raise PredictionRefused("this project has no trained model yet")
    if not run.artifact:
        raise PredictionRefused(
            "the active model is fitted over the project's own items and reads no new input "
            f"(run {run_id}); its predictions of every item are at GET .../predictions"
        )
    with run.artifact.open("rb") as handle:
        loaded = bridge.model_load(handle.read())
    logger.info("loaded the model of run %s for project %s", run_id, project.slug)
    with _models_lock:
        _models[run_id] = loaded
        _models.move_to_end(run_id)
        while len(_models) > settings.CROWDLOOP_PREDICT_CACHED_MODELS:
            _models.popitem(last=False)
    return run_id, loaded


def _input_shape(project: Project, loaded: LoadedModel) -> tuple[int, int]:
    size = loaded.config.get("image_size", project.image_size)
    size = size[0] if isinstance(size, list) else size
    return int(size), int(loaded.config.get("in_channels", 1))


def _upload_pixels(data: bytes, size: int, channels: int) -> bridge.Pixels:
    if len(data) > settings.CROWDLOOP_MAX_PREDICT_BYTES:
        raise ImageRejected(f"image of {len(data)} bytes, over the cap of {settings.CROWDLOOP_MAX_PREDICT_BYTES}")
    image, _, _ = image_decode(data, max_pixels=settings.CROWDLOOP_MAX_IMAGE_PIXELS)
    return bridge.image_pixels(image, size, channels)


def model_predict(project: Project, data: bytes) -> dict[str, Any]:
    """Label and class probabilities of one uploaded image under the active model.

    Raises :class:`PredictionRefused` without a model and
    :class:`~labeling.services.media.ImageRejected` for bytes that are no image.
    """
    run_id, loaded = _model_of(project)
    size, channels = _input_shape(project, loaded)
    ((label, probabilities),) = bridge.pixels_predict(
        loaded, [_upload_pixels(data, size, channels)], num_threads=settings.CROWDLOOP_PREDICT_THREADS
    )
    return {"label": label, "probabilities": probabilities, "run": str(run_id)}


def images_predict(
    project: Project, images: Iterable[tuple[str, bytes]], *, unreadable: Iterable[tuple[str, str]] = ()
) -> dict[str, Any]:
    """Predict many uploaded images, ``[(name, bytes)]``, in one batch through the model.

    Returns ``{"run", "classes", "results"}``, a result per image in the given order:
    ``{"name", "label", "probabilities"}``, or ``{"name", "error"}`` for one that could not
    be read (the others are predicted all the same). ``unreadable``, ``[(name, reason)]``
    of files that never got to bytes, come last as errors.
    """
    run_id, loaded = _model_of(project)
    size, channels = _input_shape(project, loaded)
    results: list[dict[str, Any]] = []
    arrays: list[bridge.Pixels] = []
    slots: list[int] = []
    for name, data in images:
        try:
            arrays.append(_upload_pixels(data, size, channels))
        except ImageRejected as exc:
            results.append({"name": name, "error": str(exc)})
            continue
        slots.append(len(results))
        results.append({"name": name})
    _fill(results, slots, loaded, arrays)
    results += [{"name": name, "error": reason} for name, reason in unreadable]
    return {"run": str(run_id), "classes": list(loaded.classes), "results": results}


def items_predict(project: Project, item_ids: Sequence[int]) -> dict[str, Any]:
    """Predict the project's stored items ``item_ids`` (read as training reads them).

    Same answer as :func:`images_predict`, each result under ``"item"``; an id that is
    not an image item of this project gets an ``error``.
    """
    run_id, loaded = _model_of(project)
    size, channels = _input_shape(project, loaded)
    found = {
        item.pk: item
        for item in Item.objects.filter(project=project, pk__in=set(item_ids)).exclude(image="").only("id", "image")
    }
    results: list[dict[str, Any]] = []
    present: list[Item] = []
    slots: list[int] = []
    for item_id in item_ids:
        if item_id not in found:
            results.append({"item": item_id, "error": "no image item with this id in the project"})
            continue
        slots.append(len(results))
        present.append(found[item_id])
        results.append({"item": item_id})
    arrays = list(bridge.image_arrays(present, size, channels)) if present else []
    _fill(results, slots, loaded, arrays)
    return {"run": str(run_id), "classes": list(loaded.classes), "results": results}


def _fill(results: list[dict[str, Any]], slots: list[int], loaded: LoadedModel, arrays: list[bridge.Pixels]) -> None:
    if not arrays:
        return
    rows = bridge.pixels_predict(loaded, arrays, num_threads=settings.CROWDLOOP_PREDICT_THREADS)
    for slot, (label, probabilities) in zip(slots, rows, strict=True):
        results[slot].update(label=label, probabilities=probabilities)


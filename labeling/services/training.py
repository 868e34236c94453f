"""Training runs: a PyTorch model on human + pseudo labels, on the ``gpu`` queue.

The training set is gold + human consensus + accepted pseudo-labels (weighted by their
confidence; ``use_pseudo_labels: false`` leaves them out). Early stopping watches a
validation set of **human-verified** labels only: a fixed share of the gold and
consensus items, chosen by item id so that it stays put between runs. On the demo,
the held-out split is also scored against its evaluation truth.

One run per project at a time. A run records its progress each epoch (epoch, history,
heartbeat) and checkpoints; a worker killed mid-run leaves a run that is resumed when
the task is redelivered, or marked failed by :func:`training_runs_reap` once its
heartbeat is older than the timeout. Never "running" for ever.
"""
import hashlib
import json
import logging
from datetime import timedelta
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from labeling import bridge
from labeling.models import (
    Answer,
    DataKind,
    EvaluationTruth,
    Item,
    Prediction,
    Project,
    PseudoLabel,
    RunStatus,
    Split,
    TrainingRun,
)
from labeling.selectors import human_labels
from labeling.services.training_config import (  # noqa: F401 (TrainingRefused is this module's error too)
    APP_KEYS,
    TrainingConfigInvalid,
    TrainingRefused,
    training_config_validate,
    transfer_source_get,
)

logger = logging.getLogger(__name__)

ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)


def default_config(project):
    """The config a run of ``project`` gets unless told otherwise."""
    config = {
        "arch": "cnn",
        "epochs": 40,
        "patience": 8,
        "batch_size": 64,
        "width": 32,
        # Digits and texts must not be flipped; shifts and occlusion fight overfitting.
        "augment": {"hflip": False, "shift": 1 if project.image_size <= 16 else 2, "occlusion": 0.2},
    }
    return {**config, **APP_KEYS}


def training_run_create(project, *, config=None, user=None):
    """Queue a training run for ``project`` (or return the one already queued or
    running) on behalf of ``user`` (``None``: the project's owner). Raises
    :class:`TrainingRefused` when there is nothing to train on, and
    :class:`TrainingConfigInvalid` on a bad config value or a ``transfer_from`` run
    that is not ``user``'s to start from."""
    if project.data_kind != DataKind.IMAGE:
        raise TrainingRefused("training runs on image projects; text projects are not supported yet")
    requester = user if user is not None and user.is_authenticated else None
    config = training_config_validate(project, {**default_config(project), **(config or {})})
    if config["transfer_from"]:
        transfer_source_get(config["transfer_from"], project=project, requester=requester or project.owner)
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        active = TrainingRun.objects.filter(project=project, status__in=ACTIVE).first()
        if active is not None:
            return active
        labeled = human_labels(project)
        if len(labeled) < 2 * project.label_classes.count():
            raise TrainingRefused(
                f"only {len(labeled)} human-verified labels; at least two per class are needed to train"
            )
        run = TrainingRun.objects.create(
            project=project, config=config, n_epochs=int(config["epochs"]), requested_by=requester
        )
    from labeling.tasks import gpu_training_run_task

    transaction.on_commit(lambda: gpu_training_run_task.delay(str(run.pk)))
    return run


def _in_validation(item_id, share):
    digest = hashlib.sha256(f"val:{item_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < share


def _now():
    return timezone.now()


def training_run_execute(run_id):
    """Run (or resume) a queued training run; idempotent for finished runs."""
    run = TrainingRun.objects.select_related("project").get(pk=run_id)
    if run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
        return run
    timeout = timedelta(seconds=settings.CROWDLOOP_HEARTBEAT_TIMEOUT_S)
    if run.status == RunStatus.RUNNING and run.heartbeat_at and _now() - run.heartbeat_at < timeout:
        logger.info("training run %s is alive on another worker", run.pk)
        return run
    try:
        return _execute(run)
    except Exception as exc:
        logger.exception("training run %s failed", run.pk)
        TrainingRun.objects.filter(pk=run.pk).update(
            status=RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:5000], finished_at=_now()
        )
        run.refresh_from_db()
        return run


def _execute(run):
    from ml.batches import choose_device
    from ml.inference import export_model, load_model, predict
    from ml.training import fit

    project = run.project
    config = dict(run.config)
    app = {key: config.pop(key, default) for key, default in APP_KEYS.items()}
    device = str(choose_device())
    human_answers = Answer.objects.filter(item__project=project).count()
    TrainingRun.objects.filter(pk=run.pk).update(
        status=RunStatus.RUNNING, device=device, started_at=run.started_at or _now(), heartbeat_at=_now()
    )

    label_ids = list(project.label_classes.order_by("position").values_list("id", flat=True))
    run_dir = Path(settings.MEDIA_ROOT) / "runs" / str(run.pk)
    dataset = _dataset_frozen(run_dir, project, app, label_ids)
    train_ids, val_ids, human_n = dataset["train"], dataset["val"], dataset["human"]
    targets = {int(k): v for k, v in dataset["targets"].items()}
    weights = {int(k): v for k, v in dataset["weights"].items()}
    items = {item.pk: item for item in Item.objects.filter(pk__in=train_ids + val_ids).only("id", "image")}
    size = project.image_size
    channels = _channels(project)
    X_train = bridge.image_arrays([items[i] for i in train_ids], size, channels)
    y_train = np.array([targets[i] for i in train_ids], dtype=np.int64)
    w_train = np.array([weights[i] for i in train_ids], dtype=np.float32)
    X_val = bridge.image_arrays([items[i] for i in val_ids], size, channels) if val_ids else None
    y_val = np.array([targets[i] for i in val_ids], dtype=np.int64) if val_ids else None

    init_state = None
    if app["transfer_from"]:
        source = transfer_source_get(app["transfer_from"], project=project, requester=run.requested_by or project.owner)
        with source.artifact.open("rb") as handle:
            init_state = load_model(handle.read(), device="cpu").model.state_dict()

    checkpoint_dir = run_dir / "checkpoints"

    def on_epoch(epoch, n_epochs, metrics):
        row = {key: metrics.get(key) for key in ("epoch", "train_loss", "val_loss", "val_accuracy", "lr", "seconds")}
        row["epoch"] = epoch
        history = list(TrainingRun.objects.values_list("history", flat=True).get(pk=run.pk) or [])
        history = [h for h in history if h.get("epoch") != epoch] + [row]
        TrainingRun.objects.filter(pk=run.pk).update(epoch=epoch, n_epochs=n_epochs, history=history, heartbeat_at=_now())

    config.setdefault("n_classes", len(label_ids))
    result = fit(
        X_train, y_train, w_train, X_val, y_val, config,
        checkpoint_dir=str(checkpoint_dir), resume=True, init_state=init_state, on_epoch=on_epoch,
    )
    metrics = {
        "accuracy": result.metrics.get("accuracy"),
        "per_class": result.metrics.get("per_class_accuracy"),
        "confusion": result.metrics.get("confusion_matrix"),
        "val_n": len(val_ids),
        "train_n": len(train_ids),
        "pseudo_n": len(train_ids) - (human_n - len(val_ids)),
        "human_answers": human_answers,
        "human_labels": human_n,
        "best_epoch": result.best_epoch,
        "stop_reason": result.stop_reason,
    }
    classes = [name for name in project.label_classes.order_by("position").values_list("name", flat=True)]
    artifact = export_model(result.best_state, result.config, classes)

    pool = list(Item.objects.filter(project=project).only("id", "image", "split").order_by("id"))
    predicted, probabilities = predict(result.model, bridge.image_arrays(pool, size, channels))
    confidences = probabilities.max(axis=1)
    truth = dict(EvaluationTruth.objects.filter(item__project=project, item__split=Split.HOLDOUT).values_list("item_id", "label_id"))
    if truth:
        hits = [label_ids[int(p)] == truth[item.pk] for item, p in zip(pool, predicted, strict=True) if item.pk in truth]
        metrics["eval_accuracy"] = float(np.mean(hits))
        metrics["eval_n"] = len(hits)

    with transaction.atomic():
        Prediction.objects.filter(run=run).delete()
        Prediction.objects.bulk_create(
            [
                Prediction(item=item, run=run, label_id=label_ids[int(p)], confidence=float(min(max(c, 0.0), 1.0)))
                for item, p, c in zip(pool, predicted, confidences, strict=True)
            ],
            batch_size=2000,
        )
        run.refresh_from_db()
        run.artifact.save(f"{run.pk}/model.zip", ContentFile(artifact), save=False)
        run.status = RunStatus.SUCCEEDED
        run.metrics = metrics
        run.config = {**run.config, "resolved": result.config}
        run.device = result.device
        run.finished_at = _now()
        run.save()
        _active_model_choose(project, run, {i: label_ids[targets[i]] for i in val_ids})
    return run


def _dataset_frozen(run_dir, project, app, label_ids):
    """The run's training and validation rows, chosen once and kept in the run's folder,
    so that a run resumed after a crash trains on the data its checkpoint was made with."""
    path = run_dir / "dataset.json"
    if path.exists():
        return json.loads(path.read_text())
    position = {label_id: i for i, label_id in enumerate(label_ids)}
    human = human_labels(project)
    val_ids = sorted(i for i in human if _in_validation(i, app["val_share"]))
    train_ids = sorted(set(human) - set(val_ids))
    weights = {i: 1.0 for i in train_ids}
    targets = {i: position[human[i]] for i in human}
    if app["use_pseudo_labels"]:
        for item_id, label_id, confidence in PseudoLabel.objects.filter(
            item__project=project, item__split=Split.POOL, accepted=True, confidence__gte=app["pseudo_min_confidence"]
        ).exclude(item_id__in=list(human)).order_by("item_id").values_list("item_id", "label_id", "confidence"):
            train_ids.append(item_id)
            weights[item_id] = float(confidence)
            targets[item_id] = position[label_id]
    dataset = {"train": train_ids, "val": val_ids, "human": len(human), "targets": targets, "weights": weights}
    run_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dataset))
    return json.loads(path.read_text())


def _channels(project):
    first = Item.objects.filter(project=project).exclude(image="").only("image").first()
    if first is None:
        return 1
    from django.core.files.storage import default_storage
    from PIL import Image

    with default_storage.open(first.image.name, "rb") as handle, Image.open(handle) as image:
        return 1 if image.mode == "L" else 3


def _active_model_choose(project, run, validation):
    """The new run becomes the active model unless the current one does better on the
    new run's validation set (``{item_id: label_id}``, human-verified). Scores from
    different, growing validation sets are never compared with each other."""
    project.refresh_from_db(fields=["active_run"])
    current = project.active_run
    if current is not None and current.status == RunStatus.SUCCEEDED and validation:
        predicted = dict(
            Prediction.objects.filter(run=current, item_id__in=list(validation)).values_list("item_id", "label_id")
        )
        mine = dict(Prediction.objects.filter(run=run, item_id__in=list(validation)).values_list("item_id", "label_id"))
        theirs = sum(predicted.get(i) == label for i, label in validation.items())
        ours = sum(mine.get(i) == label for i, label in validation.items())
        run.metrics["compared_with"] = {"run": str(current.pk), "its_accuracy": theirs / len(validation)}
        TrainingRun.objects.filter(pk=run.pk).update(metrics=run.metrics)
        if theirs > ours:
            return
    Project.objects.filter(pk=project.pk).update(active_run=run)


def training_runs_reap(now=None):
    """Mark runs whose heartbeat stopped as failed; returns how many."""
    now = now or _now()
    limit = now - timedelta(seconds=settings.CROWDLOOP_HEARTBEAT_TIMEOUT_S)
    return TrainingRun.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=limit).update(
        status=RunStatus.FAILED, error="worker lost: no heartbeat within the timeout", finished_at=now
    )


def training_maybe_start(project):
    """Queue a run when ``CROWDLOOP_TRAIN_EVERY_LABELS`` new human labels arrived since
    the last successful one; returns the run or ``None``."""
    if project.data_kind != DataKind.IMAGE:
        return None
    last = TrainingRun.objects.filter(project=project, status=RunStatus.SUCCEEDED).order_by("-created_at").first()
    since = len(human_labels(project)) - (last.metrics.get("human_labels", 0) if last else 0)
    if since < settings.CROWDLOOP_TRAIN_EVERY_LABELS:
        return None
    try:
        return training_run_create(project)
    except TrainingRefused:
        return None


def model_predict(project, data):
    """Label and class probabilities of one uploaded image under the active model."""
    from ml.inference import load_model, predict

    run = project.active_run
    if run is None or not run.artifact:
        raise TrainingRefused("this project has no trained model yet")
    with run.artifact.open("rb") as handle:
        loaded = load_model(handle.read())
    channels = loaded.config.get("in_channels", 1)
    size = loaded.config.get("image_size", project.image_size)
    size = size[0] if isinstance(size, list) else size
    X = bridge.image_bytes_array(data, size, channels)
    labels, probabilities = predict(loaded.model, X)
    return {
        "label": loaded.classes[int(labels[0])],
        "probabilities": {name: round(float(p), 6) for name, p in zip(loaded.classes, probabilities[0], strict=True)},
        "run": str(run.pk),
    }

"""Training runs: a PyTorch model on human + pseudo labels, on the ``gpu`` queue.

The training set is gold + human consensus + accepted pseudo-labels (weighted by their
confidence; ``use_pseudo_labels: false`` leaves them out). Early stopping watches a
validation set of **human-verified** labels only: a fixed share of the gold and
consensus items, chosen by item id so that it stays put between runs. On the demo,
the held-out split is also scored against its evaluation truth.

One run per project at a time. A run records its progress each epoch (epoch, history)
and checkpoints, and a thread keeps its heartbeat fresh (:mod:`labeling.services.runs`).
A worker killed mid-run leaves a run whose heartbeat stops: the next delivery of its
task, or the reaper's re-enqueue, takes it over and resumes from its last checkpoint on
the data it froze at its start. Never "running" for ever.
"""
import logging
import shutil
from datetime import datetime
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction

from labeling import bridge, clock
from labeling.models import (
    Answer,
    DataKind,
    Prediction,
    Project,
    RunStatus,
    TrainingRun,
)
from labeling.selectors import AnyUser, human_labels
from labeling.services import hot, modeling, runs
from labeling.services.outbox import task_send
from labeling.services.training_config import (  # noqa: F401 (TrainingRefused is this module's error too)
    APP_KEYS,
    TrainingConfigInvalid,
    TrainingRefused,
    training_config_validate,
    transfer_source_get,
)

logger = logging.getLogger(__name__)

ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)


def default_config(project: Project) -> dict[str, Any]:
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


def training_run_check(project: Project, config: dict[str, Any] | None = None, user: AnyUser = None) -> dict[str, Any]:
    """The full config a run of ``project`` would get on behalf of ``user`` (``None``:
    the project's owner); raises :class:`TrainingRefused` when there is nothing to train
    on, and :class:`TrainingConfigInvalid` on a bad config value or a ``transfer_from``
    run that is not ``user``'s to start from. Reads only and takes no lock, so a web
    request can refuse at once before it queues the run."""
    requester = user if user is not None and user.is_authenticated else None
    config = training_config_validate(project, {**default_config(project), **(config or {})})
    if config["model"] == "cnn" and project.data_kind != DataKind.IMAGE:
        raise TrainingConfigInvalid({"model": "a CNN trains on images; text projects use the other models"})
    if config["transfer_from"]:
        transfer_source_get(config["transfer_from"], project=project, requester=requester or project.owner)
    labeled = human_labels(project)
    if len(set(labeled.values())) < 2:
        raise TrainingRefused(
            f"only {len(labeled)} human-verified labels, in fewer than two classes; a model needs two classes"
        )
    return config


def training_run_create(project: Project, *, config: dict[str, Any] | None = None, user: AnyUser = None) -> TrainingRun:
    """Queue a training run for ``project`` (or return the one already queued or
    running) on behalf of ``user``; refuses as :func:`training_run_check` does."""
    config = training_run_check(project, config, user)
    requester = user if user is not None and user.is_authenticated else None
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        active = TrainingRun.objects.filter(project=project, status__in=ACTIVE).first()
        if active is not None:
            return active
        run = TrainingRun.objects.create(
            project=project, config=config, n_epochs=int(config["epochs"]), requested_by=requester
        )
    from labeling.tasks import gpu_training_run_task

    task_send(gpu_training_run_task, str(run.pk))
    return run


def _now() -> datetime:
    return clock.now()


def training_run_execute(run_id: UUID | str) -> TrainingRun:
    """Run, or resume from its checkpoint, a training run: queued, or running with a
    stale heartbeat (its worker was lost). A finished run, or one alive on another
    worker, is returned as it is. Raises ``TrainingRun.DoesNotExist`` for a run deleted
    with its project."""
    claimed = runs.run_claim(TrainingRun, run_id)
    if claimed is None:
        run = TrainingRun.objects.get(pk=run_id)
        if run.status == RunStatus.RUNNING:
            logger.info("training run %s is alive on %s", run.pk, run.worker)
        return run
    run = TrainingRun.objects.select_related("project").get(pk=claimed.pk)
    run.worker = claimed.worker
    try:
        with runs.run_heartbeating(run):
            return _execute(run)
    except runs.RunLost as exc:
        logger.warning("training run %s: %s", run_id, exc)
    except Exception as exc:
        logger.exception("training run %s failed", run.pk)
        runs.run_fail(run, f"{type(exc).__name__}: {exc}")
    return TrainingRun.objects.filter(pk=run_id).first() or run


def _execute(run: TrainingRun) -> TrainingRun:
    project = run.project
    config = dict(run.config)
    app = {key: config.pop(key, default) for key, default in APP_KEYS.items()}
    resumed = f"resumed by {run.worker} after epoch {run.epoch}" if run.attempts > 1 else "started"
    runs.run_progress(run, run.epoch / max(run.n_epochs, 1), resumed, device=bridge.device_name())
    transfer_source = None
    if app["transfer_from"]:  # checked again here: the run may have been queued before a change of owner
        transfer_source = transfer_source_get(
            app["transfer_from"], project=project, requester=run.requested_by or project.owner
        )
    label_ids = list(project.label_classes.order_by("position").values_list("id", flat=True))
    config.setdefault("n_classes", len(label_ids))
    human_answers = Answer.objects.filter(item__project=project).count()

    def on_epoch(epoch: int, n_epochs: int, metrics: dict[str, Any]) -> None:
        row = {key: metrics.get(key) for key in ("epoch", "train_loss", "val_loss", "val_accuracy", "lr", "seconds")}
        row["epoch"] = epoch
        history = list(TrainingRun.objects.values_list("history", flat=True).get(pk=run.pk) or [])
        history = [h for h in history if h.get("epoch") != epoch] + [row]
        runs.run_progress(run, epoch / max(n_epochs, 1), f"epoch {epoch} of {n_epochs}",
                          epoch=epoch, n_epochs=n_epochs, history=history)

    def progress(message: str) -> None:
        runs.run_progress(run, message=message)
        logger.info("training run %s: %s", run.pk, message)

    human = modeling.dataset_frozen(run, project, label_ids)
    items, proba, confidence, metrics, cnn = bridge.model_fit(
        run, project, app, config, label_ids, human, checkpoint_dir=modeling.checkpoint_dir(run),
        transfer_source=transfer_source, on_epoch=on_epoch, progress=progress,
    )
    metrics["human_answers"] = human_answers
    artifact = None
    if cnn is not None:
        classes = list(project.label_classes.order_by("position").values_list("name", flat=True))
        artifact = bridge.model_export(cnn.best_state, cnn.config, classes)
        metrics.update(best_epoch=cnn.best_epoch, stop_reason=cnn.stop_reason)

    with transaction.atomic():
        Prediction.objects.filter(run=run).delete()
        Prediction.objects.bulk_create(bridge.predictions_rows(run, items, proba, confidence, label_ids), batch_size=2000)
        run.refresh_from_db()
        fields: dict[str, Any] = {"metrics": metrics}
        if cnn is not None and artifact is not None:
            run.artifact.save(f"{run.pk}/model.zip", ContentFile(artifact), save=False)
            fields.update(artifact=run.artifact.name, config={**run.config, "resolved": cnn.config}, device=cnn.device)
        if not runs.run_succeed(run, **fields):
            raise runs.RunLost(f"training run {run.pk} was taken over before it finished")
        scratch = modeling.checkpoint_dir(run)
        transaction.on_commit(lambda: shutil.rmtree(scratch, ignore_errors=True))
        project.refresh_from_db(fields=["active_run"])
        promoted, reason = modeling.promotion_decide(project, run)
        run.metrics["promotion"] = {"promoted": promoted, "reason": reason}
        TrainingRun.objects.filter(pk=run.pk).update(metrics=run.metrics)
        if promoted:
            Project.objects.filter(pk=project.pk).update(active_run=run)
            hot.project_forget(project)
            transaction.on_commit(lambda: hot.project_forget(project))
    return run


def training_maybe_start(project: Project) -> TrainingRun | None:
    """Queue a run once the human labels grew by ``CROWDLOOP_TRAIN_GROWTH`` (at least
    ``CROWDLOOP_TRAIN_EVERY_LABELS``) since the last successful run; the first as soon as
    two classes have labels. Returns the run or ``None``."""
    from labeling.services.loop import labels_due

    last = TrainingRun.objects.filter(project=project, status=RunStatus.SUCCEEDED).order_by("-created_at").first()
    then = last.metrics.get("human_labels", 0) if last else 0
    now = len(human_labels(project))
    if last is not None and now - then < labels_due(
        then, growth=settings.CROWDLOOP_TRAIN_GROWTH, minimum=settings.CROWDLOOP_TRAIN_EVERY_LABELS
    ):
        return None
    try:
        return training_run_create(project)
    except TrainingRefused:
        return None


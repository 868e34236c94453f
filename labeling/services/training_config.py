"""Training configs: every value checked before a run is queued, and transfer only
from a successful run of a project the requester owns.

The checks are the domain's own: the API, the dashboard, the ``train`` command and the
task that executes a run all pass through them, so a bad value is a clear error with
its key, never a run that fails half-way or a 500.
"""
import math
import uuid
from collections.abc import Mapping
from typing import Any

from labeling.models import Project, RunStatus, TrainingRun

#: Keys the application reads (the rest go to :func:`ml.training.fit`).
APP_KEYS = {
    "model": "auto",  # or one kind pinned: "cnn", "spreading", "knn", "logreg"
    "use_pseudo_labels": True,
    "pseudo_min_confidence": 0.0,
    "val_share": 0.2,
    "transfer_from": None,
}
MODEL_KINDS = ("auto", "cnn", "spreading", "knn", "logreg")
#: Keys set from the project's data, never by a config.
PROJECT_KEYS = ("n_classes", "in_channels", "image_size", "in_features")
MAX_EPOCHS = 500


class TrainingRefused(ValueError):
    """The project cannot be trained now; the message says why."""


class TrainingConfigInvalid(TrainingRefused):
    """Some config values are invalid; ``errors`` maps each key to what is wrong."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(sorted(errors.items()))
        super().__init__("invalid config: " + "; ".join(f"{key}: {message}" for key, message in self.errors.items()))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def transfer_source_get(run_id: object, *, project: Project, requester: Any) -> TrainingRun:
    """The successful run ``run_id`` that a run of ``project`` may start from.

    Allowed: a run of ``project`` itself, of another project owned by ``requester``, or
    any run when ``requester`` is staff. Anything else (another tenant's run, a failed
    or unknown one) is refused with one message that does not tell which.
    """
    try:
        pk = uuid.UUID(str(run_id))
    except ValueError:
        raise TrainingConfigInvalid({"transfer_from": "must be the id of a training run"}) from None
    source = TrainingRun.objects.filter(pk=pk, status=RunStatus.SUCCEEDED).select_related("project").first()
    allowed = source is not None and bool(source.artifact) and (
        source.project_id == project.pk
        or (requester is not None and (requester.is_staff or source.project.owner_id == requester.pk))
    )
    if source is None or not allowed:
        raise TrainingConfigInvalid(
            {"transfer_from": f"no successful training run {pk} in a project you own; transfer starts only from those"}
        )
    return source


def training_config_validate(project: Project, config: object) -> dict[str, Any]:
    """``config`` (defaults already merged in) checked key by key for ``project``;
    returns it. Raises :class:`TrainingConfigInvalid` naming every bad key."""
    # ml.config, not ml.nets / ml.training: checking a config must not load PyTorch.
    from ml.config import ARCHS, MODEL_KEYS, TRAIN_DEFAULTS, resolve_config

    if not isinstance(config, dict):
        raise TrainingConfigInvalid({"config": "must be an object of config values"})
    known = set(APP_KEYS) | set(MODEL_KEYS) | set(TRAIN_DEFAULTS)
    errors = {key: "unknown config key" for key in config if key not in known}
    errors.update({key: "set from the project's data, not by a config" for key in PROJECT_KEYS if key in config})
    errors.update(_app_errors(config))
    epochs = config.get("epochs")
    if isinstance(epochs, (int, float)) and _is_number(epochs) and epochs > MAX_EPOCHS:
        errors["epochs"] = f"at most {MAX_EPOCHS}"
    arch = config.get("arch", "cnn")
    base = {"arch": arch if arch in ARCHS else "cnn", "n_classes": max(2, project.label_classes.count())}
    base.update({"in_features": 1} if base["arch"] == "mlp" else {"in_channels": 1, "image_size": project.image_size})
    ml_keys = [key for key in config if key in known and key not in APP_KEYS and key not in PROJECT_KEYS]
    for key in ml_keys:
        if key in errors:
            continue
        try:
            resolve_config({**base, key: config[key]})
        except (ValueError, TypeError) as exc:
            errors[key] = _message(exc, key)
    if not errors:
        try:
            resolve_config({**base, **{key: config[key] for key in ml_keys}})
        except (ValueError, TypeError) as exc:
            errors["config"] = _message(exc, None)
    if errors:
        raise TrainingConfigInvalid(errors)
    return config


def _message(exc: Exception, key: str | None) -> str:
    """ml's message without the ``config['key']`` prefix the field name already gives."""
    text = str(exc)
    if key is not None:
        for prefix in (f"config[{key!r}] ", f"{key} "):
            if text.startswith(prefix):
                return text[len(prefix):]
    return text


def _app_errors(config: dict[str, Any]) -> dict[str, str]:
    errors = {}
    if config.get("model", "auto") not in MODEL_KINDS:
        errors["model"] = f"must be one of {', '.join(MODEL_KINDS)}"
    if not isinstance(config.get("use_pseudo_labels", True), bool):
        errors["use_pseudo_labels"] = "must be true or false"
    confidence = config.get("pseudo_min_confidence", 0.0)
    if not (_is_number(confidence) and 0 <= confidence <= 1):
        errors["pseudo_min_confidence"] = "must be a number from 0 to 1"
    share = config.get("val_share", 0.2)
    if not (_is_number(share) and 0 <= share < 1):
        errors["val_share"] = "must be a number from 0 up to (not including) 1"
    transfer = config.get("transfer_from")
    if transfer is not None and not _is_uuid(transfer):
        errors["transfer_from"] = "must be the id of a training run"
    return errors


def _is_uuid(value: object) -> bool:
    try:
        return isinstance(value, str) and uuid.UUID(value) is not None
    except ValueError:
        return False

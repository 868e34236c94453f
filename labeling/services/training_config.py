"""Training configs: every value checked before a run is queued, and transfer only
from a successful run of a project the requester owns.

The checks are the domain's own: the API, the dashboard, the ``train`` command and the
task that executes a run all pass through them, so a bad value is a clear error with
its key, never a run that fails half-way or a 500.
"""
import uuid

from labeling.models import RunStatus, TrainingRun

#: Keys the application reads (the rest go to :func:`ml.training.fit`).
APP_KEYS = {"use_pseudo_labels": True, "pseudo_min_confidence": 0.0, "val_share": 0.2, "transfer_from": None}
#: Keys set from the project's data, never by a config.
PROJECT_KEYS = ("n_classes", "in_channels", "image_size", "in_features")
MAX_EPOCHS = 500


class TrainingRefused(ValueError):
    """The project cannot be trained now; the message says why."""


class TrainingConfigInvalid(TrainingRefused):
    """Some config values are invalid; ``errors`` maps each key to what is wrong."""

    def __init__(self, errors):
        self.errors = dict(sorted(errors.items()))
        super().__init__("invalid config: " + "; ".join(f"{key}: {message}" for key, message in self.errors.items()))


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and abs(value) != float("inf")


def transfer_source_get(run_id, *, project, requester):
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
    if not allowed:
        raise TrainingConfigInvalid(
            {"transfer_from": f"no successful training run {pk} in a project you own; transfer starts only from those"}
        )
    return source


def training_config_validate(project, config):
    """``config`` (defaults already merged in) checked key by key for ``project``;
    returns it. Raises :class:`TrainingConfigInvalid` naming every bad key."""
    from ml.nets import MODEL_KEYS
    from ml.training import TRAIN_DEFAULTS

    known = set(APP_KEYS) | set(MODEL_KEYS) | set(TRAIN_DEFAULTS) | {"augment"}
    errors = {key: "unknown config key" for key in config if key not in known}
    if errors:
        raise TrainingConfigInvalid(errors)
    return config

"""What a training run learns from, and whether it may become the project's active model.

The human labels are frozen with the run (:func:`dataset_frozen`); the model is fitted
by :func:`labeling.bridge.model_fit`. Promotion is honest (:func:`promotion_decide`): a
run becomes active only when its out-of-sample accuracy interval lies above the
majority-class baseline, and it does at least as well as the current active model on the
human labels that neither trained on.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from labeling import bridge
from labeling.bridge import MIN_COMPARED
from labeling.models import Prediction, Project, TrainingRun
from labeling.selectors import human_labels


@dataclass(frozen=True)
class FrozenDataset:
    """The human labels a run learns from, ``{item_id: class position}``, as stored with
    the run: a JSON list of ``[item_id, position]`` pairs, so ids stay ints."""

    human: dict[int, int]

    def to_json(self) -> bytes:
        return json.dumps({"human": sorted(self.human.items())}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> FrozenDataset:
        human = json.loads(data)["human"]
        if isinstance(human, dict):  # stored by an earlier version, as a JSON object
            return cls({int(item_id): position for item_id, position in human.items()})
        return cls({item_id: position for item_id, position in human})


def _dataset_name(run: TrainingRun) -> str:
    return f"runs/{run.pk}/dataset.json"


def dataset_frozen(run: TrainingRun, project: Project, label_ids: Sequence[int]) -> dict[int, int]:
    """The human labels a run learns from (``{item_id: position}``), chosen once and kept
    with the run, so that a run resumed after a crash fits the data it started with."""
    name = _dataset_name(run)
    if default_storage.exists(name):
        with default_storage.open(name, "rb") as handle:
            return FrozenDataset.from_json(handle.read()).human
    position = {label_id: i for i, label_id in enumerate(label_ids)}
    dataset = FrozenDataset({item_id: position[label_id] for item_id, label_id in human_labels(project).items()})
    default_storage.save(name, ContentFile(dataset.to_json()))
    return dataset.human


def checkpoint_dir(run: TrainingRun) -> Path:
    """The folder of ``run``'s resumable checkpoints, under ``MEDIA_ROOT`` so that a worker
    on another host resumes a lost run (the media storage must be a file system every
    worker host mounts); deleted once the run succeeded and its model file is saved."""
    return Path(default_storage.path(f"runs/{run.pk}/checkpoints"))


def promotion_decide(project: Project, run: TrainingRun) -> tuple[bool, str]:
    """Whether ``run`` becomes the active model, with the reason; never on luck.

    The run's out-of-sample estimate (cross-validation, or the validation share for a
    CNN) must have its interval's lower bound above the majority-class share. Then it
    is compared with the current active model on the human labels that neither trained
    on: the run's out-of-fold predictions against the current model's predictions for
    labels that arrived after it was trained. With fewer than ``MIN_COMPARED`` such
    items, their own estimates are compared."""
    estimate, baseline = run.metrics.get("estimate") or {}, run.metrics.get("baseline", 1.0)
    if not estimate.get("n") or estimate["low"] <= baseline:
        return False, (
            f"not promoted: accuracy {_pct(estimate.get('accuracy'))} (interval from {_pct(estimate.get('low'))}, "
            f"{estimate.get('n', 0)} items) is not clearly above the majority-class share {_pct(baseline)}"
        )
    current = project.active_run
    if current is None or current.pk == run.pk:
        return True, "promoted: the project's first model above the baseline"
    theirs_trained = set(dataset_frozen_ids(current))
    oof = {int(k): v for k, v in (run.metrics.get("oof") or {}).items()}
    shared = [i for i in oof if i not in theirs_trained]
    positions = {label_id: i for i, label_id in enumerate(bridge.label_positions(project)[1])}
    truth = {i: positions[label] for i, label in human_labels(project).items() if i in set(shared)}
    shared = [i for i in shared if i in truth]
    if len(shared) >= MIN_COMPARED:
        theirs = dict(Prediction.objects.filter(run=current, item_id__in=shared).values_list("item_id", "label_id"))
        mine = sum(oof[i] == truth[i] for i in shared)
        other = sum(i in theirs and positions.get(theirs[i]) == truth[i] for i in shared)
        verdict = mine >= other
        return verdict, (
            f"{'promoted' if verdict else 'kept, not promoted'}: {mine} of {len(shared)} right against the active "
            f"model's {other}, on labels neither trained on"
        )
    other_estimate = (current.metrics or {}).get("estimate") or {}
    verdict = estimate["accuracy"] >= (other_estimate.get("accuracy") or 0.0)
    return verdict, (
        f"{'promoted' if verdict else 'kept, not promoted'}: estimated {_pct(estimate['accuracy'])} against the "
        f"active model's {_pct(other_estimate.get('accuracy'))} (too few shared unseen labels to compare directly)"
    )


def dataset_frozen_ids(run: TrainingRun) -> list[int]:
    """Item ids of the human labels ``run`` learned from (empty for an unknown run)."""
    name = _dataset_name(run)
    if not default_storage.exists(name):
        return []
    with default_storage.open(name, "rb") as handle:
        return list(FrozenDataset.from_json(handle.read()).human)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"

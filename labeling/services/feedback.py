"""Feedback on missed control items: a lesson for trusted workers, never a leak.

Telling someone the label of a control item gives that label away, so the widget never
explains a miss, and the worker UI explains one only when the project allows it, to a
worker who is already trusted (enough control answers, and the lower Wilson bound of
their accuracy above a threshold), at most ``CROWDLOOP_FEEDBACK_PER_DAY`` items a day.
An explained item is recorded on the worker's :class:`ControlExposure` and is no
longer control for that worker.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Q

from labeling.models import Answer, ControlExposure, Item, LabelClass, Project, Worker


def feedback_trusted(*, controls: int, correct: int) -> bool:
    """Whether a worker with ``correct`` of ``controls`` control answers right may be told
    the label of an item they missed."""
    if controls < settings.CROWDLOOP_FEEDBACK_MIN_CONTROLS or controls <= 0:
        return False
    z, p = 1.96, correct / controls
    centre = p + z * z / (2 * controls)
    spread = z * math.sqrt(p * (1 - p) / controls + z * z / (4 * controls * controls))
    return (centre - spread) / (1 + z * z / controls) >= settings.CROWDLOOP_FEEDBACK_MIN_ACCURACY


def explained_item_ids(worker: Worker, item_ids: Iterable[int]) -> set[int]:
    """The items among ``item_ids`` whose label ``worker`` was told: not control for them."""
    return set(
        ControlExposure.objects.filter(worker=worker, item_id__in=item_ids, explained_at__isnull=False).values_list(
            "item_id", flat=True
        )
    )


class FeedbackBudget:
    """What one batch of a worker's answers may explain. Reads the worker's standing once,
    on the first miss; call inside the batch's transaction."""

    def __init__(self, worker: Worker, project: Project, now: datetime) -> None:
        self.worker, self.project, self.now = worker, project, now
        self._left: int | None = None

    def _remaining(self) -> int:
        if self._left is None:
            mine = Answer.objects.filter(worker=self.worker, item__project=self.project, correct__isnull=False)
            counts = mine.aggregate(total=Count("id"), right=Count("id", filter=Q(correct=True)))
            if not feedback_trusted(controls=counts["total"], correct=counts["right"]):
                self._left = 0
            else:
                since = self.now - timedelta(days=1)
                today = ControlExposure.objects.filter(worker=self.worker, explained_at__gte=since).count()
                self._left = max(settings.CROWDLOOP_FEEDBACK_PER_DAY - today, 0)
        return self._left

    def explain(self, item: Item, control_label: LabelClass | None) -> dict[str, Any] | None:
        """The feedback on a missed control ``item`` with label ``control_label``, recorded
        as explained, or ``None`` when this worker may not be told."""
        if not self.project.show_control_feedback or control_label is None or self._remaining() <= 0:
            return None
        self._left = self._remaining() - 1
        updated = ControlExposure.objects.filter(worker=self.worker, item=item).update(explained_at=self.now)
        if not updated:
            ControlExposure.objects.create(worker=self.worker, item=item, served_at=self.now, explained_at=self.now)
        return feedback_payload(control_label)


def feedback_payload(control_label: LabelClass) -> dict[str, Any]:
    return {"correct": False, "label": control_label.name, "message": f"That one was a {control_label.name}."}

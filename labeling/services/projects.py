"""Projects, their label classes and their precomputed counters."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count
from django.utils.text import slugify

from labeling.models import Answer, Item, KnownLabel, LabelClass, Project, ProjectStats

MAX_LABEL_CHARS: int = LabelClass._meta.get_field("name").max_length or 0


def project_create(*, name: str, labels: Iterable[object], data_kind: str = "image", slug: str | None = None,
                   owner: User | None = None, **options: Any) -> Project:
    """Create a project with its label classes in the given order.

    ``slug`` defaults to the slugified name; with no labels, an import of class folders
    brings them. Raises :class:`ValidationError` (with
    field names) for empty or repeated labels, a taken slug or bad options.
    """
    names = [str(label).strip() for label in labels]
    if any(not label for label in names):
        raise ValidationError({"labels": "label names must not be empty"})
    if any(len(label) > MAX_LABEL_CHARS for label in names):
        raise ValidationError({"labels": f"label names have at most {MAX_LABEL_CHARS} characters"})
    if len(set(names)) != len(names):
        raise ValidationError({"labels": "label names must be unique"})
    with transaction.atomic():
        project = Project(name=name, slug=slug or slugify(name), data_kind=data_kind, owner=owner, **options)
        project.full_clean()
        project.save()
        LabelClass.objects.bulk_create(
            [LabelClass(project=project, name=label, position=i) for i, label in enumerate(names)]
        )
    return project


PROJECT_SETTINGS = (
    "name", "description", "answers_per_item", "max_answers_per_item", "gold_share", "consensus_threshold",
    "pseudo_label_precision", "open_to_all_workers", "show_control_feedback",
)


def project_update(project: Project, **fields: Any) -> Project:
    """Change some of ``project``'s settings (:data:`PROJECT_SETTINGS`); raises
    :class:`ValidationError` (with field names) for a value the model refuses, and
    ``ValueError`` for a field that is not a setting (the slug, kind and labels stay)."""
    unknown = sorted(set(fields) - set(PROJECT_SETTINGS))
    if unknown:
        raise ValueError(f"not project settings: {', '.join(unknown)}")
    for field, value in fields.items():
        setattr(project, field, value)
    project.full_clean()
    if fields:
        project.save(update_fields=list(fields))
    return project


def project_stats_refresh(project: Project) -> ProjectStats:
    """Recount a project's items and answers into its :class:`ProjectStats` row.

    Idempotent: the same data gives the same row. Pages read this row instead of
    counting whole tables per request.
    """
    by_status = dict(
        Item.objects.filter(project=project).values_list("status").annotate(n=Count("id")).order_by()
    )
    stats, _ = ProjectStats.objects.update_or_create(
        project=project,
        defaults={
            "items_by_status": by_status,
            "items_total": sum(by_status.values()),
            "known_total": KnownLabel.objects.filter(item__project=project).count(),
            "answers_total": Answer.objects.filter(item__project=project).count(),
        },
    )
    return stats

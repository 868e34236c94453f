"""Agreement between workers: a project's counted answers as a ratings table for
:mod:`ml.agreement`, and its statistics back as plain numbers."""
from __future__ import annotations

import math
from typing import Any

from django.db.models import Count

from labeling.bridge.aggregation import counted_answers, label_positions
from labeling.models import Project
from ml.agreement import fleiss_kappa, krippendorff_alpha, ratings_table


def answers_agreement(project: Project) -> dict[str, Any]:
    """Fleiss' kappa and Krippendorff's alpha over the counted answers of ``project``, in
    one grouped query: ``{"items", "answers", "fleiss_kappa", "krippendorff_alpha"}``, the
    items with at least two answers and their answers, each statistic rounded to four
    places, or ``None`` when undefined."""
    positions, label_ids = label_positions(project)
    rows = list(counted_answers(project).values_list("item_id", "label_id").annotate(n=Count("id")).order_by())
    per_item: dict[int, int] = {}
    for item_id, _, n in rows:
        per_item[item_id] = per_item.get(item_id, 0) + n
    rated = [item for item, n in per_item.items() if n >= 2]
    result: dict[str, Any] = {
        "items": len(rated),
        "answers": sum(per_item[item] for item in rated),
        "fleiss_kappa": None,
        "krippendorff_alpha": None,
    }
    if rated and label_ids:
        table = ratings_table(
            [r[0] for r in rows], [positions[r[1]] for r in rows], [r[2] for r in rows], n_categories=len(label_ids)
        )
        for name, measure in (("fleiss_kappa", fleiss_kappa), ("krippendorff_alpha", krippendorff_alpha)):
            value = measure(table)
            result[name] = None if math.isnan(value) else round(value, 4)
    return result

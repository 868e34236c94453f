"""Reads about single items."""

from __future__ import annotations

from labeling.models import Consensus, Item, ItemStatus, KnownLabel


def item_explain(item: Item) -> str:
    """Why an item is (not) labeled, in words, for the admin and the dashboard."""
    project = item.project
    if KnownLabel.objects.filter(item=item).exists():
        return "known label (gold or settled by hand)"
    consensus = Consensus.objects.filter(item=item).first()
    if consensus is None or consensus.n_answers == 0:
        return "no answers yet"
    parts = [
        f"top posterior {consensus.confidence:.3f} (threshold {project.consensus_threshold:.2f})",
        f"{consensus.n_answers} answers (minimum {project.answers_per_item}, cap {project.max_answers_per_item})",
    ]
    if item.status == ItemStatus.LABELED:
        return "labeled: " + ", ".join(parts)
    if item.status == ItemStatus.REVIEW:
        return "needs review: still uncertain at the answer cap; " + ", ".join(parts)
    return "still uncertain, served again: " + ", ".join(parts)

"""The label-noise audit's arrays: out-of-fold class probabilities of the cheap
candidates on every given label, scored by confident learning (:mod:`ml.noise`). The
audit's service (:mod:`labeling.services.audit`) decides what to do with the suspects."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from labeling.bridge.features import Progress, representation
from labeling.bridge.items import labels_array
from labeling.models import Item, Project


@dataclass(frozen=True)
class NoiseFit:
    """Suspect labels ``(item_id, given label id, model label id, score)`` in the order
    confident learning ranks them, and what the audit records: the representation, the
    best candidate, its out-of-fold accuracy and the estimated share of wrong labels."""

    suspects: list[tuple[int, int, int, float]]
    representation: str
    model: str
    oof_accuracy: float
    noise_rate: float


def label_noise(project: Project, items: Sequence[Item], given: Mapping[int, int], progress: Progress) -> NoiseFit:
    """Cross-validate the cheap candidates on the given labels ``given`` (``{item_id:
    label_id}``) of ``items`` and find the labels they confidently disagree with."""
    from ml.model_selection import CandidateSelector
    from ml.noise import estimated_noise_rate, find_label_issues, label_quality_scores

    y, label_ids = labels_array(project, items, given)
    X, chosen, _ = representation(project, items, y)
    progress(0.5, "cross-validating candidates")
    selector = CandidateSelector(random_state=0).fit(X, y, n_classes=len(label_ids))
    proba = selector.oof_proba_
    suspects, suggested = find_label_issues(y, proba, filter_by="prune_by_noise_rate")
    scores = label_quality_scores(y, proba, "normalized_margin")
    rows = [(items[i].pk, label_ids[y[i]], label_ids[suggested[i]], float(scores[i])) for i in suspects]
    return NoiseFit(
        suspects=rows, representation=chosen, model=selector.best_,
        oof_accuracy=selector.scores_[selector.best_].accuracy, noise_rate=estimated_noise_rate(y, proba),
    )

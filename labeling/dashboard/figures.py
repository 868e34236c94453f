"""The dashboard's figures: selector and aggregate data turned into SVG charts.

Only layout decisions live here (which series, which colours, which titles); drawing is
:mod:`labeling.dashboard.charts`, data is the selectors and aggregates.
"""

from django.urls import reverse

from labeling.dashboard import charts
from labeling.dashboard.aggregates import (
    HUMAN_SOURCES,
    SOURCE_NAMES,
    SOURCES,
    TRUE_LABEL_SOURCES,
    UNLABELED_SOURCES,
)
from labeling.dashboard.selectors import ACTIVE, label_classes

#: Marker shapes on the cluster map when colour shows the label: shape shows the source.
MAP_SHAPES = {
    "gold": "square",
    "settled": "square",
    "consensus": "dot",
    "verified": "dot",
    "pseudo": "ring",
    "model": "small",
    "review": "ring",
    "none": "small",
}


def label_counts(breakdown, answers_total):
    """The pool's labels by kind: people's labels, pseudo-labels, and items with no label
    (a model's guess is not a label), with answers spent per label."""
    sources = breakdown["sources"]
    human = sum(sources[key] for key in HUMAN_SOURCES)
    labels = sum(sources[key] for key in TRUE_LABEL_SOURCES)
    return {
        "pool": breakdown["pool_total"],
        "holdout": breakdown["holdout_total"],
        "human": human,
        "pseudo": sources["pseudo"],
        "labels": labels,
        "no_label": sum(sources[key] for key in UNLABELED_SOURCES),
        "model_guess": sources["model"],
        "review": sources["review"],
        "answers_per_human_label": answers_total / human if human else None,
        "answers_per_label": answers_total / labels if labels else None,
    }


def label_sources(breakdown):
    """The label-source table in two groups (labels, then pool items without one) and
    its stacked bar. Rows: ``(name, count, css, key)``."""
    sources = breakdown["sources"]

    def rows(keys):
        return [(SOURCE_NAMES[key], sources[key], f"src-{key}", key) for key in keys]

    groups = [
        {"title": "Labels", "rows": rows(TRUE_LABEL_SOURCES), "total": sum(sources[k] for k in TRUE_LABEL_SOURCES)},
        {"title": "No label yet", "rows": rows(UNLABELED_SOURCES), "total": sum(sources[k] for k in UNLABELED_SOURCES)},
    ]
    bar = charts.stack_bar(
        [(SOURCE_NAMES[key], sources[key], f"src-{key}") for key, _ in SOURCES], label="Pool items by label source"
    )
    return groups, bar


def label_distribution(classes, breakdown):
    """Labels per class by source; model guesses are not labels and are left out."""
    rows = [
        (
            label["name"],
            [
                (SOURCE_NAMES[source], breakdown["per_class"].get(label["id"], {}).get(source, 0), f"src-{source}")
                for source in TRUE_LABEL_SOURCES
            ],
        )
        for label in classes
    ]
    if not any(value for _, segments in rows for _, value, _ in segments):
        return None
    return charts.responsive(
        charts.hbar_chart,
        rows=rows,
        title="Labels per class, by source",
        x_label="items",
        legend=[(SOURCE_NAMES[source], f"src-{source}") for source in TRUE_LABEL_SOURCES],
    )


def throughput(activity):
    """Answers per hour and per day: ``[{"title", "chart", "empty"}]``, ``chart`` is
    ``None`` when the period has no answer (the page says so in words)."""
    figures = []
    for key, title, x_label, every, empty in (
        ("hourly", "Answers per hour, last 48 hours (UTC)", "hour (UTC)", None, "No answers in the last 48 hours."),
        ("daily", "Answers per day, last 30 days (UTC)", "day", 5, "No answers in the last 30 days."),
    ):
        buckets = activity[key]
        chart = None
        if any(value for _, _, value in buckets):
            chart = charts.responsive(
                charts.column_chart, buckets=buckets, title=title, x_label=x_label, y_label="answers", label_every=every
            )
        figures.append({"title": title, "chart": chart, "empty": empty})
    return figures


def worker_confusion(skill, classes, name):
    if skill is None or not skill.confusion:
        return None
    return charts.heatmap(
        [[round(v, 3) for v in row] for row in skill.confusion],
        [c["name"] for c in classes],
        title=f"Estimated confusion matrix of {name}",
        x_label="answered",
        y_label="true",
    )


def posterior(consensus, classes, threshold):
    if consensus is None or not consensus.posterior or len(consensus.posterior) != len(classes):
        return None
    return charts.responsive(
        charts.hbar_chart,
        rows=[(c["name"], [("", p, c["css"])]) for c, p in zip(classes, consensus.posterior, strict=True)],
        title="Posterior over the classes",
        x_label="probability",
        percent=True,
        x_max=1,
        marker=threshold,
        marker_label=f"threshold {threshold:.2f}",
    )


def cluster_map(project, classes, points, by):
    """The map of :func:`~labeling.dashboard.aggregates.cluster_points`, coloured by
    label (shape: source) or by source; each point links to its item."""
    css_of = {c["id"]: c["css"] for c in classes}
    names = {c["id"]: c["name"] for c in classes}
    marks = []
    for item_id, x, y, cluster, representative, source, label in points:
        if by == "label":
            css, shape = css_of.get(label, "unlabeled"), MAP_SHAPES[source]
        else:
            css, shape = f"src-{source}", "small" if source in ("none", "model") else "dot"
        title = f"#{item_id} · {names.get(label, 'no label')} · {SOURCE_NAMES[source]} · cluster {cluster}"
        marks.append(
            {
                "x": x,
                "y": y,
                "css": css,
                "shape": shape,
                "href": reverse("dashboard:item", args=[project.slug, item_id]),
                "title": title + (" · representative" if representative else ""),
            }
        )
    if by == "label":
        legend = [(c["name"], c["css"], "dot") for c in classes] + [
            ("gold / settled", "neutral", "square"),
            ("human", "neutral", "dot"),
            ("pseudo-label / review", "neutral", "ring"),
            ("model / none", "neutral", "small"),
        ]
    else:
        legend = [(name, f"src-{key}", "dot") for key, name in SOURCES]
    chart = charts.scatter_map(marks, title="Items on the 2-D map of the embedding", legend=None)
    return chart, legend


def _per_class_values(values, names):
    if isinstance(values, dict):
        return [values.get(name, values.get(str(i))) for i, name in enumerate(names)]
    return list(values)


def run_panel(project, run):
    """Context of ``dashboard/_run_panel.html``: one run's curves, confusion matrix and
    accuracy per class."""
    classes = label_classes(project)
    names = [c["name"] for c in classes]
    history = run.history or []

    def series(name, css, key):
        return {"name": name, "css": css, "points": [(h.get("epoch"), h.get(key)) for h in history]}

    loss = charts.responsive(
        charts.line_chart,
        series=[series("training loss", "s-train", "train_loss"), series("validation loss", "s-val", "val_loss")],
        title="Loss per epoch",
        x_label="epoch",
        y_label="loss",
    )
    accuracy = charts.responsive(
        charts.line_chart,
        series=[series("validation accuracy", "s-acc", "val_accuracy")],
        title="Validation accuracy per epoch",
        x_label="epoch",
        y_label="accuracy",
        y_domain=(0, 1),
        percent=True,
    )
    metrics = run.metrics or {}
    confusion = per_class = None
    if metrics.get("confusion"):
        confusion = charts.heatmap(metrics["confusion"], names, title="Confusion matrix on the validation set")
    if metrics.get("per_class"):
        values = _per_class_values(metrics["per_class"], names)
        per_class = charts.responsive(
            charts.hbar_chart,
            rows=[(c["name"], [("accuracy", v, c["css"])]) for c, v in zip(classes, values) if v is not None],
            title="Accuracy per class",
            x_label="accuracy",
            percent=True,
            x_max=1,
        )
    return {
        "run": run,
        "loss_chart": loss,
        "accuracy_chart": accuracy,
        "confusion": confusion,
        "per_class": per_class,
        "metrics": metrics,
        "active": run.status in ACTIVE,
    }


def learning_curve(curve):
    """Model accuracy against human answers spent, one point per succeeded run."""
    return charts.responsive(
        charts.line_chart,
        series=[
            {"name": "validation accuracy", "css": "s-acc", "points": [(a, acc) for a, acc, _, _ in curve]},
            {
                "name": "accuracy on evaluation truth (held-out)",
                "css": "s-eval",
                "points": [(a, ev) for a, _, ev, _ in curve],
            },
        ],
        title="Learning curve: model accuracy against human answers spent",
        x_label="human answers spent when the run started",
        y_label="accuracy",
        y_domain=(0, 1),
        percent=True,
    )

"""The dashboard's figures: selector and aggregate data turned into SVG charts.

Only layout decisions live here (which series, which colours, which titles); drawing is
:mod:`labeling.dashboard.charts`, data is the selectors and aggregates.
"""

from django.urls import reverse

from labeling.dashboard import charts
from labeling.dashboard.aggregates import LABEL_SOURCES, SOURCE_NAMES, SOURCES
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


def label_sources(breakdown):
    """Rows ``(name, count, css, key)`` of the label-source table and its stacked bar."""
    rows = [(name, breakdown["sources"][key], f"src-{key}", key) for key, name in SOURCES]
    bar = charts.stack_bar([(name, n, css) for name, n, css, _ in rows], label="Pool items by label source")
    return rows, bar


def label_distribution(classes, breakdown):
    rows = [
        (
            label["name"],
            [
                (SOURCE_NAMES[source], breakdown["per_class"].get(label["id"], {}).get(source, 0), f"src-{source}")
                for source in LABEL_SOURCES
            ],
        )
        for label in classes
    ]
    return charts.hbar_chart(
        rows,
        title="Labels per class, by source",
        x_label="items",
        legend=[(SOURCE_NAMES[source], f"src-{source}") for source in LABEL_SOURCES],
    )


def throughput(activity):
    """Answers per hour and per day, as two column charts."""
    hourly = charts.column_chart(
        activity["hourly"], title="Answers per hour, last 48 hours (UTC)", x_label="hour (UTC)", y_label="answers"
    )
    daily = charts.column_chart(
        activity["daily"], title="Answers per day, last 30 days", x_label="day", y_label="answers", label_every=5
    )
    return hourly, daily


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
    return charts.hbar_chart(
        [(c["name"], [("", p, c["css"])]) for c, p in zip(classes, consensus.posterior, strict=True)],
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
    return charts.scatter_map(marks, title="Items on the 2-D map of the embedding", legend=legend)


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

    loss = charts.line_chart(
        [series("training loss", "s-train", "train_loss"), series("validation loss", "s-val", "val_loss")],
        title="Loss per epoch",
        x_label="epoch",
        y_label="loss",
    )
    accuracy = charts.line_chart(
        [series("validation accuracy", "s-acc", "val_accuracy")],
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
        per_class = charts.hbar_chart(
            [(c["name"], [("accuracy", v, c["css"])]) for c, v in zip(classes, values) if v is not None],
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
    return charts.line_chart(
        [
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

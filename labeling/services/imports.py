"""Dataset import: normalise entries from a reader and write them batch by batch.

Each batch is one transaction: a crash half way leaves no half batch and no orphan file.
Content already in the project (same SHA-256) is skipped before it is decoded. An
``on_batch(cursor, report)`` hook runs inside each batch's transaction, so that an import
job commits its cursor with its items and resumes after a crash exactly where it stopped.
"""
import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from labeling.models import (
    DataKind,
    EvaluationTruth,
    Item,
    ItemStatus,
    KnownLabel,
    KnownLabelSource,
    LabelClass,
    Project,
    PseudoLabel,
    Split,
)
from labeling.services.media import ImageRejected, NormalisedImage, image_normalise
from labeling.services.readers import (  # noqa: F401  (re-exported for callers)
    ImportEntry,
    ImportProblem,
    ImportRefused,
    ImportReport,
    StrPath,
    read_source,
)

logger = logging.getLogger(__name__)

Progress = Callable[[int], None]
OnBatch = Callable[[int, ImportReport], None]


@dataclass
class _Prepared:
    entry: ImportEntry
    checksum: str
    label: LabelClass | None
    original: bytes | None = None
    image: NormalisedImage | None = None


class LabelRole:
    """What an imported label means: a gold answer, evaluation truth, or nothing."""

    GOLD = "gold"
    EVALUATION = "evaluation"


def items_import(
    project: Project, entries: Sequence[ImportEntry], *, problems: Iterable[ImportProblem] = (),
    label_role: str = LabelRole.GOLD, progress: Progress | None = None, batch_size: int | None = None,
    start: int = 0, report: ImportReport | None = None, on_batch: OnBatch | None = None,
) -> ImportReport:
    """Import ``entries`` into ``project`` and return an :class:`ImportReport`.

    Items whose content is already in the project are counted as duplicates and
    skipped before any decoding. Labels become gold answers (``label_role="gold"``) or
    evaluation truth; an unknown label is a problem for that entry. When the project
    has no label classes yet, the labels of the source become its classes.
    ``progress(n)`` is called as entries are processed. A resumed import passes
    ``start`` (entries already imported) and the ``report`` so far; ``on_batch(cursor,
    report)`` runs inside each batch's transaction, ``cursor`` being the entries done.
    """
    batch_size = batch_size or settings.CROWDLOOP_IMPORT_BATCH_SIZE
    report = report if report is not None else ImportReport(problems=list(problems))
    classes = {label.name: label for label in project.label_classes.all()}
    if not classes:
        names = sorted({entry.label for entry in entries if entry.label}, key=_natural_key)
        if names:
            classes = _label_classes_create(project, names)
            report.label_classes_created = names
    seen: set[str] = set()
    batch: list[_Prepared] = []
    for index, entry in enumerate(entries[start:], start=start):
        prepared = _read_entry(project, entry, classes)
        if isinstance(prepared, str):
            report.problems.append(ImportProblem(entry.name, prepared))
        elif prepared.checksum in seen:
            report.duplicates += 1
        else:
            seen.add(prepared.checksum)
            batch.append(prepared)
            if len(batch) >= batch_size:
                _import_batch(project, batch, label_role, report, progress, _hook(on_batch, index + 1, report))
                batch = []
            continue
        if progress:
            progress(1)
    if batch:
        _import_batch(project, batch, label_role, report, progress, _hook(on_batch, len(entries), report))
    logger.info(
        "import into %s: %d created, %d duplicates, %d problems",
        project.slug, report.created, report.duplicates, len(report.problems),
    )
    return report


def _natural_key(name: str) -> tuple[int, int, str]:
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def _label_classes_create(project: Project, names: list[str]) -> dict[str, LabelClass]:
    with transaction.atomic():
        created = LabelClass.objects.bulk_create(
            [LabelClass(project=project, name=name, position=i) for i, name in enumerate(names)]
        )
    return {label.name: label for label in created}


def _read_entry(project: Project, entry: ImportEntry, classes: dict[str, LabelClass]) -> _Prepared | str:
    """Cheap first pass: resolve the label, read the bytes, hash them; or why the entry
    cannot be imported."""
    label = None
    if entry.label:
        label = classes.get(entry.label)
        if label is None:
            known = ", ".join(sorted(classes, key=_natural_key)) or "none"
            return f"unknown label {entry.label!r} (project labels: {known})"
    if entry.text is not None:
        if project.data_kind != DataKind.TEXT:
            return "a text cannot be imported into an image project"
        checksum = hashlib.sha256(entry.text.encode("utf-8")).hexdigest()
        return _Prepared(entry=entry, checksum=checksum, label=label)
    if project.data_kind != DataKind.IMAGE:
        return "a file cannot be imported into a text project"
    try:
        data = entry.load()
    except OSError as exc:
        return f"cannot be read: {exc}"
    entry.data = None
    return _Prepared(entry=entry, checksum=hashlib.sha256(data).hexdigest(), label=label, original=data)


def _normalise(prepared: _Prepared, original: bytes) -> str | None:
    """Second pass, for content not yet in the project: decode and normalise an image."""
    try:
        prepared.image = image_normalise(
            original,
            max_side=settings.CROWDLOOP_MAX_IMAGE_SIDE,
            thumbnail_side=settings.CROWDLOOP_THUMBNAIL_SIDE,
            max_pixels=settings.CROWDLOOP_MAX_IMAGE_PIXELS,
        )
    except ImageRejected as exc:
        return str(exc)
    return None


def _hook(on_batch: OnBatch | None, cursor: int, report: ImportReport) -> Callable[[], None] | None:
    return (lambda: on_batch(cursor, report)) if on_batch else None


def _import_batch(
    project: Project, batch: list[_Prepared], label_role: str, report: ImportReport, progress: Progress | None,
    after: Callable[[], None] | None = None,
) -> None:
    existing = dict(
        Item.objects.filter(project=project, checksum__in=[p.checksum for p in batch]).values_list("checksum", "pk")
    )
    labeled_again = [(p, p.label) for p in batch if p.checksum in existing and p.label is not None]
    if labeled_again:
        _labels_merge(project, labeled_again, existing, label_role, report)
    fresh = []
    for prepared in batch:
        if prepared.checksum in existing:
            report.duplicates += 1
        elif prepared.original is not None and (problem := _normalise(prepared, prepared.original)):
            report.problems.append(ImportProblem(prepared.entry.name, problem))
        else:
            fresh.append(prepared)
        if progress:
            progress(1)
    report.created += len(fresh)
    _write_batch(project, fresh, label_role, after)


def _labels_merge(
    project: Project, batch: list[tuple[_Prepared, LabelClass]], existing: dict[str, int], label_role: str,
    report: ImportReport,
) -> None:
    """Labels of content already in the project are never dropped silently. Gold for an
    item already in the pool makes it gold (class folders imported after the pool);
    a different known label, or a held-out label for a pool item, is a problem that
    names the conflict and changes nothing."""
    ids = [existing[p.checksum] for p, _ in batch]
    items = {item.pk: item for item in Item.objects.filter(pk__in=ids).only("id", "split", "status")}
    known = dict(KnownLabel.objects.filter(item_id__in=ids).values_list("item_id", "label_id"))
    truth = dict(EvaluationTruth.objects.filter(item_id__in=ids).values_list("item_id", "label_id"))
    names = dict(LabelClass.objects.filter(project=project).values_list("id", "name"))
    gold, truths = [], []
    for prepared, label in batch:
        item = items[existing[prepared.checksum]]
        name = prepared.entry.name
        if label_role == LabelRole.GOLD:
            if item.split != Split.POOL:
                report.problems.append(ImportProblem(name, "already imported as a held-out item; not made gold"))
            elif item.pk in known and known[item.pk] != label.pk:
                report.problems.append(ImportProblem(
                    name, f"already known as {names[known[item.pk]]!r}; the label {label.name!r} was not applied"
                ))
            elif item.pk not in known:
                gold.append((item, label))
        elif label_role == LabelRole.EVALUATION:
            if item.split != prepared.entry.split:
                report.problems.append(ImportProblem(
                    name, "already in the labeling pool; a held-out item must never be served, so it was not moved"
                ))
            elif item.pk in truth and truth[item.pk] != label.pk:
                report.problems.append(ImportProblem(
                    name, f"held-out label already {names[truth[item.pk]]!r}; {label.name!r} was not applied"
                ))
            elif item.pk not in truth:
                truths.append(EvaluationTruth(item=item, label=label))
    with transaction.atomic():
        KnownLabel.objects.bulk_create(
            [KnownLabel(item=item, label=label, source=KnownLabelSource.GOLD) for item, label in gold]
        )
        Item.objects.filter(pk__in=[item.pk for item, _ in gold]).update(status=ItemStatus.LABELED)
        PseudoLabel.objects.filter(item_id__in=[item.pk for item, _ in gold]).delete()
        EvaluationTruth.objects.bulk_create(truths)
    report.gold_marked += len(gold)
    if gold:
        from labeling.services.consensus import items_consensus_update

        items_consensus_update([item.pk for item, _ in gold])


def project_media_prefix(project: Project) -> str:
    """Where ``project``'s own files lie in the media storage (``item_upload_path``)."""
    return f"projects/{project.pk}/"


def _write_batch(
    project: Project, fresh: list[_Prepared], label_role: str, after: Callable[[], None] | None = None
) -> None:
    """Write one batch atomically, with ``after()`` in the same transaction; files
    written for a batch that fails are removed."""
    written: list[str] = []
    try:
        with transaction.atomic():
            items = []
            for prepared in fresh:
                image = prepared.image
                item = Item(
                    project=project,
                    checksum=prepared.checksum,
                    source_name=prepared.entry.name[:500],
                    split=prepared.entry.split,
                    text=prepared.entry.text or "",
                    width=image.width if image else None,
                    height=image.height if image else None,
                )
                if prepared.label is not None and label_role == LabelRole.GOLD:
                    item.status = ItemStatus.LABELED
                if prepared.original is not None and image is not None:
                    stem = f"projects/{project.pk}/items/{prepared.checksum[:2]}/{prepared.checksum}"
                    item.original.name = _save(written, f"{stem}.{image.extension}", prepared.original)
                    item.image.name = _save(written, f"{stem}_n.png", image.image_png)
                    item.thumbnail.name = _save(written, f"{stem}_t.png", image.thumbnail_png)
                items.append(item)
            Item.objects.bulk_create(items)
            labeled = [(item, p.label) for item, p in zip(items, fresh, strict=True) if p.label is not None]
            if label_role == LabelRole.GOLD:
                KnownLabel.objects.bulk_create(
                    [KnownLabel(item=item, label=label, source=KnownLabelSource.GOLD) for item, label in labeled]
                )
            elif label_role == LabelRole.EVALUATION:
                EvaluationTruth.objects.bulk_create([EvaluationTruth(item=item, label=label) for item, label in labeled])
            if after is not None:
                after()
    except BaseException:
        for name in written:
            default_storage.delete(name)
        raise


def _save(written: list[str], name: str, content: bytes) -> str:
    saved = default_storage.save(name, ContentFile(content))
    written.append(saved)
    return saved


def path_import(
    project: Project, path: StrPath, *, progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None, label_role: str = LabelRole.GOLD, split: str = Split.POOL,
    start: int = 0, report: ImportReport | None = None, on_batch: OnBatch | None = None,
) -> ImportReport:
    """Read ``path`` and import it; ``on_total(n)`` learns the entry count first.
    ``start``, ``report`` and ``on_batch`` resume an import as :func:`items_import` says
    (entries are read in the same order each time).

    ``split="holdout"`` imports a labeled held-out split: its labels become evaluation
    truth, its items are never served, and models are measured on them. Every held-out
    entry needs a label. A finished import starts the project's next semi-supervised
    round (the first one right after the first import: cold start)."""
    entries, problems = read_source(path, data_kind=project.data_kind, media_prefix=project_media_prefix(project))
    if split == Split.HOLDOUT:
        label_role = LabelRole.EVALUATION
        problems = list(problems) + [
            ImportProblem(entry.name, "a held-out item needs a label (a class folder or a label column)")
            for entry in entries
            if not entry.label
        ]
        entries = [entry for entry in entries if entry.label]
        for entry in entries:
            entry.split = Split.HOLDOUT
    if on_total:
        on_total(len(entries))
    report = items_import(project, entries, problems=problems, progress=progress, label_role=label_role,
                          start=start, report=report, on_batch=on_batch)
    from labeling.services.loop import import_finished

    import_finished(project, new_holdout=split == Split.HOLDOUT and report.created > 0)
    return report

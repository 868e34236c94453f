"""Label export: CSV, JSONL, an ImageFolder zip and Label Studio's JSON format.

Every format streams: rows are read with a server-side iterator and written chunk by
chunk, so memory stays flat however large the project. Each row says its label, where
the label comes from (gold / settled / human consensus / pseudo-label / model), the
confidence and the number of answers.
"""
import csv
import io
import json
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from django.core.files.storage import default_storage

from labeling.models import Consensus, Item, ItemStatus, KnownLabel, Project, PseudoLabel, Split

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

FORMATS = {
    "csv": ("text/csv; charset=utf-8", "csv"),
    "jsonl": ("application/x-ndjson", "jsonl"),
    "imagefolder": ("application/zip", "zip"),
    "labelstudio": ("application/json", "json"),
}
CHUNK = 2000
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class ExportOptions:
    only_labeled: bool = True
    pseudo_min_confidence: float | None = None
    include_holdout: bool = False


@dataclass
class ExportRow:
    item_id: int
    source_name: str
    text: str
    image: str
    label: str | None
    label_source: str
    confidence: float | None
    n_answers: int
    split: str


def export_rows(project: Project, options: ExportOptions = ExportOptions()) -> Iterator[ExportRow]:
    """Yield one :class:`ExportRow` per item, in id order, reading in chunks."""
    names = dict(project.label_classes.values_list("id", "name"))
    pool = Item.objects.filter(project=project)
    if not options.include_holdout:
        pool = pool.filter(split=Split.POOL)
    items = pool.order_by("id").values_list("id", "source_name", "text", "image", "status", "answer_count", "split")
    last = 0
    while True:
        chunk = list(items.filter(id__gt=last)[:CHUNK])
        if not chunk:
            return
        ids = [row[0] for row in chunk]
        known = {i: (label, source) for i, label, source in KnownLabel.objects.filter(item_id__in=ids).values_list("item_id", "label_id", "source")}
        consensus = {
            i: (label, confidence, n)
            for i, label, confidence, n in Consensus.objects.filter(item_id__in=ids).values_list("item_id", "label_id", "confidence", "n_answers")
        }
        pseudo = {}
        if options.pseudo_min_confidence is not None:
            pseudo = {
                i: (label, confidence, source)
                for i, label, confidence, source in PseudoLabel.objects.filter(
                    item_id__in=ids, confidence__gte=options.pseudo_min_confidence
                ).values_list("item_id", "label_id", "confidence", "source")
            }
        for item_id, source_name, text, image, status, answer_count, split in chunk:
            label, label_source, confidence = None, "none", None
            n_answers = consensus.get(item_id, (None, None, answer_count))[2]
            if item_id in known:
                label, label_source, confidence = known[item_id][0], known[item_id][1], 1.0
            elif status == ItemStatus.LABELED and item_id in consensus:
                label, confidence = consensus[item_id][0], consensus[item_id][1]
                label_source = "human_consensus"
            elif item_id in pseudo:
                label, confidence, label_source = pseudo[item_id][0], pseudo[item_id][1], "pseudo_label"
            if label is None and options.only_labeled:
                continue
            yield ExportRow(
                item_id=item_id, source_name=source_name, text=text, image=image,
                label=None if label is None else names.get(label),
                label_source=label_source, confidence=None if confidence is None else round(confidence, 6),
                n_answers=n_answers, split=split,
            )
        last = ids[-1]


def csv_safe(value: object) -> object:
    """Escape a cell a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


class _Sink(io.RawIOBase):
    """A write-only stream whose written bytes are drained by the generator."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: "ReadableBuffer") -> int:
        chunk = bytes(data)
        self.chunks.append(chunk)
        return len(chunk)

    def drain(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks = []
        return data


def export_stream(
    project: Project, fmt: str, options: ExportOptions = ExportOptions(), progress: Callable[[int], None] | None = None
) -> Iterator[bytes]:
    """Yield the export of ``project`` in format ``fmt`` as byte chunks."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    rows = export_rows(project, options)
    if progress:
        rows = _counting(rows, progress)
    yield from {"csv": _csv, "jsonl": _jsonl, "imagefolder": _imagefolder, "labelstudio": _labelstudio}[fmt](
        project, rows
    )


def _counting(rows: Iterable[ExportRow], progress: Callable[[int], None]) -> Iterator[ExportRow]:
    for row in rows:
        progress(1)
        yield row


CSV_FIELDS = ["item_id", "source_name", "text", "image", "label", "label_source", "confidence", "n_answers", "split"]


def _csv(project: Project, rows: Iterable[ExportRow]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_FIELDS)
    for n, row in enumerate(rows, start=1):
        values = asdict(row)
        writer.writerow([csv_safe(values[field]) if values[field] is not None else "" for field in CSV_FIELDS])
        if n % 500 == 0:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def _jsonl(project: Project, rows: Iterable[ExportRow]) -> Iterator[bytes]:
    batch = []
    for row in rows:
        batch.append(json.dumps(asdict(row), ensure_ascii=False))
        if len(batch) == 500:
            yield ("\n".join(batch) + "\n").encode("utf-8")
            batch = []
    if batch:
        yield ("\n".join(batch) + "\n").encode("utf-8")


def safe_folder(name: str) -> str:
    """A label as a folder name: no path separators, no dot-only names."""
    cleaned = re.sub(r"[\\/\x00-\x1f]", "_", name).strip() or "_"
    return "_" + cleaned if set(cleaned) <= {"."} else cleaned


def _imagefolder(project: Project, rows: Iterable[ExportRow]) -> Iterator[bytes]:
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
        for row in rows:
            if not row.image or row.label is None:
                continue
            with default_storage.open(row.image, "rb") as handle:
                archive.writestr(f"{safe_folder(row.label)}/{row.item_id}.png", handle.read())
            yield sink.drain()
    yield sink.drain()


def _labelstudio(project: Project, rows: Iterable[ExportRow]) -> Iterator[bytes]:
    """Label Studio's JSON export: a list of tasks with one annotation of ``choices``."""
    to_name = "text" if project.data_kind == "text" else "image"
    yield b"["
    for n, row in enumerate(rows):
        data = {"text": row.text} if to_name == "text" else {"image": default_storage.url(row.image)}
        task: dict[str, Any] = {"id": row.item_id, "data": data, "meta": {"crowdloop": {"label_source": row.label_source, "confidence": row.confidence, "n_answers": row.n_answers}}}
        if row.label is not None:
            task["annotations"] = [
                {
                    "result": [
                        {
                            "from_name": "label", "to_name": to_name, "type": "choices",
                            "value": {"choices": [row.label]},
                        }
                    ]
                }
            ]
        yield (("," if n else "") + json.dumps(task, ensure_ascii=False)).encode("utf-8")
    yield b"]"

"""Import readers: folders, class folders, zips of either, CSV and JSONL of texts.

Readers turn a source into :class:`ImportEntry` objects (or :class:`ImportProblem` for
what cannot be read) and write nothing. A source that is unsafe as a whole (a zip with
a path escaping its root, a symlink entry, a bomb) is refused with
:class:`ImportRefused` before anything is written.
"""
import csv
import io
import json
import os
import stat
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from django.conf import settings

from labeling.models import DataKind, Split

StrPath = str | os.PathLike[str]

TEXT_SUFFIXES = {".csv", ".jsonl", ".ndjson", ".json"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}


class ImportRefused(ValueError):
    """The whole source is refused; nothing was written."""


@dataclass
class ImportEntry:
    """One item to import. ``data`` is raw file bytes (or a callable returning them)."""

    name: str
    data: bytes | None = None
    text: str | None = None
    label: str | None = None
    split: str = Split.POOL
    loader: Callable[[], bytes] | None = None

    def load(self) -> bytes:
        """The bytes, read now when lazy; raises ``OSError`` when they cannot be read."""
        if self.data is None and self.loader is not None:
            self.data = self.loader()
        if self.data is None:
            raise OSError("the entry has no content")
        return self.data


@dataclass(frozen=True)
class ImportProblem:
    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


@dataclass
class ImportReport:
    created: int = 0
    duplicates: int = 0
    problems: list[ImportProblem] = field(default_factory=list)
    label_classes_created: list[str] = field(default_factory=list)
    gold_marked: int = 0
    """Items already in the project (same content) that this import's labels made gold."""

    @property
    def processed(self) -> int:
        return self.created + self.duplicates + len(self.problems)

    def as_dict(self, max_problems: int = 200) -> dict[str, Any]:
        return {
            "created": self.created,
            "duplicates": self.duplicates,
            "gold_marked": self.gold_marked,
            "problems": [{"name": p.name, "reason": p.reason} for p in self.problems[:max_problems]],
            "problem_count": len(self.problems),
            "label_classes_created": self.label_classes_created,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ImportReport":
        """The report :meth:`as_dict` wrote (an import resumed from its cursor); problems
        beyond the ones kept are counted, without their details."""
        problems = [ImportProblem(p["name"], p["reason"]) for p in data.get("problems", [])]
        missing = data.get("problem_count", len(problems)) - len(problems)
        problems += [ImportProblem("(earlier entry)", "details not kept")] * max(missing, 0)
        return cls(
            created=data.get("created", 0), duplicates=data.get("duplicates", 0), problems=problems,
            label_classes_created=list(data.get("label_classes_created", [])), gold_marked=data.get("gold_marked", 0),
        )


# --- Readers ------------------------------------------------------------------------------

Read = tuple[list[ImportEntry], list[ImportProblem]]  # the entries read, and what could not be read


def read_source(path: StrPath, *, data_kind: str, media_prefix: str | None = None) -> Read:
    """Return ``(entries, problems)`` for a path: a folder, a ``.zip``, a ``.csv``, a
    ``.jsonl`` or a Label Studio ``.json`` (whose media URLs may point only under
    ``media_prefix``). Entries of image sources load their bytes lazily."""
    path = Path(path)
    if not path.exists():
        raise ImportRefused(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if path.is_dir():
        entries, problems = _read_directory(path)
    elif suffix == ".zip":
        entries, problems = read_zip(path)
    elif suffix == ".csv":
        with path.open("rb") as handle:
            entries, problems = read_csv(handle, source=path.name)
    elif suffix in (".jsonl", ".ndjson"):
        with path.open("rb") as handle:
            entries, problems = read_jsonl(handle, source=path.name)
    elif suffix == ".json":
        with path.open("rb") as handle:
            from labeling.services.labelstudio import read_label_studio

            entries, problems = read_label_studio(handle, source=path.name, media_prefix=media_prefix)
    else:
        raise ImportRefused(
            f"{path.name}: unsupported source; give a folder, a .zip, a .csv, a .jsonl or a Label Studio .json"
        )
    _check_kind(entries, data_kind, path.name)
    return entries, problems


def _check_kind(entries: list[ImportEntry], data_kind: str, source: str) -> None:
    has_text = any(entry.text is not None for entry in entries)
    if data_kind == DataKind.TEXT and entries and not has_text:
        raise ImportRefused(f"{source}: this is a text project; give a .csv or .jsonl of texts")
    if data_kind == DataKind.IMAGE and has_text:
        raise ImportRefused(f"{source}: this is an image project; texts cannot be imported into it")


def _label_from_parts(parts: Sequence[str]) -> str | None:
    """``class/file`` gives a label; a file at the top level has none."""
    return parts[0] if len(parts) >= 2 else None


def _visible(parts: Iterable[str]) -> bool:
    return not any(part.startswith(".") or part == "__MACOSX" for part in parts)


def _read_directory(root: Path) -> Read:
    entries, problems = [], []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if not _visible(relative.parts):
            continue
        if path.is_symlink():
            problems.append(ImportProblem(str(relative), "symbolic link skipped"))
            continue
        if not path.is_file():
            continue
        if path.suffix.lower() in TEXT_SUFFIXES:
            problems.append(ImportProblem(str(relative), "text files inside a folder are not imported"))
            continue
        entries.append(
            ImportEntry(
                name=relative.as_posix(),
                label=_label_from_parts(relative.parts),
                loader=path.read_bytes,
            )
        )
    return entries, problems


def read_zip(source: StrPath | IO[bytes], *, max_total: int | None = None, max_entries: int | None = None) -> Read:
    """Entries of a zip of images (flat or one folder per class).

    Refuses the whole archive, before anything is written, when an entry name is
    absolute or climbs out with ``..``, an entry is a symlink, the entry count or the
    real uncompressed size passes its cap (sizes are measured by decompressing, not
    read from the headers, which a bomb can forge).
    """
    max_total = settings.CROWDLOOP_MAX_ZIP_UNCOMPRESSED_BYTES if max_total is None else max_total
    max_entries = settings.CROWDLOOP_MAX_ZIP_ENTRIES if max_entries is None else max_entries
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ImportRefused(f"not a readable zip archive: {exc}") from exc
    with archive:
        files = _zip_files(archive, max_entries)
        contents = _zip_contents(archive, files, max_total)
    return _zip_entries(files, contents)


_ZipFile = tuple[zipfile.ZipInfo, tuple[str, ...]]  # a file of the archive, and the parts of its path


def _zip_files(archive: zipfile.ZipFile, max_entries: int) -> list[_ZipFile]:
    """The archive's files, folders left out; refuses it past ``max_entries`` entries,
    or for an entry with an absolute path, a ``..`` or a symbolic link."""
    infos = archive.infolist()
    if len(infos) > max_entries:
        raise ImportRefused(f"zip has {len(infos)} entries, over the cap of {max_entries}")
    files = []
    for info in infos:
        name = info.filename
        pure = PurePosixPath(name.replace("\\", "/"))
        if name.startswith(("/", "\\")) or pure.is_absolute() or (len(name) > 1 and name[1] == ":"):
            raise ImportRefused(f"zip entry {name!r} has an absolute path; archive refused")
        if ".." in pure.parts:
            raise ImportRefused(f"zip entry {name!r} climbs out of the archive with '..'; archive refused")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ImportRefused(f"zip entry {name!r} is a symbolic link; archive refused")
        if info.is_dir():
            continue
        files.append((info, pure.parts))
    return files


def _zip_contents(archive: zipfile.ZipFile, files: list[_ZipFile], max_total: int) -> dict[str, bytes | Exception]:
    """Each visible file's bytes, or the error that kept them from being read, by name;
    refuses the archive when the declared or the real uncompressed size passes ``max_total``."""
    declared = sum(info.file_size for info, _ in files)
    if declared > max_total:
        raise ImportRefused(f"zip would unpack to {declared} bytes, over the cap of {max_total}")
    contents: dict[str, bytes | Exception] = {}
    total = 0
    for info, parts in files:
        if not _visible(parts):
            continue
        try:
            with archive.open(info) as member:
                data = member.read(max_total - total + 1)
        except (zipfile.BadZipFile, OSError, RuntimeError, EOFError) as exc:
            contents[info.filename] = exc
            continue
        total += len(data)
        if total > max_total:
            raise ImportRefused(f"zip unpacks to more than the cap of {max_total} bytes; archive refused")
        contents[info.filename] = data
    return contents


def _zip_entries(files: list[_ZipFile], contents: dict[str, bytes | Exception]) -> Read:
    """Entries of the files read, labeled by their folder below a shared top folder."""
    entries, problems = [], []
    strip = _common_root([parts for info, parts in files if info.filename in contents])
    for info, parts in files:
        if info.filename not in contents:
            continue
        content = contents[info.filename]
        shown = "/".join(parts)
        if isinstance(content, Exception):
            problems.append(ImportProblem(shown, f"cannot be read from the zip: {content}"))
            continue
        parts = parts[strip:]
        if PurePosixPath(parts[-1]).suffix.lower() in TEXT_SUFFIXES:
            problems.append(ImportProblem(shown, "text files inside a zip are not imported"))
            continue
        entries.append(ImportEntry(name=shown, data=content, label=_label_from_parts(parts)))
    return entries, problems


def _common_root(paths: list[tuple[str, ...]]) -> int:
    """1 when every file sits below one shared top folder (``zip -r x.zip x/``), else 0."""
    if not paths or any(len(parts) < 2 for parts in paths):
        return 0
    return 1 if len({parts[0] for parts in paths}) == 1 else 0


def _decode_lines(handle: IO[bytes]) -> Iterator[str]:
    """Yield text lines, marking undecodable bytes instead of failing the whole file."""
    wrapper = io.TextIOWrapper(handle, encoding="utf-8-sig", errors="surrogateescape", newline="")
    yield from wrapper


def _bad_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def read_csv(handle: IO[bytes], *, source: str = "upload.csv") -> Read:
    """Entries of a CSV with a ``text`` column and an optional ``label`` column.

    A row that cannot be read is a problem naming the lines it took with it (an unclosed
    quote swallows every line after it), so nothing is lost silently.
    """
    lines = _RecordedLines(_decode_lines(handle))
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        raise ImportRefused(f"{source}: empty CSV") from None
    except csv.Error as exc:
        raise ImportRefused(f"{source}: unreadable CSV header: {exc}") from exc
    columns = [column.strip().lower() for column in header]
    if "text" not in columns:
        raise ImportRefused(f"{source}: the CSV header needs a 'text' column (found: {', '.join(columns)})")
    text_at = columns.index("text")
    label_at = columns.index("label") if "label" in columns else None
    entries, problems = [], []
    while True:
        line = reader.line_num + 1
        lines.consumed.clear()
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            reason = f"malformed CSV: {exc}{_lost(line, reader.line_num)}"
            problems.append(ImportProblem(f"{source} line {line}", reason))
            continue
        end = reader.line_num
        name = f"{source} line {end}"
        if end > line and _unclosed_quote(lines.consumed):
            problems.append(ImportProblem(f"{source} line {line}", f"unclosed quote{_lost(line, end)}"))
            continue
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(columns):
            reason = f"expected {len(columns)} fields, found {len(row)}"
            if end > line:
                name = f"{source} line {line}"
                reason = f"{reason}: a quoted field runs over several lines{_lost(line, end)}"
            problems.append(ImportProblem(name, reason))
            continue
        label = row[label_at].strip() if label_at is not None else ""
        problem = text_problem(row[text_at], label)
        if problem:
            problems.append(ImportProblem(name, problem))
            continue
        entries.append(ImportEntry(name=name, text=row[text_at], label=label or None))
    return entries, problems


class _RecordedLines:
    """The lines of a text file, keeping those read since ``consumed`` was cleared:
    the raw lines of the CSV record being parsed."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = iter(lines)
        self.consumed: list[str] = []

    def __iter__(self) -> "_RecordedLines":
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.consumed.append(line)
        return line


def _unclosed_quote(raw_lines: list[str]) -> bool:
    """Whether a record's raw lines end inside a quoted field (the file ended first)."""
    try:
        for _ in csv.reader(raw_lines, strict=True):
            pass
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def _lost(first: int, last: int) -> str:
    return f"; lines {first}-{last} could not be read" if last > first else f"; line {first} could not be read"


def read_jsonl(handle: IO[bytes], *, source: str = "upload.jsonl") -> Read:
    """Entries of JSON Lines: objects with ``text`` and an optional ``label``."""
    entries, problems = [], []
    for number, line in enumerate(_decode_lines(handle), start=1):
        name = f"{source} line {number}"
        if not line.strip():
            continue
        if _bad_utf8(line):
            problems.append(ImportProblem(name, "not valid UTF-8"))
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(ImportProblem(name, f"invalid JSON: {exc.msg}"))
            continue
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            problems.append(ImportProblem(name, "expected an object with a string 'text'"))
            continue
        label = record.get("label")
        if label is not None and not isinstance(label, (str, int)):
            problems.append(ImportProblem(name, "'label' must be a string"))
            continue
        label = str(label).strip() if label is not None else ""
        problem = text_problem(record["text"], label)
        if problem:
            problems.append(ImportProblem(name, problem))
            continue
        entries.append(ImportEntry(name=name, text=record["text"], label=label or None))
    return entries, problems


def text_problem(text: str, label: str) -> str | None:
    if _bad_utf8(text) or _bad_utf8(label):
        return "not valid UTF-8"
    if not text.strip():
        return "empty text"
    if len(text) > settings.CROWDLOOP_MAX_TEXT_CHARS:
        return f"text of {len(text)} characters, over the cap of {settings.CROWDLOOP_MAX_TEXT_CHARS}"
    if "\x00" in text:
        return "text contains a NUL character"
    return None

"""Label Studio JSON import: tasks of texts or images, with their choice as the label.

An image comes from a ``data:`` URI or from a media URL of the importing project's own
files; nothing else is read (another project's media, absolute paths, ``..``, remote
URLs), and a refused task is reported with a reason that never shows a server path.
"""
import base64
import binascii
import io
import json
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import IO, Any
from urllib.parse import unquote, urlparse

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import default_storage

from labeling.services.readers import ImportEntry, ImportProblem, ImportRefused, Read, text_problem


def read_label_studio(handle: IO[bytes], *, source: str = "tasks.json", media_prefix: str | None = None) -> Read:
    """Entries of a Label Studio JSON export: tasks with ``data.text`` or ``data.image``
    and, optionally, an annotation whose ``choices`` result gives the label.

    Images are taken from ``data:`` URIs or from media URLs of files under
    ``media_prefix`` (the importing project's own; ``None``: none). Remote URLs, other
    projects' files, absolute paths and ``..`` are reported per task, never read.
    """
    try:
        tasks = json.load(io.TextIOWrapper(handle, encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ImportRefused(f"{source}: not a Label Studio JSON export: {exc}") from exc
    if not isinstance(tasks, list):
        raise ImportRefused(f"{source}: a Label Studio export is a JSON list of tasks")
    entries, problems = [], []
    for number, task in enumerate(tasks, start=1):
        name = f"{source} task {task.get('id', number) if isinstance(task, dict) else number}"
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict):
            problems.append(ImportProblem(name, "expected a task object with 'data'"))
            continue
        label = _label_studio_choice(task)
        if isinstance(data.get("text"), str):
            problem = text_problem(data["text"], label or "")
            if problem:
                problems.append(ImportProblem(name, problem))
            else:
                entries.append(ImportEntry(name=name, text=data["text"], label=label))
        elif isinstance(data.get("image"), str):
            loader, problem = _image_reference(data["image"], media_prefix)
            if problem:
                problems.append(ImportProblem(name, problem))
            else:
                entries.append(ImportEntry(name=name, label=label, loader=loader))
        else:
            problems.append(ImportProblem(name, "task data has neither 'text' nor 'image'"))
    return entries, problems


def _label_studio_choice(task: dict[str, Any]) -> str | None:
    """The first choice of the task's last annotation that was not cancelled."""
    for annotation in reversed(task.get("annotations") or []):
        if not isinstance(annotation, dict) or annotation.get("was_cancelled"):
            continue
        for result in annotation.get("result") or []:
            choices = (result.get("value") or {}).get("choices") if isinstance(result, dict) else None
            if result.get("type") == "choices" and choices:
                return str(choices[0]).strip() or None
    return None


def _image_reference(
    reference: str, media_prefix: str | None
) -> tuple[Callable[[], bytes], None] | tuple[None, str]:
    """A loader for a task's image, or why there is none. ``/media/<name>`` is read only
    when ``<name>`` lies under ``media_prefix`` (the importing project's own files);
    the reason given never shows a path on the server."""
    if reference.startswith("data:"):
        header, _, payload = reference.partition(",")
        if ";base64" not in header:
            return None, "only base64 data: URIs are supported"
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            return None, "invalid base64 in data: URI"
        return (lambda: data), None
    parsed, media = urlparse(reference), urlparse(settings.MEDIA_URL)
    media_path = "/" + media.path.strip("/") + "/"
    local = (parsed.scheme, parsed.netloc) in {("", ""), (media.scheme, media.netloc)}
    if not local or not parsed.path.startswith(media_path):
        if not parsed.scheme and not parsed.netloc:
            return None, "image path is not a media URL of this project; embed images as data: URIs"
        return None, "remote image URLs are not downloaded; embed images as data: URIs"
    name = unquote(parsed.path[len(media_path):])
    if "\x00" in name or "\\" in name:
        return None, "image path has characters a media path never has"
    pure = PurePosixPath(name)
    if pure.is_absolute():
        return None, "image path is absolute; only this project's media URLs are read"
    if ".." in pure.parts:
        return None, "image path climbs out of the media folder"
    prefix = PurePosixPath(media_prefix) if media_prefix else None
    if prefix is None or pure.parts[: len(prefix.parts)] != prefix.parts or len(pure.parts) <= len(prefix.parts):
        return None, "image is not one of this project's files; embed images as data: URIs"

    def load() -> bytes:
        try:
            with default_storage.open(str(pure), "rb") as image:
                return image.read()
        except (OSError, SuspiciousFileOperation):
            raise OSError("the image is not among this project's files") from None

    return load, None

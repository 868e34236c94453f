import csv
import io
import json
import zipfile

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.test import APIClient

from labeling.models import Item, KnownLabel, PseudoLabel, Split, Worker
from labeling.services.answers import AnswerInput, answers_record
from labeling.services.exports import ExportOptions, csv_safe, export_stream
from labeling.services.imports import path_import
from labeling.services.projects import project_create
from tests.labeling.factories import png_bytes

pytestmark = pytest.mark.django_db


def exported(project, fmt, **options):
    return b"".join(export_stream(project, fmt, ExportOptions(**options)))


def labels_of(project):
    """``{content: label}`` of every labeled item: text, or image bytes checksum."""
    result = {}
    for item in Item.objects.filter(project=project).select_related("known_label__label", "consensus__label"):
        known = getattr(item, "known_label", None)
        label = known.label.name if known else (item.consensus.label.name if item.status == "labeled" else None)
        if label is not None:
            result[item.text or item.checksum] = label
    return result


@pytest.fixture
def text_project(tmp_path):
    project = project_create(name="Reviews", labels=["pos", "neg"], data_kind="text")
    path = tmp_path / "in.csv"
    path.write_text('text,label\n"good, very",pos\nbad,neg\n"multi\nline",pos\nunlabeled one,\nconsensus one,\n')
    path_import(project, path)
    item = Item.objects.get(text="consensus one")
    for _ in range(3):  # with two classes and unproven workers, two votes reach only 0.84
        answers_record(
            worker=Worker.objects.create(),
            inputs=[AnswerInput(item=item, label_id=project.label_classes.get(name="neg").pk, task_ref="t")],
            source="worker",
        )
    return project


@pytest.fixture
def image_project(tmp_path):
    project = project_create(name="Pets", labels=["cat", "dog"])
    for i, label in enumerate(["cat", "dog", "cat"]):
        (tmp_path / "img" / label).mkdir(parents=True, exist_ok=True)
        (tmp_path / "img" / label / f"{i}.png").write_bytes(png_bytes(i))
    (tmp_path / "img" / "free.png").write_bytes(png_bytes(9))
    path_import(project, tmp_path / "img")
    return project


def test_export_rows_say_label_source_confidence_and_answers(text_project):
    rows = list(csv.DictReader(io.StringIO(exported(text_project, "csv").decode())))
    by_text = {row["text"]: row for row in rows}
    assert set(by_text) == {"good, very", "bad", "multi\nline", "consensus one"}
    assert by_text["bad"]["label_source"] == "gold" and by_text["bad"]["confidence"] == "1.0"
    assert by_text["consensus one"]["label_source"] == "human_consensus"
    assert by_text["consensus one"]["n_answers"] == "3" and float(by_text["consensus one"]["confidence"]) > 0.9
    everything = list(csv.DictReader(io.StringIO(exported(text_project, "csv", only_labeled=False).decode())))
    assert len(everything) == 5


@pytest.mark.parametrize("fmt, suffix", [("csv", "csv"), ("jsonl", "jsonl"), ("labelstudio", "json")])
def test_text_export_round_trips_through_import(text_project, tmp_path, fmt, suffix):
    path = tmp_path / f"export.{suffix}"
    path.write_bytes(exported(text_project, fmt))
    fresh = project_create(name="Copy", labels=["pos", "neg"], data_kind="text")
    report = path_import(fresh, path)
    assert report.problems == []
    assert labels_of(fresh) == labels_of(text_project)


def test_a_label_studio_image_export_imports_back_into_its_own_project_only(image_project, tmp_path):
    path = tmp_path / "export.json"
    path.write_bytes(exported(image_project, "labelstudio"))
    again = path_import(image_project, path)
    assert again.problems == [] and again.created + again.duplicates == 3
    other = path_import(project_create(name="Other", labels=["cat", "dog"]), path)
    assert other.created == 0 and len(other.problems) == 3
    assert all("not one of this project's files" in problem.reason for problem in other.problems)


@pytest.mark.parametrize("fmt, suffix", [("imagefolder", "zip")])
def test_image_export_round_trips_through_import(image_project, tmp_path, fmt, suffix):
    path = tmp_path / f"export.{suffix}"
    path.write_bytes(exported(image_project, fmt))
    fresh = project_create(name="Copy", labels=["cat", "dog"])
    report = path_import(fresh, path)
    assert report.problems == [] and report.created == 3
    # Normalised PNGs are exported, so compare labels per normalised content.
    def by_pixels(project):
        return sorted((open(item.image.path, "rb").read(), item.known_label.label.name)
                      for item in Item.objects.filter(project=project, known_label__isnull=False))
    assert [label for _, label in by_pixels(fresh)] == [label for _, label in by_pixels(image_project)]


def test_csv_cells_that_spreadsheets_would_run_are_escaped(tmp_path):
    project = project_create(name="Evil", labels=["=cmd|' /C calc'!A0", "ok"], data_kind="text")
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "=HYPERLINK(\\"http://x\\")", "label": "=cmd|\' /C calc\'!A0"}\n{"text": "+1", "label": "ok"}\n')
    path_import(project, path)
    rows = list(csv.reader(io.StringIO(exported(project, "csv").decode())))[1:]
    cells = [cell for row in rows for cell in row]
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in cells)
    assert "'=HYPERLINK(\"http://x\")" in cells and "'+1" in cells
    assert [csv_safe(v) for v in ["-2", "@x", "\tx", "\rx", "fine", 3]] == ["'-2", "'@x", "'\tx", "'\rx", "fine", 3]


def test_pseudo_labels_and_holdout_are_exported_only_when_asked(text_project):
    item = Item.objects.get(text="unlabeled one")
    PseudoLabel.objects.create(item=item, label=text_project.label_classes.first(), confidence=0.8, source="propagation")
    Item.objects.filter(text="bad").update(split=Split.HOLDOUT)
    def texts(**options):
        return {json.loads(line)["text"]: json.loads(line)["label_source"] for line in exported(text_project, "jsonl", **options).splitlines()}
    assert "unlabeled one" not in texts() and "bad" not in texts()
    assert texts(pseudo_min_confidence=0.7)["unlabeled one"] == "pseudo_label"
    assert "unlabeled one" not in texts(pseudo_min_confidence=0.9)
    assert texts(include_holdout=True)["bad"] == "gold"


def test_imagefolder_folder_names_cannot_escape(tmp_path):
    project = project_create(name="Odd", labels=["../..", "a/b"])
    (tmp_path / "x").mkdir()
    for i in range(2):
        (tmp_path / "x" / f"{i}.png").write_bytes(png_bytes(i))
    path_import(project, tmp_path / "x")
    for item, label in zip(Item.objects.order_by("id"), project.label_classes.order_by("position"), strict=True):
        KnownLabel.objects.create(item=item, label=label)
    names = zipfile.ZipFile(io.BytesIO(exported(project, "imagefolder"))).namelist()
    assert all(".." not in name.split("/") and name.count("/") == 1 for name in names)


def test_export_streams_in_chunks(text_project, monkeypatch):
    from labeling.services import exports

    monkeypatch.setattr(exports, "CHUNK", 2)
    chunks = list(export_stream(text_project, "labelstudio"))
    assert len(chunks) > 3
    assert len(json.loads(b"".join(chunks))) == 4


def test_api_and_cli_export(text_project, tmp_path, capsys):
    owner = get_user_model().objects.create_user("owner")
    text_project.owner = owner
    text_project.save()
    client = APIClient()
    client.force_authenticate(owner)
    response = client.get(f"/api/v1/projects/{text_project.slug}/export?format=jsonl")
    assert response.status_code == 200 and response["Content-Disposition"].endswith('.jsonl"')
    assert len(b"".join(response.streaming_content).splitlines()) == 4
    assert client.get(f"/api/v1/projects/{text_project.slug}/export?format=pdf").status_code == 400
    stranger = get_user_model().objects.create_user("stranger")
    client.force_authenticate(stranger)
    assert client.get(f"/api/v1/projects/{text_project.slug}/export").status_code == 404
    out = tmp_path / "labels.csv"
    call_command("export_labels", text_project.slug, "--format", "csv", "-o", str(out), "--no-progress")
    assert len(list(csv.DictReader(out.open()))) == 4

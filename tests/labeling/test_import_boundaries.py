"""What an import may read and what it reports: a CSV row that swallows the rest of the
file, Label Studio image references outside the import's own upload."""
import pytest

from labeling.models import Item
from labeling.services.imports import path_import
from labeling.services.projects import project_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def text_project():
    return project_create(name="Reviews", labels=["pos", "neg"], data_kind="text")


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def _problems(report):
    return [(p.name, p.reason) for p in report.problems]


def test_an_unclosed_quote_reports_every_line_it_swallowed(text_project, tmp_path):
    rows = "".join(f"text {i},pos\n" for i in range(4, 42))
    path = write(tmp_path / "x.csv", f'text,label\nfine,pos\n"never closed,neg\n{rows}')
    report = path_import(text_project, path)
    assert report.created == 1
    assert _problems(report) == [("x.csv line 3", "unclosed quote; lines 3-41 could not be read")]


def test_an_unclosed_quote_in_the_last_column_is_reported_not_imported_as_a_label(text_project, tmp_path):
    path = write(tmp_path / "x.csv", 'text,label\nfine,pos\nlost,"pos\nalso lost,neg\n')
    report = path_import(text_project, path)
    assert report.created == 1
    assert _problems(report) == [("x.csv line 3", "unclosed quote; lines 3-4 could not be read")]


def test_a_quoted_text_over_several_lines_is_still_one_good_row(text_project, tmp_path):
    path = write(tmp_path / "x.csv", 'text,label\n"two\nlines",pos\nafter,neg\n')
    report = path_import(text_project, path)
    assert report.created == 2 and report.problems == []
    assert Item.objects.filter(text="two\nlines").exists()


def test_a_quote_that_closes_lines_later_names_the_lines_it_merged(text_project, tmp_path):
    path = write(tmp_path / "x.csv", 'text,label\n"a,pos\nb,neg\nc",x,y\nafter,neg\n')
    report = path_import(text_project, path)
    assert report.created == 1
    assert _problems(report) == [
        ("x.csv line 2", "expected 2 fields, found 3: a quoted field runs over several lines; lines 2-4 could not be read")
    ]


def test_a_row_over_the_csv_field_limit_names_the_lines_it_took(text_project, tmp_path):
    import csv

    filler = "".join(f"row {i},pos\n" for i in range(csv.field_size_limit() // 10 + 10))
    path = write(tmp_path / "x.csv", f'text,label\nfine,pos\n"open,neg\n{filler}')
    report = path_import(text_project, path)
    [(name, reason)] = _problems(report)
    assert name == "x.csv line 3"
    assert reason.startswith("malformed CSV: field larger than field limit") and "; lines 3-" in reason


# --- Label Studio image references -----------------------------------------------------


@pytest.fixture
def shapes(tmp_path):
    """Two image projects, each with its own imported files."""
    from tests.labeling.factories import png_bytes

    projects = []
    for n, name in enumerate(["Mine", "Theirs"]):
        project = project_create(name=name, labels=["cat", "dog"])
        folder = tmp_path / f"in-{name}"
        for i in range(2):
            write(folder / "cat" / f"{i}.png", png_bytes(10 * n + i))
        path_import(project, folder)
        projects.append(project)
    return projects


def _tasks(tmp_path, references):
    import json

    tasks = [
        {"id": i, "data": {"image": ref}, "annotations": [{"result": [{"type": "choices", "value": {"choices": ["dog"]}}]}]}
        for i, ref in enumerate(references, start=1)
    ]
    return write(tmp_path / "tasks.json", json.dumps(tasks))


def _media_url(name):
    from django.conf import settings

    return settings.MEDIA_URL + name


def test_a_label_studio_task_may_point_at_its_own_projects_files_only(shapes, tmp_path, settings):
    mine, theirs = shapes
    own = mine.items.order_by("id").first()
    other = theirs.items.order_by("id").first()
    path = _tasks(
        tmp_path,
        [
            _media_url(own.image.name),
            _media_url(other.original.name),
            _media_url(f"imports/{theirs.pk}/x/upload.zip"),
            _media_url(own.image.name.replace(f"projects/{mine.pk}/", f"projects/{mine.pk}/../{theirs.pk}/")),
            _media_url("/etc/passwd"),
            "/etc/passwd",
            "file:///etc/passwd",
            "https://elsewhere.example" + _media_url(own.image.name),
            _media_url(f"projects/{mine.pk}/items/zz/missing.png"),
        ],
    )
    report = path_import(mine, path)
    assert report.created + report.duplicates == 1
    reasons = dict(_problems(report))
    assert set(reasons) == {f"tasks.json task {i}" for i in range(1, 10)}
    # Its own file is read; its gold label stays, and the contradicting one is reported.
    assert reasons["tasks.json task 1"] == "already known as 'cat'; the label 'dog' was not applied"
    assert "not one of this project's files" in reasons["tasks.json task 2"]
    assert "not one of this project's files" in reasons["tasks.json task 3"]
    assert "climbs out" in reasons["tasks.json task 4"]
    assert "absolute" in reasons["tasks.json task 5"]
    assert "not a media URL" in reasons["tasks.json task 6"]
    assert "remote" in reasons["tasks.json task 7"] and "remote" in reasons["tasks.json task 8"]
    assert "not among this project's files" in reasons["tasks.json task 9"]
    for reason in reasons.values():
        assert str(settings.MEDIA_ROOT) not in reason and "/etc" not in reason and "projects/" not in reason
    assert theirs.items.count() == 2 and mine.items.count() == 2


def test_another_projects_files_are_never_copied_into_mine(shapes, tmp_path):
    mine, theirs = shapes
    path = _tasks(tmp_path, [_media_url(item.image.name) for item in theirs.items.all()])
    report = path_import(mine, path)
    assert report.created == 0 and len(report.problems) == 2
    assert not set(mine.items.values_list("checksum", flat=True)) & set(theirs.items.values_list("checksum", flat=True))

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

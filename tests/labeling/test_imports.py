import io
import stat
import zipfile
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from labeling.models import Item, ItemStatus, KnownLabel, LabelClass
from labeling.services.imports import ImportRefused, path_import
from labeling.services.projects import project_create
from tests.labeling.factories import png_bytes, png_with_declared_size

pytestmark = pytest.mark.django_db


@pytest.fixture
def images_project():
    return project_create(name="Shapes", labels=["cat", "dog"])


@pytest.fixture
def text_project():
    return project_create(name="Reviews", labels=["pos", "neg"], data_kind="text")


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def media_files(media_root):
    return sorted(p for p in Path(media_root).rglob("*") if p.is_file() and "/imports/" not in str(p))


def make_zip(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members:
            if isinstance(name, zipfile.ZipInfo):
                archive.writestr(name, data)
            else:
                archive.writestr(name, data)
    return path


def test_a_flat_folder_of_images_becomes_unlabeled_items_with_normalised_copies(images_project, tmp_path, _media_root):
    for i in range(3):
        write(tmp_path / "in" / f"img{i}.png", png_bytes(i))
    report = path_import(images_project, tmp_path / "in")
    assert (report.created, report.duplicates, report.problems) == (3, 0, [])
    item = Item.objects.get(source_name="img0.png")
    assert item.status == ItemStatus.UNLABELED and item.width == 12
    assert Image.open(item.image.path).mode == "L"
    assert Image.open(item.original.path).tobytes() == Image.open(io.BytesIO(png_bytes(0))).tobytes()
    assert max(Image.open(item.thumbnail.path).size) <= 128
    assert "img0" not in item.image.name and item.checksum in item.image.name


def test_class_folders_become_gold_answers(images_project, tmp_path):
    write(tmp_path / "in" / "cat" / "a.png", png_bytes(1))
    write(tmp_path / "in" / "dog" / "b.png", png_bytes(2))
    report = path_import(images_project, tmp_path / "in")
    assert report.created == 2
    gold = {k.item.source_name: k.label.name for k in KnownLabel.objects.select_related("item", "label")}
    assert gold == {"cat/a.png": "cat", "dog/b.png": "dog"}
    assert set(Item.objects.values_list("status", flat=True)) == {ItemStatus.LABELED}


def test_reimporting_the_same_files_adds_nothing(images_project, tmp_path):
    write(tmp_path / "in" / "cat" / "a.png", png_bytes(1))
    write(tmp_path / "in" / "b.png", png_bytes(2))
    path_import(images_project, tmp_path / "in")
    again = path_import(images_project, tmp_path / "in")
    assert (again.created, again.duplicates) == (0, 2)
    assert Item.objects.count() == 2 and KnownLabel.objects.count() == 1


def test_corrupt_and_non_image_files_are_reported_and_the_rest_imported(images_project, tmp_path):
    write(tmp_path / "in" / "good.png", png_bytes(1))
    write(tmp_path / "in" / "broken.png", png_bytes(2)[:40])
    write(tmp_path / "in" / "notes.txt", "hello")
    report = path_import(images_project, tmp_path / "in")
    assert report.created == 1
    reasons = {p.name: p.reason for p in report.problems}
    assert set(reasons) == {"broken.png", "notes.txt"}
    assert "corrupt" in reasons["broken.png"] or "not an image" in reasons["broken.png"]
    assert "not an image" in reasons["notes.txt"]


def test_an_unknown_class_folder_is_reported_per_file(images_project, tmp_path):
    write(tmp_path / "in" / "cat" / "a.png", png_bytes(1))
    write(tmp_path / "in" / "horse" / "b.png", png_bytes(2))
    report = path_import(images_project, tmp_path / "in")
    assert report.created == 1
    assert [(p.name, "unknown label 'horse'" in p.reason) for p in report.problems] == [("horse/b.png", True)]


def test_a_project_without_classes_takes_them_from_the_class_folders(tmp_path):
    project = project_create(name="Fresh", labels=[])
    for name, seed in (("10", 1), ("9", 2), ("b", 3)):
        write(tmp_path / "in" / name / "x.png", png_bytes(seed))
    report = path_import(project, tmp_path / "in")
    assert report.label_classes_created == ["9", "10", "b"]
    assert list(LabelClass.objects.filter(project=project).values_list("name", flat=True)) == ["9", "10", "b"]


def test_a_zip_of_class_folders_with_a_root_folder_is_imported(images_project, tmp_path):
    archive = make_zip(
        tmp_path / "set.zip",
        [("set/cat/a.png", png_bytes(1)), ("set/dog/b.png", png_bytes(2)), ("__MACOSX/._a.png", b"x")],
    )
    report = path_import(images_project, archive)
    assert (report.created, report.problems) == (2, [])
    assert KnownLabel.objects.count() == 2


@pytest.mark.parametrize(
    "name, reason",
    [
        ("../evil.png", "climbs out"),
        ("cat/../../evil.png", "climbs out"),
        ("/etc/evil.png", "absolute path"),
        ("C:/evil.png", "absolute path"),
    ],
)
def test_a_zip_with_an_escaping_entry_is_refused_whole(images_project, tmp_path, _media_root, name, reason):
    archive = make_zip(tmp_path / "bad.zip", [("cat/ok.png", png_bytes(1)), (name, png_bytes(2))])
    with pytest.raises(ImportRefused, match=reason):
        path_import(images_project, archive)
    assert Item.objects.count() == 0
    assert media_files(_media_root) == []
    assert not (tmp_path / "evil.png").exists()


def test_a_zip_with_a_symlink_entry_is_refused(images_project, tmp_path):
    link = zipfile.ZipInfo("cat/link.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = make_zip(tmp_path / "link.zip", [("cat/ok.png", png_bytes(1)), (link, "/etc/passwd")])
    with pytest.raises(ImportRefused, match="symbolic link"):
        path_import(images_project, archive)
    assert Item.objects.count() == 0


def test_a_zip_over_the_uncompressed_cap_is_refused(images_project, tmp_path, settings):
    settings.CROWDLOOP_MAX_ZIP_UNCOMPRESSED_BYTES = 100_000
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("cat/ok.png", png_bytes(1))
        archive.writestr("cat/zeros.png", b"\0" * 5_000_000)
    assert path.stat().st_size < 20_000
    with pytest.raises(ImportRefused, match="over the cap"):
        path_import(images_project, path)
    assert Item.objects.count() == 0


def test_a_zip_entry_whose_headers_understate_its_size_never_unpacks_past_them(images_project, tmp_path, settings):
    settings.CROWDLOOP_MAX_ZIP_UNCOMPRESSED_BYTES = 100_000
    path = tmp_path / "liar.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("cat/zeros.png", b"\0" * 2_000_000)
    raw = bytearray(path.read_bytes())
    # Forge both the local and the central header's uncompressed size down to 10 bytes.
    real = (2_000_000).to_bytes(4, "little")
    for offset in [i for i in range(len(raw) - 3) if raw[i : i + 4] == real]:
        raw[offset : offset + 4] = (10).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    report = path_import(images_project, path)
    assert report.created == 0 and Item.objects.count() == 0
    assert "cannot be read from the zip" in report.problems[0].reason


def test_a_zip_with_too_many_entries_is_refused(images_project, tmp_path, settings):
    settings.CROWDLOOP_MAX_ZIP_ENTRIES = 3
    archive = make_zip(tmp_path / "many.zip", [(f"{i}.png", png_bytes(i)) for i in range(4)])
    with pytest.raises(ImportRefused, match="entries"):
        path_import(images_project, archive)


def test_a_file_that_is_not_a_zip_is_refused(images_project, tmp_path):
    with pytest.raises(ImportRefused, match="not a readable zip"):
        path_import(images_project, write(tmp_path / "fake.zip", b"PK\x03\x04 nothing"))


def test_an_image_over_our_pixel_cap_is_refused_before_decoding(images_project, tmp_path):
    write(tmp_path / "in" / "huge.png", png_with_declared_size(8_000, 8_000))
    write(tmp_path / "in" / "fine.png", png_bytes(1))
    report = path_import(images_project, tmp_path / "in")
    assert report.created == 1
    assert "over the cap" in report.problems[0].reason


def test_pillows_decompression_bomb_warning_is_an_error(images_project, tmp_path, settings, monkeypatch):
    settings.CROWDLOOP_MAX_IMAGE_PIXELS = 10**12
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    write(tmp_path / "in" / "big.png", png_bytes(1, size=(12, 12)))
    report = path_import(images_project, tmp_path / "in")
    assert report.created == 0
    assert "decompression bomb" in report.problems[0].reason


def test_a_crash_half_way_leaves_no_half_batch_and_no_orphan_file(images_project, tmp_path, settings, monkeypatch, _media_root):
    settings.CROWDLOOP_IMPORT_BATCH_SIZE = 2
    for i in range(4):
        write(tmp_path / "in" / "cat" / f"{i}.png", png_bytes(i))
    real = KnownLabel.objects.bulk_create
    calls = []

    def crash_on_second(objs, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("worker died")
        return real(objs, *args, **kwargs)

    monkeypatch.setattr(KnownLabel.objects, "bulk_create", crash_on_second)
    with pytest.raises(RuntimeError):
        path_import(images_project, tmp_path / "in")
    assert Item.objects.count() == 2 and KnownLabel.objects.count() == 2
    assert len(media_files(_media_root)) == 2 * 3


def test_a_csv_of_texts_with_labels_is_imported_and_bad_rows_reported(text_project, tmp_path):
    csv_path = write(
        tmp_path / "reviews.csv",
        'text,label\n"great, really",pos\nawful,neg\n,pos\nmeh,unsure\n"too",many,fields\nfine,\n',
    )
    report = path_import(text_project, csv_path)
    assert report.created == 3
    reasons = {p.name: p.reason for p in report.problems}
    assert reasons == {
        "reviews.csv line 4": "empty text",
        "reviews.csv line 5": "unknown label 'unsure' (project labels: neg, pos)",
        "reviews.csv line 6": "expected 2 fields, found 3",
    }
    gold = dict(KnownLabel.objects.values_list("item__text", "label__name"))
    assert gold == {"great, really": "pos", "awful": "neg"}


def test_a_csv_without_a_text_column_is_refused(text_project, tmp_path):
    with pytest.raises(ImportRefused, match="'text' column"):
        path_import(text_project, write(tmp_path / "x.csv", "body,label\nhi,pos\n"))


def test_a_csv_row_that_is_not_utf8_is_reported_and_the_rest_imported(text_project, tmp_path):
    path = write(tmp_path / "x.csv", b"text\nfine\ncaf\xe9 latin-1\nalso fine\n")
    report = path_import(text_project, path)
    assert report.created == 2
    assert [(p.name, p.reason) for p in report.problems] == [("x.csv line 3", "not valid UTF-8")]


def test_jsonl_lines_are_imported_and_malformed_ones_reported(text_project, tmp_path):
    path = write(
        tmp_path / "x.jsonl",
        '{"text": "one", "label": "pos"}\n{"text": 2}\nnot json\n\n["list"]\n{"text": "two"}\n',
    )
    report = path_import(text_project, path)
    assert report.created == 2
    assert [p.name for p in report.problems] == ["x.jsonl line 2", "x.jsonl line 3", "x.jsonl line 5"]


def test_texts_cannot_go_into_an_image_project(images_project, tmp_path):
    with pytest.raises(ImportRefused, match="image project"):
        path_import(images_project, write(tmp_path / "x.csv", "text\nhello\n"))


def test_the_cli_imports_and_reports(images_project, tmp_path, capsys):
    write(tmp_path / "in" / "a.png", png_bytes(1))
    write(tmp_path / "in" / "b.png", b"junk")
    call_command("import_items", images_project.slug, str(tmp_path / "in"), "--no-progress")
    out, err = capsys.readouterr()
    assert "1 items created, 0 already present (0 of them made gold), 1 skipped" in out
    assert "skipped b.png: not an image" in err


def test_the_cli_refuses_an_unknown_project_and_a_bad_zip(images_project, tmp_path):
    with pytest.raises(CommandError, match="no project"):
        call_command("import_items", "nope", str(tmp_path))
    archive = make_zip(tmp_path / "bad.zip", [("../x.png", png_bytes(1))])
    with pytest.raises(CommandError, match="climbs out"):
        call_command("import_items", images_project.slug, str(archive), "--no-progress")


# --- Meaning kept: gold after the pool, held-out splits, labels never dropped silently --------


def test_class_folders_imported_after_the_pool_make_those_items_gold(images_project, tmp_path):
    for i in range(4):
        write(tmp_path / "pool" / f"{i}.png", png_bytes(i))
    write(tmp_path / "gold" / "cat" / "c.png", png_bytes(0))
    write(tmp_path / "gold" / "dog" / "d.png", png_bytes(1))
    path_import(images_project, tmp_path / "pool")
    report = path_import(images_project, tmp_path / "gold")
    assert (report.created, report.duplicates, report.gold_marked) == (0, 2, 2)
    gold = dict(KnownLabel.objects.values_list("item__source_name", "label__name"))
    assert gold == {"0.png": "cat", "1.png": "dog"}
    assert set(Item.objects.filter(status=ItemStatus.LABELED).values_list("source_name", flat=True)) == {"0.png", "1.png"}


def test_a_conflicting_label_for_known_content_is_reported_not_applied(images_project, tmp_path):
    write(tmp_path / "first" / "cat" / "a.png", png_bytes(0))
    write(tmp_path / "second" / "dog" / "a.png", png_bytes(0))
    path_import(images_project, tmp_path / "first")
    report = path_import(images_project, tmp_path / "second")
    assert report.gold_marked == 0
    assert [problem.reason for problem in report.problems] == [
        "already known as 'cat'; the label 'dog' was not applied"
    ]
    assert KnownLabel.objects.get().label.name == "cat"


def test_a_held_out_split_is_never_served_and_keeps_its_labels_as_evaluation_truth(images_project, tmp_path, capsys):
    from labeling.models import EvaluationTruth, Split

    write(tmp_path / "test" / "cat" / "a.png", png_bytes(5))
    write(tmp_path / "test" / "dog" / "b.png", png_bytes(6))
    write(tmp_path / "unlabeled" / "c.png", png_bytes(7))
    call_command("import_items", images_project.slug, str(tmp_path / "test"), "--holdout", "--no-progress")
    assert "2 items created" in capsys.readouterr().out
    assert set(Item.objects.values_list("split", flat=True)) == {Split.HOLDOUT}
    assert dict(EvaluationTruth.objects.values_list("item__source_name", "label__name")) == {
        "cat/a.png": "cat", "dog/b.png": "dog",
    }
    assert not KnownLabel.objects.exists()
    report = path_import(images_project, tmp_path / "unlabeled", split=Split.HOLDOUT)
    assert report.created == 0 and "needs a label" in report.problems[0].reason


def test_pool_content_is_not_moved_into_a_held_out_split(images_project, tmp_path):
    from labeling.models import Split

    write(tmp_path / "pool" / "a.png", png_bytes(3))
    write(tmp_path / "test" / "cat" / "a.png", png_bytes(3))
    path_import(images_project, tmp_path / "pool")
    report = path_import(images_project, tmp_path / "test", split=Split.HOLDOUT)
    assert "already in the labeling pool" in report.problems[0].reason
    assert Item.objects.get().split == Split.POOL

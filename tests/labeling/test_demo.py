import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from PIL import Image

from labeling.models import EvaluationTruth, Item, ItemStatus, KnownLabel, Split
from labeling.services.demo import digit_png

pytestmark = pytest.mark.django_db


def test_demo_no_serve_creates_the_digits_project_with_gold_and_evaluation_truth(capsys):
    from sklearn.datasets import load_digits

    call_command("demo", "--no-serve")
    out = capsys.readouterr().out
    assert "Admin account: admin / " in out
    password = out.split("Admin account: admin / ")[1].split()[0]
    assert get_user_model().objects.get(username="admin").check_password(password)

    items = Item.objects.filter(project__slug="digits")
    assert items.count() == 1797
    assert items.filter(split=Split.POOL).count() == 1400
    assert items.filter(split=Split.HOLDOUT).count() == 397
    assert EvaluationTruth.objects.filter(item__project__slug="digits").count() == 1797

    gold = KnownLabel.objects.filter(item__project__slug="digits").select_related("item", "label")
    assert len(gold) == 30
    assert all(k.item.split == Split.POOL and k.item.status == ItemStatus.LABELED for k in gold)
    per_class = {}
    for known in gold:
        per_class[known.label.name] = per_class.get(known.label.name, 0) + 1
        assert known.item.evaluation_truth.label_id == known.label_id
    assert per_class == {str(k): 3 for k in range(10)}

    # Row order is kept: the source name says which load_digits row an item is.
    digits = load_digits()
    item = items.get(source_name="load_digits[1500]")
    assert item.split == Split.HOLDOUT
    assert item.evaluation_truth.label.name == str(digits.target[1500])
    assert Image.open(item.image.path).size == (32, 32)


def test_running_the_demo_twice_adds_nothing_and_keeps_the_admin_password(capsys):
    call_command("demo", "--no-serve")
    call_command("demo", "--no-serve")
    out = capsys.readouterr().out
    assert "Admin account 'admin' exists" in out
    assert Item.objects.count() == 1797 and KnownLabel.objects.count() == 30


def test_a_digit_renders_dark_ink_on_white_and_downsamples_back_exactly():
    import io

    import numpy as np
    from sklearn.datasets import load_digits

    values = load_digits().images[7]
    image = Image.open(io.BytesIO(digit_png(values)))
    assert image.mode == "L" and image.size == (32, 32)
    back = np.asarray(image.resize((8, 8), Image.Resampling.BOX), dtype=float)
    assert np.allclose(16 - back * 16 / 255, values, atol=0.05)

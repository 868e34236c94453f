"""The README's Python script, run as written there against a live server."""
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from labeling.bridge import digit_png
from labeling.models import Project, Split
from labeling.services.owner_tokens import owner_token_create

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_script():
    """The ```python block under the README's "From a Python script" heading."""
    text = README.read_text()
    section = text[text.index("#### From a Python script"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def digits_folder(root):
    """``root/digits``: 3 examples per class in class folders, 170 unlabeled at the top
    under random names; returns the true label of each unlabeled file."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    seen, truth = {}, {}
    for row in range(200):
        label = str(digits.target[row])
        if seen.get(label, 0) < 3:
            seen[label] = seen.get(label, 0) + 1
            name = f"{label}/{row}.png"
        else:
            name = f"{uuid.uuid4().hex[:12]}.png"
            truth[name] = label
        path = root / "digits" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(digit_png(digits.images[row]))
    return truth


@pytest.fixture
def script_settings(settings, celery_eager):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": uuid.uuid4().hex}
    }
    settings.CROWDLOOP_CNN_MIN_LABELS_PER_CLASS = 10**6  # cheap candidates only: seconds, not minutes
    return settings


@pytest.mark.django_db(transaction=True)
def test_the_readme_script_creates_imports_waits_for_a_model_and_downloads_predictions(
    live_server, script_settings, tmp_path
):
    owner = get_user_model().objects.create_user("scripter")
    owner.user_permissions.add(Permission.objects.get(codename="add_project"))
    _, token = owner_token_create(user=owner, name="readme")
    truth = digits_folder(tmp_path)
    env = {**os.environ, "CROWDLOOP_TOKEN": token, "CROWDLOOP_URL": live_server.url}

    done = subprocess.run(
        [sys.executable, "-c", readme_script()], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )

    assert done.returncode == 0, done.stderr[-3000:]
    project = Project.objects.get(owner=owner)
    assert project.items.filter(split=Split.POOL).count() == 200
    predictions = json.loads((tmp_path / "predictions.json").read_text())
    assert predictions["run"] == str(project.active_run_id)
    predicted = {row["source_name"]: row["label"] for row in predictions["results"]}
    assert len(predicted) == 200 and set(truth) <= set(predicted)
    right = sum(predicted[name] == label for name, label in truth.items())
    assert right / len(truth) > 0.6, f"{right} of {len(truth)} unlabeled digits predicted right from 30 examples"


def test_the_readme_shows_its_three_screenshots_and_they_stay_small():
    """Made by bench/screenshots.py; each README image exists and stays small."""
    text = README.read_text()
    shots = sorted(set(re.findall(r"\]\((docs/screenshot-[a-z-]+\.png)\)", text)))
    assert shots == [
        "docs/screenshot-dashboard.png", "docs/screenshot-training-phone.png", "docs/screenshot-widget.png"
    ]
    for shot in shots:
        path = README.parent / shot
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size < 150_000, shot

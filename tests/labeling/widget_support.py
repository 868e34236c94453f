"""Builders for the widget tests: a small project with gold and unknown items, a site,
and answers worked out from the database the way only the server could."""
import uuid

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from labeling.models import ChallengeKind, Item, ItemStatus, KnownLabel, LabelClass
from labeling.services import selection
from labeling.services.challenges import ClientInfo
from labeling.services.projects import project_create
from labeling.services.sites import site_create
from tests.labeling.factories import png_bytes

HOST = "shop.example"
VISITOR = ClientInfo(ip="203.0.113.7", user_agent="Mozilla/5.0 (pytest)", hostname=HOST)


@pytest.fixture(autouse=True)
def fresh_cache(settings):
    """Each test counts rate limits in its own in-memory cache."""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": uuid.uuid4().hex}
    }


def project_make(*, data_kind="image", labels=("1", "2", "3"), gold_per_class=10, unknown=12, name="Digits"):
    """A project with ``gold_per_class`` gold items per label and ``unknown`` items."""
    project = project_create(
        name=name, labels=list(labels), data_kind=data_kind, answers_per_item=2, max_answers_per_item=4
    )
    classes = list(project.label_classes.all())
    image = default_storage.save("tests/tile.png", ContentFile(png_bytes(3))) if data_kind == "image" else ""
    total = gold_per_class * len(classes) + unknown
    items = Item.objects.bulk_create(
        [
            Item(
                project=project, checksum=uuid.uuid4().hex * 2, source_name=f"secret-name-{i}.png",
                image=image, text=f"a short text number {i}" if data_kind == "text" else "",
            )
            for i in range(total)
        ]
    )
    gold = items[: gold_per_class * len(classes)]
    KnownLabel.objects.bulk_create(
        [KnownLabel(item=item, label=classes[i % len(classes)]) for i, item in enumerate(gold)]
    )
    Item.objects.filter(pk__in=[item.pk for item in gold]).update(status=ItemStatus.LABELED)
    return project


def site_make(project=None, **options):
    options = {"allowed_hostnames": [HOST], "min_solve_ms": 1000, "control_items": 2, **options}
    site, secret = site_create(name="Shop", projects=[project] if project else [], **options)
    return site, secret


def solution(challenge, *, right=True, unknown=None):
    """The answer body a person who knows every control label would send (or, with
    ``right=False``, one that gets every control tile wrong). ``unknown`` is what is
    answered on unknown tiles: a bool for grid and verify, a label name for choice."""
    tiles = list(challenge.tiles.select_related("item").order_by("position"))
    known = selection.control_label_of([tile.item for tile in tiles if tile.is_control])
    names = dict(LabelClass.objects.filter(project=challenge.project_id).values_list("id", "name"))
    if challenge.kind == ChallengeKind.GRID:
        selected = []
        for tile in tiles:
            if tile.is_control:
                pick = (known[tile.item_id] == challenge.target_label_id) == right
            else:
                pick = bool(unknown)
            if pick:
                selected.append(tile.public_id)
        return {"selected": selected}
    answers = {}
    for tile in tiles:
        if challenge.kind == ChallengeKind.VERIFY:
            value = (known[tile.item_id] == tile.proposed_label_id) == right if tile.is_control else bool(unknown)
        elif tile.is_control:
            truth = names[known[tile.item_id]]
            value = truth if right else next(name for name in names.values() if name != truth)
        else:
            value = unknown or next(iter(names.values()))
        answers[tile.public_id] = value
    return {"answers": answers}

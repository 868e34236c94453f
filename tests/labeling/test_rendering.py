"""Each serve of an image is a fresh rendering: the same picture to a person, never the
same bytes."""
import hashlib
import io
import random

import numpy as np
import pytest
from django.urls import reverse
from PIL import Image

from labeling.bridge import image_render
from labeling.models import ChallengeKind
from labeling.services import workers as svc
from labeling.services.challenges import challenge_image, challenge_issue
from tests.labeling.crowd import crowd_project, local_cache, registered_worker  # noqa: F401
from tests.labeling.factories import png_bytes
from tests.labeling.widget_support import VISITOR, fresh_cache, project_make, site_make  # noqa: F401


def pixels(data):
    return np.asarray(Image.open(io.BytesIO(data)), dtype=np.float64)


def smooth_png(mode="L", size=(32, 32)):
    """A smooth picture (a bright disc), like a photo rather than noise."""
    y, x = np.mgrid[: size[1], : size[0]]
    disc = (255 * np.exp(-((x - size[0] / 2) ** 2 + (y - size[1] / 2) ** 2) / 60)).astype(np.uint8)
    image = Image.fromarray(disc if mode == "L" else np.stack([disc, disc // 2, 255 - disc], axis=-1))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_renderings_never_repeat_their_bytes_but_keep_size_mode_and_picture(mode):
    original = smooth_png(mode)
    rng = random.Random(0)
    renderings = [image_render(original, rng=rng) for _ in range(50)]
    assert len({hashlib.sha256(data).hexdigest() for data in renderings}) == 50
    for data in renderings:
        image = Image.open(io.BytesIO(data))
        assert image.format == "PNG" and image.mode == mode and image.size == (32, 32)
        assert not image.info.get("exif")
        # A shift of a few pixels, a little brightness and noise: still the same picture.
        assert np.abs(pixels(data) - pixels(original)).mean() < 30
        assert np.corrcoef(pixels(data).ravel(), pixels(original).ravel())[0, 1] > 0.85


def test_the_same_seed_renders_the_same_bytes_so_tests_can_replay():
    original = png_bytes(4, size=(20, 20))
    assert image_render(original, rng=random.Random(7)) == image_render(original, rng=random.Random(7))


@pytest.mark.django_db
def test_a_challenge_tile_served_twice_comes_back_as_different_bytes(client):
    site = site_make(project_make())[0]
    challenge = challenge_issue(sitekey=site.sitekey, client=VISITOR, kind=ChallengeKind.GRID)
    tile = challenge.tiles.first()
    first = challenge_image(challenge_id=challenge.pk, public_id=tile.public_id)
    second = challenge_image(challenge_id=challenge.pk, public_id=tile.public_id)
    assert first != second and first.startswith(b"\x89PNG")


@pytest.mark.django_db
def test_the_worker_ui_serves_a_fresh_rendering_of_a_leased_image(client):
    from django.core.files.base import ContentFile

    project, _ = crowd_project(n_unknown=3, n_gold=0)
    project.data_kind = "image"
    project.save(update_fields=["data_kind"])
    item = project.items.first()
    item.image.save("tile.png", ContentFile(smooth_png()))
    worker = registered_worker("ann")
    lease = next(held for held in svc.tasks_next(worker=worker, project=project, n=3).leases if held.item_id == item.pk)
    client.force_login(worker.user)
    bodies = [client.get(reverse("api-task-image", args=[lease.public_id])) for _ in range(2)]
    assert [body.status_code for body in bodies] == [200, 200]
    assert bodies[0]["Content-Type"] == "image/png" and bodies[0].content != bodies[1].content

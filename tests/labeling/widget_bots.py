"""Bots that attack the widget without looking at what the pictures show, for the
attack suite (``test_widget_attacks.py``) and ``bench/widget_attacks.py``.

Each talks to the widget's HTTP API through Django's test client, every challenge from a
new address behind a trusted proxy (a botnet), and never waits (the site under attack
has no minimum solve time). The learning bots read challenge payloads they never answer:
the prompt and, per tile, a key of its image bytes (exact SHA-256, or a 64-bit dHash
that survives re-encoding, small shifts and noise).
"""
import hashlib
import io
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

PROXY = "10.9.0.1"
TARGET = re.compile(r"“(.+)”")
DHASH_RADIUS = 10  # bits: two dHashes this close are taken for the same picture


def dhash(data, size=8):
    """Difference hash: one bit per pair of neighbouring pixels of a 9x8 grey thumbnail."""
    with Image.open(io.BytesIO(data)) as image:
        small = image.convert("L").resize((size + 1, size), Image.Resampling.LANCZOS)
    pixels = np.asarray(small, dtype=np.int16)
    bits = (pixels[:, 1:] > pixels[:, :-1]).ravel()
    return int("".join("1" if bit else "0" for bit in bits), 2)


def hamming(a, b):
    return (a ^ b).bit_count()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


@dataclass
class Seen:
    """One challenge as a bot sees it: kind, target label (grid, verify), label names
    (choice), and per tile its public id with the SHA-256 and dHash of its image."""

    payload: dict
    kind: str
    target: str | None
    labels: list
    tiles: list = field(default_factory=list)  # (public_id, sha256, dhash)
    headers: dict = field(default_factory=dict)  # the address it was fetched from


class Widget:
    """The widget's HTTP API as an attacker reaches it."""

    def __init__(self, client, sitekey, *, origin="https://shop.example", first_address=0):
        self.client, self.sitekey, self.origin = client, sitekey, origin
        self.address = first_address

    def _headers(self):
        self.address += 1
        a = self.address
        return {
            "HTTP_ORIGIN": self.origin, "REMOTE_ADDR": PROXY, "HTTP_USER_AGENT": f"bot/{a % 7}",
            "HTTP_X_FORWARDED_FOR": f"100.{64 + a // 62500 % 64}.{a // 250 % 250}.{a % 250 + 1}",
        }

    def fetch(self, *, images=True):
        """A new challenge (from a new address) and, with ``images``, its tiles' keys;
        ``None`` when the widget refuses one."""
        headers = self._headers()
        response = self.client.get("/api/v1/challenge", {"sitekey": self.sitekey}, **headers)
        if response.status_code != 200:
            return None
        payload = response.json()
        match = TARGET.search(payload["prompt"])
        seen = Seen(payload, payload["kind"], match.group(1) if match else None, payload.get("labels", []), [], headers)
        for tile in payload["items"]:
            data = b""
            if images:
                path = tile["image"].split("://", 1)[1].split("/", 1)[1]
                data = self.client.get("/" + path, **headers).content
            seen.tiles.append((tile["id"], sha256(data) if data else None, dhash(data) if data else None))
        return seen

    def answer(self, seen, body):
        response = self.client.post(
            f"/api/v1/challenge/{seen.payload['id']}/answer", body, content_type="application/json", **seen.headers
        )
        return response.status_code == 200 and response.json()["passed"] is True


# --- Bots -----------------------------------------------------------------------------------


class RandomGuesser:
    """Knows nothing: a coin per grid tile and verify question, a random label per choice."""

    name = "random guesser"
    images = False

    def __init__(self, rng):
        self.rng = rng

    def learn(self, seen):
        pass

    def guess(self, seen, tile):
        """What it answers on ``tile`` of ``seen``: a bool (grid, verify) or a label."""
        if seen.kind == "choice":
            return self.rng.choice(seen.labels)
        return self.rng.random() < 0.5

    def body(self, seen):
        if seen.kind == "grid":
            return {"selected": [tile[0] for tile in seen.tiles if self.guess(seen, tile)]}
        return {"answers": {tile[0]: self.guess(seen, tile) for tile in seen.tiles}}


class MemorisingBot(RandomGuesser):
    """Remembers, per image key, the targets of the prompts it came with, and takes the
    most frequent one for the item's label (the leak when a grid's target was always a
    control tile's label); answers like the random guesser on tiles it never saw."""

    images = True

    def __init__(self, rng, *, key="sha256", min_seen=1):
        super().__init__(rng)
        self.key, self.min_seen = key, min_seen
        self.name = f"memorising bot ({key})"
        self.targets = defaultdict(Counter)  # key -> Counter of targets
        self.sightings = Counter()
        self.labels = set()

    def _key(self, tile):
        return tile[1] if self.key == "sha256" else tile[2]

    def _known(self, tile):
        key = self._key(tile)
        if self.key == "sha256" or key in self.sightings:
            return key if key in self.sightings else None
        near = [k for k in self.sightings if hamming(k, key) <= DHASH_RADIUS]
        return min(near, key=lambda k: hamming(k, key)) if near else None

    def learn(self, seen):
        self.labels.update(seen.labels)
        for tile in seen.tiles:
            key = self._known(tile) or self._key(tile)
            self.sightings[key] += 1
            if seen.target:
                self.labels.add(seen.target)
                self.targets[key][seen.target] += 1

    def label_of(self, tile):
        key = self._known(tile)
        if key is None or self.sightings[key] < self.min_seen or not self.targets[key]:
            return None
        return self.targets[key].most_common(1)[0][0]

    def guess(self, seen, tile):
        label = self.label_of(tile)
        if label is None:
            return super().guess(seen, tile)
        if seen.kind == "choice":
            return label if label in seen.labels else super().guess(seen, tile)
        return label == seen.target


class PromptInferenceBot(MemorisingBot):
    """Keyed on dHash; takes tiles that recur for control items (unknown items are seen
    rarely), and reads labels off the prompts: a target shared by a grid's only recurring
    tile is that tile's label (counted thrice), other targets count once."""

    def __init__(self, rng):
        super().__init__(rng, key="dhash", min_seen=2)
        self.name = "prompt-inference bot (dHash)"
        self.pending = []

    def learn(self, seen):
        super().learn(seen)
        self.pending.append(seen)

    def settle(self):
        """After learning: weigh the evidence of grids with a single recurring tile."""
        for seen in self.pending:
            if not seen.target:
                continue
            recurring = [self._known(tile) for tile in seen.tiles]
            recurring = [key for key in recurring if key is not None and self.sightings[key] >= 2]
            if len(recurring) == 1:
                self.targets[recurring[0]][seen.target] += 2
        self.pending = []


def attack(bot, widget, n, by_kind=None):
    """``n`` tries of ``bot``: ``(passed, tried)`` (refused challenges are not tries);
    ``by_kind``, a dict, collects ``[passed, tried]`` per challenge kind."""
    passed = tried = 0
    for _ in range(n):
        seen = widget.fetch(images=bot.images)
        if seen is None:
            continue
        tried += 1
        won = widget.answer(seen, bot.body(seen))
        passed += won
        if by_kind is not None:
            counts = by_kind.setdefault(seen.kind, [0, 0])
            counts[0] += won
            counts[1] += 1
    return passed, tried


def attack_project_make(*, labels, n_gold, n_unknown, seed, side=32):
    """An image project whose items each have a picture of their own (random blocks,
    smooth enough for a perceptual hash), ``n_gold`` of them gold (labels in turn)."""
    import uuid

    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from labeling.models import Item, ItemStatus, KnownLabel
    from labeling.services.projects import project_create

    rng = np.random.default_rng(seed)
    project = project_create(
        name=f"Attack {uuid.uuid4().hex[:6]}", labels=list(labels), data_kind="image", answers_per_item=6,
        max_answers_per_item=8,
    )
    classes = list(project.label_classes.all())
    rows = []
    for i in range(n_gold + n_unknown):
        blocks = rng.integers(0, 256, size=(4, 4), dtype=np.uint8)
        picture = Image.fromarray(blocks, mode="L").resize((side, side), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        name = default_storage.save(f"attack/{project.pk}/{i}.png", ContentFile(buffer.getvalue()))
        rows.append(Item(project=project, checksum=uuid.uuid4().hex * 2, image=name))
    items = Item.objects.bulk_create(rows)
    gold = items[:n_gold]
    KnownLabel.objects.bulk_create(
        [KnownLabel(item=item, label=classes[i % len(classes)]) for i, item in enumerate(gold)]
    )
    Item.objects.filter(pk__in=[item.pk for item in gold]).update(status=ItemStatus.LABELED)
    return project

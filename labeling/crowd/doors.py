"""The two front doors, walked through over HTTP the way a person would.

Each visit is a generator: it makes requests through the person's
:class:`~labeling.crowd.transport.Transport` and yields the seconds the person then
spends (reading, thinking, waiting out a rate limit). The scheduler in
:mod:`labeling.crowd.simulation` decides what a second is: simulated or real.

What a person uses: the JSON the server sent, the images it points at (downloaded and
read, see :mod:`labeling.crowd.reader`), cookies. Never an item id or a database row.
"""
import re
from functools import partial

from labeling.crowd.reader import read_label

CHALLENGE_PATH = "/api/v1/challenge"
SITEVERIFY_PATH = "/api/siteverify"
LOGIN_PATH = "/accounts/login/"
DIGITS = [str(d) for d in range(10)]
QUOTED = re.compile(r"[“\"'«]([^”\"'»]+)[”\"'»]")
MAX_RATE_LIMIT_WAITS = 3
QUICK_KINDS = ("grid", "verify")  # a yes/no look is quicker than naming the label


def _retry_after(reply):
    try:
        return max(float(reply.headers.get("retry-after", "5")), 1.0)
    except ValueError:
        return 5.0


def look(web, item):
    """Download what an item shows and read it: the digit, or ``None`` (texts, images
    that are not digits, a failed download)."""
    if "image" not in item:
        return None
    reply = web.get(item["image"], name="image")
    if reply.status != 200:
        return None
    return read_label(reply.body)


def prompt_label(payload):
    """The label a grid or verify challenge asks about, as the person reads the prompt."""
    if payload.get("target"):
        return str(payload["target"])
    match = QUOTED.search(payload.get("prompt", ""))
    return match.group(1) if match else None


def challenge_response(person, payload, truths):
    """The body ``person`` sends for ``payload`` after reading its items (``truths``:
    item id to what they read)."""
    items = payload.get("items", [])
    # A grid or verify payload names no label list: the person knows what they read and
    # what is asked, and errs among those and the digits.
    asked = prompt_label(payload)
    labels = payload.get("labels") or sorted({*DIGITS, *(t for t in truths.values() if t), *([asked] if asked else [])})
    kind = payload.get("kind")
    if kind == "grid":
        target = prompt_label(payload)
        return {"selected": [item["id"] for item in items if person.select(truths[item["id"]], target, labels)]}
    if kind == "verify":
        proposed = prompt_label(payload)
        return {"answers": {item["id"]: person.confirm(truths[item["id"]], proposed, labels) for item in items}}
    return {"answers": {item["id"]: person.choose(truths[item["id"]], labels) for item in items}}


def widget_visit(person, web, site, ledger, *, max_tries=3):
    """A visitor on a page protected by the widget: solves challenges until one passes
    (at most ``max_tries``), the site's server verifies the token, the visitor leaves.

    ``site`` carries ``sitekey``, ``secret`` and ``server`` (the site owner's own
    transport for siteverify).
    """
    reply = yield from _rate_limited(
        person, ledger, partial(web.get, CHALLENGE_PATH, {"sitekey": site.sitekey}, name="challenge")
    )
    if reply is None:
        return
    payload = _challenge_or_stop(person, ledger, reply)
    for _ in range(max_tries):
        if payload is None or ledger.left() <= 0:
            return
        items = payload.get("items", [])
        truths = {item["id"]: look(web, item) for item in items}
        body = challenge_response(person, payload, truths)
        factor = 0.6 if payload.get("kind") in QUICK_KINDS else 1.0
        ledger.spend(person, len(items))
        ledger.note(person, "challenges")
        yield person.seconds_for(len(items)) * factor
        path = f"{CHALLENGE_PATH}/{payload['id']}/answer"
        reply = yield from _rate_limited(person, ledger, partial(web.post_json, path, body, name="answer"))
        if reply is None:
            return
        result = reply.json() if reply.status == 200 else None
        if not isinstance(result, dict):
            ledger.error(person, "answer", reply)
            return
        if result.get("passed"):
            ledger.note(person, "passed")
            verdict = site.server.post_form(
                SITEVERIFY_PATH, {"secret": site.secret, "response": result.get("token") or ""}, name="siteverify"
            )
            outcome = verdict.json() or {}
            ledger.note(person, "verified" if outcome.get("success") else "verify_refused")
            if verdict.status != 200:
                ledger.error(person, "siteverify", verdict)
            return
        ledger.note(person, "failed")
        if result.get("reason") == "too-fast":
            ledger.note(person, "failed_too_fast")
        if result.get("error") == "visitor-blocked":
            ledger.note(person, "blocked")
        payload = result.get("next")


def _challenge_or_stop(person, ledger, reply):
    if reply.status == 200:
        payload = reply.json()
        if isinstance(payload, dict) and "id" in payload:
            return payload
    data = reply.json() or {}
    if reply.status == 403 and data.get("error") == "visitor-blocked":
        ledger.note(person, "blocked")
    elif reply.status == 503:
        ledger.note(person, "nothing_to_ask")
    else:
        ledger.error(person, "challenge", reply)
    return None


def _rate_limited(person, ledger, send):
    """``send()`` again after each 429, waiting as told (a few times at most)."""
    for _ in range(MAX_RATE_LIMIT_WAITS + 1):
        reply = send()
        if reply.status != 429:
            return reply
        ledger.note(person, "rate_limited")
        yield _retry_after(reply)
    return None


def worker_session(person, web, *, slug, username, password, ledger, batch=5, idle_wait_s=30.0, max_idle=4):
    """A registered worker: logs in, then takes items ``batch`` at a time and answers
    them one by one, as the labeling page does, until the budget is spent, the account
    is paused or banned (403), or no work comes for a while."""
    page = web.get(LOGIN_PATH, name="login")
    token = web.cookie("csrftoken")
    reply = web.post_form(
        LOGIN_PATH, {"username": username, "password": password, "csrfmiddlewaretoken": token or ""},
        headers={"Referer": LOGIN_PATH}, name="login",
    )
    if page.status != 200 or reply.status != 302 or not web.cookie("sessionid"):
        ledger.error(person, "login", reply)
        return
    yield person.seconds_for(1)
    next_path = f"/api/v1/projects/{slug}/next"
    answers_path = f"/api/v1/projects/{slug}/answers"
    idle = 0
    while ledger.left() > 0:
        reply = yield from _rate_limited(person, ledger, partial(web.get, next_path, {"n": batch}, name="next"))
        if reply is None or _stopped(person, ledger, reply, "next"):
            return
        data = reply.json()
        items, labels = data.get("items", []), [label["name"] for label in data.get("labels", [])]
        if not items:
            idle += 1
            ledger.note(person, "idle")
            if idle > max_idle:
                return
            yield idle_wait_s
            continue
        idle = 0
        for item in items:
            if ledger.left() <= 0:
                return
            truth = look(web, item)
            label = person.choose(truth, labels)
            seconds = person.seconds_for(1)
            ledger.spend(person, 1)
            yield seconds
            body = [{"id": item["id"], "label": label, "key": f"{person.rng.getrandbits(128):032x}",
                     "time_ms": int(seconds * 1000)}]
            headers = {"X-CSRFToken": web.cookie("csrftoken") or ""}
            reply = yield from _rate_limited(
                person, ledger, partial(web.post_json, answers_path, body, headers=headers, name="submit")
            )
            if reply is None or _stopped(person, ledger, reply, "submit"):
                return
            for result in (reply.json() or {}).get("results", []):
                ledger.note(person, f"task_{result.get('status')}")


def _stopped(person, ledger, reply, endpoint):
    if reply.status == 200:
        return False
    if reply.status == 403:
        ledger.note(person, "caught")
    else:
        ledger.error(person, endpoint, reply)
    return True

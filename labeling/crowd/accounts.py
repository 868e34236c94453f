"""The registered workers of a simulated crowd and their accounts."""
import random
import secrets

from labeling.crowd.people import kinds_split, person_make


def crowd_people(spec, *, run_tag=""):
    """The registered workers of a crowd (visitors are made as they arrive)."""
    rng = random.Random(spec.seed)
    people = []
    for i, kind in enumerate(kinds_split(spec.workers, spec.shares, rng)):
        person = person_make(f"w{i}-{kind}", kind, "worker", rng, accuracy_range=spec.accuracy_range)
        person.username = f"crowd{run_tag}-{i:03d}-{kind}".replace("_", "-")
        people.append(person)
    return people


def crowd_accounts_provision(project, people, *, password=None):
    """Create (or reset the password of) each worker's account and admit it to
    ``project`` when the project is not open to all: the operator's part, done through
    the workers service. Returns the password every simulated worker logs in with."""
    from django.contrib.auth import get_user_model

    from labeling.services.workers import (
        membership_grant,
        worker_for_user,
        worker_sign_up,
    )

    password = password or secrets.token_urlsafe(16)
    User = get_user_model()
    for person in people:
        if person.door != "worker":
            continue
        user = User.objects.filter(username=person.username).first()
        if user is None:
            user = worker_sign_up(username=person.username, password=password)
        else:
            user.set_password(password)
            user.save(update_fields=["password"])
        worker = worker_for_user(user)
        if not project.open_to_all_workers:
            membership_grant(project, worker)
    return password

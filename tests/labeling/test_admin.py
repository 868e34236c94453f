import random

import pytest

from labeling.models import Answer, Consensus, Item, KnownLabel, Site
from labeling.services.sites import site_get_by_secret
from tests.labeling.crowd import crowd_project, registered_worker, simulate
from tests.labeling.widget_support import project_make, site_make

pytestmark = pytest.mark.django_db

DERIVED = ["answer", "consensus", "knownlabel", "item", "prediction", "trainingrun", "pseudolabel", "importjob"]


@pytest.mark.parametrize("model", DERIVED)
def test_derived_rows_cannot_be_added_in_the_admin(admin_client, model):
    assert admin_client.get(f"/admin/labeling/{model}/add/").status_code == 403
    assert admin_client.get(f"/admin/labeling/{model}/").status_code == 200


def test_a_gold_label_cannot_be_edited_or_deleted_beside_the_services(admin_client):
    project, _ = crowd_project(n_unknown=2, n_gold=2)
    known = KnownLabel.objects.filter(item__project=project).first()
    other = project.label_classes.exclude(pk=known.label_id).first()
    url = f"/admin/labeling/knownlabel/{known.pk}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert admin_client.post(url, {"item": known.item_id, "label": other.pk, "source": "gold"}).status_code == 403
    assert admin_client.post(f"/admin/labeling/knownlabel/{known.pk}/delete/", {"post": "yes"}).status_code == 403
    known.refresh_from_db()
    assert known.label_id != other.pk


def test_the_item_action_recomputes_consensus_through_the_service(admin_client):
    project, truth = crowd_project(n_unknown=6, n_gold=3)
    simulate(registered_worker("ann"), project, truth, p_correct=1.0, rng=random.Random(0), max_answers=6)
    answered = list(Item.objects.filter(project=project, answers__isnull=False, known_label__isnull=True).distinct())
    assert answered and Answer.objects.filter(item__in=answered).exists()
    Consensus.objects.filter(item__in=answered).delete()
    response = admin_client.post(
        "/admin/labeling/item/",
        {"action": "items_consensus_recompute", "_selected_action": [item.pk for item in answered]},
    )
    assert response.status_code == 302
    assert Consensus.objects.filter(item__in=answered).count() == len(answered)


def test_changing_a_site_in_the_admin_goes_through_site_update(admin_client):
    project = project_make()
    site, secret = site_make(project)
    response = admin_client.post(
        f"/admin/labeling/site/{site.pk}/change/",
        {"name": "Renamed", "projects": [project.pk], "allowed_hostnames": "Shop.Example.\n*.shop.example",
         "mode": "normal", "control_items": 3, "pass_share": 0.5, "min_solve_ms": 900},
    )
    assert response.status_code == 302, response.content[:500]
    site = Site.objects.get(pk=site.pk)
    assert site.name == "Renamed" and site.allowed_hostnames == ["shop.example", "*.shop.example"]
    assert site.control_items == 3 and list(site.projects.all()) == [project]
    assert site_get_by_secret(secret) == site  # the keys stay


def test_a_site_added_in_the_admin_is_made_by_site_create(admin_client, monkeypatch):
    project = project_make()
    from labeling.services import sites

    made = []
    real = sites.site_create

    def spy(**fields):
        made.append(fields)
        return real(**fields)

    monkeypatch.setattr(sites, "site_create", spy)
    response = admin_client.post(
        "/admin/labeling/site/add/",
        {"name": "Blog", "projects": [project.pk], "allowed_hostnames": "blog.example",
         "mode": "normal", "control_items": 2, "pass_share": 1.0, "min_solve_ms": 1500},
    )
    assert response.status_code == 200, response.content[:500]
    assert [fields["name"] for fields in made] == ["Blog"]
    site = Site.objects.get(name="Blog")
    assert list(site.projects.all()) == [project] and site.sitekey

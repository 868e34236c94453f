"""The admin dashboard: who may see it, what it shows, that it stays fast and escaped."""

import re
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from labeling.dashboard import aggregates, charts, selectors, services
from labeling.dashboard.svg import nice_ticks
from labeling.middleware import DEFAULT_POLICY, ContentSecurityPolicyMiddleware, csp_exempt, csp_override
from labeling.models import (
    Answer,
    Consensus,
    EvaluationTruth,
    Item,
    ItemEmbedding,
    ItemStatus,
    KnownLabel,
    PipelineKind,
    PipelineRun,
    Prediction,
    Project,
    PseudoLabel,
    RunStatus,
    Site,
    Split,
    TrainingRun,
    Worker,
    WorkerDecision,
    WorkerKind,
    WorkerSkill,
    WorkerStatus,
)
from labeling.services import semisupervised
from labeling.services.answers import AnswerInput, answers_record
from labeling.services.projects import project_create, project_stats_refresh
from labeling.services.worker_status import worker_status_in
from ml.agreement import fleiss_kappa, krippendorff_alpha, ratings_table
from tests.labeling.outbox_support import broker  # noqa: F401

pytestmark = pytest.mark.django_db
XSS = "<img src=x onerror=alert(1)>"
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"
PAGES = ["overview", "workers", "items", "clusters", "training", "sites", "audit"]


@pytest.fixture(autouse=True)
def fresh_cache(settings):
    """Each test gets its own in-memory cache, so no aggregate leaks between tests."""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": uuid.uuid4().hex}
    }
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def owner():
    return get_user_model().objects.create_user("owner", password="pw-owner-123")


def loop_project(owner, *, labels=("cat", "dog", "bird"), name="Pets", n_items=12, n_workers=4):
    """A small text project that has been through every stage of the loop: gold, answers
    from honest workers and a spammer, consensus, pseudo-labels, a model, a map, a site."""
    project = project_create(
        name=name, labels=list(labels), data_kind="text", owner=owner, answers_per_item=2, max_answers_per_item=4
    )
    classes = list(project.label_classes.order_by("position"))
    items = Item.objects.bulk_create(
        [
            Item(
                project=project,
                text=f"text {i}",
                checksum=f"{project.pk:08d}{i:056d}",
                source_name=f"row-{i}.txt",
                priority=1.0 / (i + 1),
                priority_reason="uncertain: low top posterior",
            )
            for i in range(n_items)
        ]
    )
    holdout = Item.objects.create(
        project=project, text="held out", checksum=f"{project.pk:08d}h" + "0" * 55, split=Split.HOLDOUT
    )
    EvaluationTruth.objects.create(item=holdout, label=classes[0])
    for item in items[:3]:
        KnownLabel.objects.create(item=item, label=classes[0])
    Item.objects.filter(pk__in=[i.pk for i in items[:3]]).update(status=ItemStatus.LABELED)
    users = get_user_model().objects.bulk_create(
        [get_user_model()(username=f"{name.lower()}-worker-{k}") for k in range(n_workers)]
    )
    workers = [Worker.objects.create(user=user) for user in users]
    bot = Worker.objects.create(kind=WorkerKind.VISITOR, visitor_key=uuid.uuid4().hex)
    for k, worker in enumerate(workers):
        inputs = [
            AnswerInput(
                item=item,
                label_id=classes[0].pk,
                task_ref="gold",
                is_control=True,
                correct=True,
                time_taken_ms=1500 + 100 * k,
            )
            for item in items[:3]
        ]
        inputs += [
            AnswerInput(item=item, label_id=classes[i % 2 + 1].pk, task_ref="t", time_taken_ms=2000 + 10 * i)
            for i, item in enumerate(items[3:8])
        ]
        answers_record(worker=worker, inputs=inputs, source="worker")
    answers_record(
        worker=bot,
        source="widget",
        inputs=[
            AnswerInput(
                item=item, label_id=classes[2].pk, task_ref="c", is_control=True, correct=False, time_taken_ms=90
            )
            for item in items[:3]
        ],
    )
    PseudoLabel.objects.create(item=items[8], label=classes[1], confidence=0.98, source="propagation", accepted=True)
    Item.objects.filter(pk=items[8].pk).update(status=ItemStatus.PSEUDO_LABELED)
    run = TrainingRun.objects.create(
        project=project,
        status=RunStatus.SUCCEEDED,
        epoch=3,
        n_epochs=3,
        device="cpu",
        history=[
            {"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "val_accuracy": 0.5 + 0.1 * e} for e in (1, 2, 3)
        ],
        metrics={
            "accuracy": 0.8,
            "eval_accuracy": 0.75,
            "human_answers": 20,
            "per_class": [0.9, 0.7, 0.8],
            "confusion": [[5, 1, 0], [1, 4, 1], [0, 1, 5]],
            "train_n": 10,
            "val_n": 3,
            "pseudo_n": 1,
        },
    )
    Project.objects.filter(pk=project.pk).update(active_run=run)
    project.active_run = run
    Prediction.objects.bulk_create(
        [
            Prediction(item=item, run=run, label=classes[i % 3], confidence=0.6)
            for i, item in enumerate(items + [holdout])
        ]
    )
    ItemEmbedding.objects.bulk_create(
        [
            ItemEmbedding(item=item, cluster=i % 3, x=float(i), y=float(i % 4), is_representative=i < 3)
            for i, item in enumerate(items)
        ]
    )
    PipelineRun.objects.create(
        project=project,
        kind=PipelineKind.CLUSTER,
        status=RunStatus.SUCCEEDED,
        progress=1.0,
        message="12 items in 3 clusters",
    )
    WorkerSkill.objects.create(
        worker=workers[0],
        project=project,
        accuracy=0.9,
        n_answers=8,
        confusion=[[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.05, 0.05, 0.9]],
    )
    WorkerDecision.objects.create(
        worker=bot,
        project=project,
        previous_status="active",
        new_status="paused",
        reason="control accuracy 0/3 below 0.5",
        automatic=True,
    )
    site = Site.objects.create(
        name="Shop",
        sitekey=f"key-{project.pk}",
        secret_hash="sha256$" + "5ec7e7" * 10,
        allowed_hostnames=["shop.example"],
        owner=owner,
        challenges_issued=10,
        challenges_passed=7,
    )
    site.projects.add(project)
    project_stats_refresh(project)
    return Project.objects.select_related("stats", "active_run").get(pk=project.pk)


@pytest.fixture
def project(owner):
    return loop_project(owner)


def page_url(name, project, *args):
    return reverse(f"dashboard:{name}", args=[project.slug, *args])


# --- Access -------------------------------------------------------------------------------------


def test_pages_need_a_login_and_stay_hidden_from_other_users(client, project, django_user_model):
    for name in PAGES:
        response = client.get(page_url(name, project))
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    client.force_login(django_user_model.objects.create_user("stranger"))
    for name in [*PAGES, "live"]:
        assert client.get(page_url(name, project)).status_code == 404
    assert project.name not in client.get(reverse("dashboard:projects")).content.decode()
    worker = Worker.objects.filter(user__isnull=False).first()
    response = client.post(page_url("worker-status", project, worker.pk), {"status": "banned", "reason": "no"})
    assert response.status_code == 404
    assert Worker.objects.get(pk=worker.pk).status == WorkerStatus.ACTIVE


def test_staff_see_every_project(client, project, django_user_model):
    client.force_login(django_user_model.objects.create_user("staff", is_staff=True))
    assert project.name in client.get(reverse("dashboard:projects")).content.decode()
    assert client.get(page_url("overview", project)).status_code == 200


@pytest.mark.parametrize("name", PAGES)
def test_every_page_renders_for_the_owner_under_the_policy(client, owner, project, name):
    client.force_login(owner)
    response = client.get(page_url(name, project))
    assert response.status_code == 200
    assert response["Content-Security-Policy"] == DEFAULT_POLICY
    html = response.content.decode()
    assert "<script>" not in html and " style=" not in html and "onclick" not in html.lower()


def test_detail_pages_render(client, owner, project):
    client.force_login(owner)
    worker = Worker.objects.filter(skills__project=project).first()
    item = project.items.filter(answers__isnull=False).first()
    run = project.training_runs.first()
    for url in (
        page_url("worker", project, worker.pk),
        page_url("item", project, item.pk),
        page_url("training", project) + f"?run={run.pk}",
        page_url("training-panel", project, run.pk),
    ):
        response = client.get(url)
        assert response.status_code == 200, url
    assert client.get(page_url("training", project) + "?run=not-a-uuid").status_code == 200


# --- What the pages say ----------------------------------------------------------------------------


def test_the_projects_list_shows_progress_answers_of_the_last_hour_and_model_accuracy(client, owner, project):
    client.force_login(owner)
    html = client.get(reverse("dashboard:projects")).content.decode()
    assert reverse("dashboard:overview", args=[project.slug]) in html
    assert 'class="stackbar"' in html
    last_hour = Answer.objects.filter(item__project=project).count()
    assert re.search(rf'<td class="num">{last_hour}</td>', html)
    assert "0.800" in html


def test_label_sources_count_each_pool_item_once(project):
    breakdown = aggregates.label_breakdown(project)
    sources = breakdown["sources"]
    assert sources["gold"] == 3 and sources["pseudo"] == 1
    assert breakdown["holdout_total"] == 1
    assert breakdown["pool_total"] == project.items.filter(split=Split.POOL).count()
    labeled_by_humans = Item.objects.filter(
        project=project, status=ItemStatus.LABELED, known_label__isnull=True
    ).count()
    assert sources["consensus"] + sources["verified"] == labeled_by_humans
    unlabeled = Item.objects.filter(project=project, split=Split.POOL, status=ItemStatus.UNLABELED).count()
    assert sources["model"] == unlabeled and sources["none"] == 0
    per_class_total = sum(sum(counts.values()) for counts in breakdown["per_class"].values())
    assert per_class_total == sum(sources[s] for s in aggregates.LABEL_SOURCES)


def test_a_pseudo_label_humans_confirmed_counts_as_verified(project):
    item = project.items.filter(status=ItemStatus.PSEUDO_LABELED).get()
    pseudo = item.pseudo_label
    Item.objects.filter(pk=item.pk).update(status=ItemStatus.LABELED)
    Consensus.objects.update_or_create(
        item=item, defaults={"label": pseudo.label, "confidence": 0.95, "n_answers": 2, "method": "x"}
    )
    assert aggregates.label_breakdown(project)["sources"]["verified"] == 1
    rows, _ = selectors.items_page(project, selectors.ItemFilters(source="verified"))
    assert [row.pk for row in rows] == [item.pk] and rows[0].label_info["source"] == "verified"


@pytest.mark.parametrize("source", [key for key, _ in aggregates.SOURCES])
def test_the_items_source_filter_agrees_with_the_breakdown(project, source):
    rows, _ = selectors.items_page(project, selectors.ItemFilters(source=source, split=Split.POOL))
    assert len(rows) == aggregates.label_breakdown(project)["sources"][source]
    assert all(row.label_info["source"] == source for row in rows)


def test_without_a_model_unlabeled_items_have_no_label(project):
    Project.objects.filter(pk=project.pk).update(active_run=None)
    project = Project.objects.get(pk=project.pk)
    sources = aggregates.label_breakdown(project)["sources"]
    assert sources["model"] == 0 and sources["none"] == 3
    rows, _ = selectors.items_page(project, selectors.ItemFilters(source="none", split=Split.POOL))
    assert len(rows) == 3 and not selectors.items_page(project, selectors.ItemFilters(source="model"))[0]
    assert {p[5] for p in aggregates.cluster_points(project)["points"]} >= {"none", "gold"}


def test_agreement_is_computed_once_per_ttl_from_counted_answers(project, django_assert_num_queries):
    result = aggregates.agreement(project)
    classes = {label.pk: i for i, label in enumerate(project.label_classes.order_by("position"))}
    rows = list(
        Answer.objects.filter(item__project=project).exclude(worker__status="banned").values_list("item_id", "label_id")
    )
    table = ratings_table([r[0] for r in rows], [classes[r[1]] for r in rows], n_categories=3)
    assert result["fleiss_kappa"] == pytest.approx(fleiss_kappa(table), abs=1e-4)
    assert result["krippendorff_alpha"] == pytest.approx(krippendorff_alpha(table), abs=1e-4)
    assert result["items"] == 8
    with django_assert_num_queries(0):
        assert aggregates.agreement(project) == result


def test_throughput_buckets_answers_by_hour_and_day(project):
    now = timezone.now()
    old = Answer.objects.filter(item__project=project).first()
    Answer.objects.filter(pk=old.pk).update(created_at=now - timedelta(hours=5))
    data = aggregates.throughput(project, now=now)
    assert len(data["hourly"]) == 48 and len(data["daily"]) == 30
    total = Answer.objects.filter(item__project=project).count()
    assert sum(n for _, _, n in data["hourly"]) == total
    assert data["hourly"][-6][2] == 1
    assert sum(n for _, _, n in data["daily"]) == total


def test_ended_hours_are_not_counted_again(project, django_assert_num_queries):
    now = timezone.now()
    answers = Answer.objects.filter(item__project=project)
    answers.update(created_at=now - timedelta(hours=3))
    before = aggregates.answers_per_hour(project, now=now)
    assert list(before.values()) == [answers.count()]
    answers.update(created_at=now - timedelta(hours=10))  # a recount would move them
    later = now + timedelta(hours=1)
    with django_assert_num_queries(1):
        after = aggregates.answers_per_hour(project, now=later)
    assert after == before


def test_the_queue_shows_what_the_strategy_serves_next_and_why(client, owner, project):
    client.force_login(owner)
    html = client.get(page_url("overview", project)).content.decode()
    queue = html.split('id="queue"')[1]
    assert "uncertain: low top posterior" in queue
    served = selectors.queue_preview(project)
    assert served and not KnownLabel.objects.filter(item__in=served).exists()
    assert f"#{served[0].pk}<" in queue


def test_live_json_reports_counts_and_training_progress(client, owner, project):
    run = TrainingRun.objects.create(project=project, status=RunStatus.RUNNING, epoch=2, n_epochs=5)
    client.force_login(owner)
    state = client.get(page_url("live", project)).json()
    assert state["active"] is True
    assert state["stats"]["answers_total"] == project.stats.answers_total
    assert state["stats"]["answers_last_hour"] == project.stats.answers_total
    latest = state["training"][0]
    assert latest["id"] == str(run.pk) and latest["epoch"] == 2 and latest["n_epochs"] == 5
    assert state["pipeline"][0]["kind"] == PipelineKind.CLUSTER


def test_the_training_page_draws_curves_confusion_and_the_learning_curve(client, owner, project):
    TrainingRun.objects.create(
        project=project,
        status=RunStatus.SUCCEEDED,
        metrics={"accuracy": 0.9, "eval_accuracy": 0.85, "human_answers": 60},
    )
    client.force_login(owner)
    html = client.get(page_url("training", project) + f"?run={project.active_run_id}").content.decode()
    assert 'aria-label="Loss per epoch"' in html and 'aria-label="Confusion matrix on the validation set"' in html
    assert 'aria-label="Accuracy per class"' in html
    learning = html.split('aria-label="Learning curve')[1]
    assert learning.count("<polyline") == 2
    assert "60 → 90%" in learning and "20 → 80%" in learning


def test_the_cluster_map_links_each_point_to_its_item(client, owner, project):
    client.force_login(owner)
    html = client.get(page_url("clusters", project)).content.decode()
    links = re.findall(r'<a href="(/dashboard/[^"]+/items/\d+/)" class="point" aria-label="[^"]+">', html)
    assert len(links) == project.items.filter(embedding__isnull=False).count()
    by_source = client.get(page_url("clusters", project) + "?by=source").content.decode()
    assert "src-gold" in by_source and "src-pseudo" in by_source


def test_the_cluster_map_samples_big_projects(project, monkeypatch):
    monkeypatch.setattr(aggregates, "MAP_MAX_POINTS", 4)
    points = aggregates.cluster_points(project)["points"]
    assert 3 <= len(points) <= 4 + 3
    assert {p[0] for p in points} >= set(
        ItemEmbedding.objects.filter(item__project=project, is_representative=True).values_list("item_id", flat=True)
    )


def test_workers_filter_and_sort(client, owner, project):
    client.force_login(owner)
    rows, _ = selectors.workers_page(project, selectors.WorkerFilters(kind=WorkerKind.VISITOR))
    assert len(rows) == 1 and rows[0].control_total == 3 and rows[0].accuracy_text == "0%"
    rows, _ = selectors.workers_page(project, selectors.WorkerFilters(sort="accuracy"))
    assert rows[0].kind == WorkerKind.VISITOR
    rows, _ = selectors.workers_page(project, selectors.WorkerFilters(sort="-skill"))
    assert rows[0].project_skill == 0.9
    assert rows[0].median_ms == 2005 and rows[0].answers_here == 8
    html = client.get(page_url("workers", project) + "?status=banned").content.decode()
    assert "No workers match." in html
    html = client.get(page_url("workers", project)).content.decode()
    assert "control accuracy 0/3 below 0.5" in html


def test_sites_show_the_public_key_and_suspected_bots(client, owner, project):
    client.force_login(owner)
    html = client.get(page_url("sites", project)).content.decode()
    site = Site.objects.get(projects=project)
    assert site.sitekey in html and "shop.example" in html and site.secret_hash not in html and "5ec7e7" not in html
    bots = html.split("Suspected bots")[1]
    assert "visitor #" in bots and "0 of 3" in bots


# --- Actions ------------------------------------------------------------------------------------


def test_banning_a_worker_records_the_decision_and_undo_reverses_it(client, owner, project):
    client.force_login(owner)
    worker = Worker.objects.filter(user__isnull=False).first()
    url = page_url("worker-status", project, worker.pk)
    assert client.post(url, {"status": "banned", "reason": ""}).status_code == 302
    assert Worker.objects.get(pk=worker.pk).status == WorkerStatus.ACTIVE
    client.post(url, {"status": "banned", "reason": "copies answers from a bot"})
    worker.refresh_from_db()
    decision = WorkerDecision.objects.get(worker=worker)
    assert worker_status_in(worker, project) == WorkerStatus.BANNED and worker.status == WorkerStatus.ACTIVE
    assert (decision.automatic, decision.decided_by, decision.previous_status) == (False, owner, "active")
    html = client.get(page_url("worker", project, worker.pk)).content.decode()
    assert reverse("dashboard:decision-undo", args=[project.slug, decision.pk]) in html
    client.post(reverse("dashboard:decision-undo", args=[project.slug, decision.pk]))
    decision.refresh_from_db()
    assert worker_status_in(worker, project) == WorkerStatus.ACTIVE and decision.reversed_at is not None
    response = client.post(reverse("dashboard:decision-undo", args=[project.slug, decision.pk]), follow=True)
    assert "already reversed" in response.content.decode()


def test_a_banned_workers_answers_stop_counting(client, owner, project):
    client.force_login(owner)
    worker = Worker.objects.filter(user__isnull=False).first()
    answered = list(Answer.objects.filter(worker=worker, is_control=False).values_list("item_id", flat=True))
    before = dict(Item.objects.filter(pk__in=answered).values_list("pk", "answer_count"))
    client.post(page_url("worker-status", project, worker.pk), {"status": "banned", "reason": "spam"})
    after = dict(Item.objects.filter(pk__in=answered).values_list("pk", "answer_count"))
    assert all(after[pk] == before[pk] - 1 for pk in answered)
    assert all(Consensus.objects.get(item_id=pk).n_answers == after[pk] for pk in answered)


def test_decisions_of_workers_outside_the_project_are_not_found(client, owner, project):
    other = loop_project(get_user_model().objects.create_user("other-owner"), name="Elsewhere", n_workers=1)
    decision = WorkerDecision.objects.get(project=other)
    client.force_login(owner)
    assert client.post(reverse("dashboard:decision-undo", args=[project.slug, decision.pk])).status_code == 404


def test_settling_and_marking_gold_by_hand(client, owner, project):
    client.force_login(owner)
    classes = list(project.label_classes.order_by("position"))
    item = project.items.filter(status=ItemStatus.UNLABELED, split=Split.POOL).first()
    client.post(page_url("item-settle", project, item.pk), {"label": classes[2].pk})
    known = KnownLabel.objects.get(item=item)
    assert (known.source, known.label, known.created_by) == ("settled", classes[2], owner)
    assert Item.objects.get(pk=item.pk).status == ItemStatus.LABELED
    client.post(page_url("item-gold", project, item.pk), {"label": classes[1].pk})
    known.refresh_from_db()
    assert (known.source, known.label) == ("gold", classes[1])
    holdout = project.items.get(split=Split.HOLDOUT)
    response = client.post(page_url("item-gold", project, holdout.pk), {"label": classes[1].pk}, follow=True)
    assert "held-out items cannot be labeled here" in response.content.decode()
    client.post(page_url("item-settle", project, holdout.pk), {"label": classes[1].pk})
    assert not KnownLabel.objects.filter(item=holdout).exists()


def test_a_label_of_another_project_is_refused(client, owner, project):
    other = project_create(name="Other", labels=["x"], owner=owner)
    client.force_login(owner)
    item = project.items.filter(known_label__isnull=True, split=Split.POOL).first()
    client.post(page_url("item-settle", project, item.pk), {"label": other.label_classes.get().pk})
    assert not KnownLabel.objects.filter(item=item).exists()


def test_start_training_answers_at_once_and_a_task_creates_the_run(
    client, owner, project, monkeypatch, django_capture_on_commit_callbacks, broker
):
    from labeling import tasks
    from labeling.services import training

    checked = []
    monkeypatch.setattr(training, "training_run_check", lambda p, config=None: checked.append(config) or config)
    client.force_login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(page_url("training-start", project), {"epochs": "7"})
    queued = broker.args_of(tasks.training_request_task)
    assert checked == [{"epochs": 7}] and queued == [[project.pk, {"epochs": 7}, owner.pk]]
    assert not TrainingRun.objects.filter(n_epochs=7).exists()
    assert "?requested=" in response["Location"]
    page = client.get(response["Location"]).content.decode()
    assert "data-awaiting-run" in page and "Training requested" in page
    TrainingRun.objects.create(project=project, n_epochs=7)
    assert "data-awaiting-run" not in client.get(response["Location"]).content.decode()


def test_the_training_request_task_creates_the_run_once(project, monkeypatch):
    from labeling import tasks
    from labeling.services import training

    def fake_create(project, *, config=None, user=None):
        run = TrainingRun.objects.filter(project=project, status=RunStatus.QUEUED).first()
        return run or TrainingRun.objects.create(project=project, n_epochs=config["epochs"])

    monkeypatch.setattr(training, "training_run_create", fake_create)
    first = tasks.training_request_task(project.pk, {"epochs": 7})
    again = tasks.training_request_task(project.pk, {"epochs": 7})
    assert first["run"] == again["run"] and TrainingRun.objects.filter(n_epochs=7).count() == 1


def test_start_training_shows_why_it_was_refused(client, owner):
    unlabeled = project_create(name="Nothing labeled", labels=["x", "y"], data_kind="text", owner=owner)
    client.force_login(owner)
    response = client.post(page_url("training-start", unlabeled), {}, follow=True)
    assert "Training not started" in response.content.decode()
    assert "fewer than two classes" in response.content.decode()


def test_start_clustering_calls_the_pipeline_service(client, owner, project, monkeypatch):
    client.force_login(owner)
    started = []
    monkeypatch.setattr(
        semisupervised, "pipeline_start", lambda p: started.append(p.pk) or PipelineRun(project=p, kind="cluster")
    )
    response = client.post(page_url("clustering-start", project), follow=True)
    assert started == [project.pk] and "Clustering and pseudo-labeling requested" in response.content.decode()


def test_rotating_a_site_secret_shows_it_once_to_the_site_owner_only(client, owner, project, django_user_model):
    from labeling.services.sites import secret_hash

    site = Site.objects.get(projects=project)
    client.force_login(owner)
    response = client.post(page_url("site-rotate", project, site.pk))
    secret = re.search(r'id="site-secret">([^<]+)<', response.content.decode()).group(1)
    site.refresh_from_db()
    assert site.secret_hash == secret_hash(secret) and site.secret_rotated_at is not None
    assert response["Cache-Control"] == "no-store" or "no-store" in response["Cache-Control"]
    Site.objects.filter(pk=site.pk).update(owner=django_user_model.objects.create_user("someone-else"))
    before = Site.objects.get(pk=site.pk).secret_hash
    client.post(page_url("site-rotate", project, site.pk))
    assert Site.objects.get(pk=site.pk).secret_hash == before


# --- Freshness and speed --------------------------------------------------------------------------


def test_stale_counters_are_recounted_in_the_background_once_per_period(
    project, django_capture_on_commit_callbacks, broker
):
    from labeling.tasks import project_stats_refresh_task

    project = Project.objects.select_related("stats").get(pk=project.pk)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.stats_refresh_if_stale([project]) == []
    later = timezone.now() + timedelta(minutes=5)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.stats_refresh_if_stale([project], now=later) == [project.pk]
        assert services.stats_refresh_if_stale([project], now=later) == []
    assert broker.args_of(project_stats_refresh_task) == [[project.pk]]
    fresh = project_create(name="No stats yet", labels=["a"], owner=project.owner)
    assert services.stats_refresh_if_stale([Project.objects.select_related("stats").get(pk=fresh.pk)]) == [fresh.pk]


def _many_rows(owner, n):
    project = loop_project(owner, name=f"Big{n}", n_items=9, n_workers=1)
    classes = list(project.label_classes.all())
    users = get_user_model().objects.bulk_create([get_user_model()(username=f"many-{n}-{k}") for k in range(n)])
    workers = Worker.objects.bulk_create(
        [Worker(user=u, answer_total=3, control_total=2, control_correct=1) for u in users]
    )
    items = Item.objects.bulk_create(
        [
            Item(project=project, text=f"more {i}", checksum=f"m{n:04d}{i:059d}", status=ItemStatus.LABELED)
            for i in range(n)
        ]
    )
    Consensus.objects.bulk_create(
        [Consensus(item=item, label=classes[0], confidence=0.95, n_answers=2, method="x") for item in items]
    )
    Answer.objects.bulk_create(
        [
            Answer(worker=w, item=item, label=classes[0], source="worker", task_ref="m", time_taken_ms=900)
            for w, item in zip(workers, items)
        ]
    )
    WorkerSkill.objects.bulk_create([WorkerSkill(worker=w, project=project, accuracy=0.8) for w in workers])
    runs = TrainingRun.objects.bulk_create(
        [
            TrainingRun(project=project, status=RunStatus.SUCCEEDED, metrics={"accuracy": 0.5, "human_answers": i})
            for i in range(n // 2)
        ]
    )
    Prediction.objects.bulk_create(
        [Prediction(item=item, run=runs[0], label=classes[1], confidence=0.5) for item in items]
    )
    Project.objects.filter(pk=project.pk).update(active_run=runs[0])
    ItemEmbedding.objects.bulk_create([ItemEmbedding(item=item, cluster=0, x=i, y=-i) for i, item in enumerate(items)])
    WorkerDecision.objects.bulk_create(
        [
            WorkerDecision(worker=w, project=project, previous_status="active", new_status="paused", reason="slow")
            for w in workers
        ]
    )
    sites = Site.objects.bulk_create(
        [Site(name=f"s{n}-{k}", sitekey=f"k{n}-{k}", secret_hash="x", owner=owner) for k in range(n // 4)]
    )
    for site in sites:
        site.projects.add(project)
    for k in range(n // 4):
        extra = project_create(name=f"Extra{n}x{k}", labels=["a", "b"], owner=owner)
        Item.objects.create(project=extra, text="x", checksum=f"e{n:04d}{k:059d}")
    for p in Project.objects.all():
        project_stats_refresh(p)
    return Project.objects.get(pk=project.pk)


#: Most queries each page may make, including the session and user lookups, with its
#: cached aggregates cold (the first request after their TTL).
# One query on every page asks whether the navigation offers the dashboard; the workers
# page also reads the quality rules and the admitted workers.
MAX_QUERIES = {
    "projects": 6,
    "overview": 21,  # one more: the label audit's counts
    "workers": 11,
    "items": 7,
    "clusters": 10,
    "training": 9,
    "sites": 7,
    "live": 7,
    "audit": 8,
}


def test_list_pages_do_not_query_per_row(client, owner, django_assert_max_num_queries):
    """Each page makes a bounded number of queries, the same for 8 rows as for 40."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(owner)
    counts = {}
    for n in (8, 40):
        project = _many_rows(owner, n)
        urls = {"projects": reverse("dashboard:projects")}
        urls.update({name: page_url(name, project) for name in MAX_QUERIES if name != "projects"})
        for name, url in urls.items():
            with django_assert_max_num_queries(MAX_QUERIES[name]), CaptureQueriesContext(connection) as queries:
                assert client.get(url).status_code == 200
            counts.setdefault(name, []).append(len(queries))
    for name, (few, many) in counts.items():
        assert many <= few, f"{name}: {few} queries with few rows, {many} with many"


# --- Escaping and the policy ---------------------------------------------------------------------


def test_untrusted_names_render_as_text_on_every_page(client, owner):
    project = loop_project(owner, labels=(XSS, "dog", "bird"), name=f"Evil {XSS}")
    item = project.items.filter(answers__isnull=False).first()
    Item.objects.filter(pk=item.pk).update(
        text=f"text {XSS}", source_name=f"{XSS}.png", priority=99, priority_reason=XSS
    )
    worker = Worker.objects.filter(user__isnull=False).first()
    get_user_model().objects.filter(pk=worker.user_id).update(username=f"w{XSS}"[:150])
    WorkerDecision.objects.create(
        worker=worker, project=project, previous_status="active", new_status="paused", reason=XSS
    )
    Site.objects.filter(projects=project).update(name=XSS, allowed_hostnames=[XSS])
    PipelineRun.objects.filter(project=project).update(message=XSS, status=RunStatus.RUNNING)
    client.force_login(owner)
    run = project.training_runs.first()
    urls = (
        [reverse("dashboard:projects")]
        + [page_url(name, project) for name in PAGES]
        + [
            page_url("worker", project, worker.pk),
            page_url("item", project, item.pk),
            page_url("training-panel", project, run.pk),
            page_url("clusters", project) + "?by=source",
        ]
    )
    for url in urls:
        html = client.get(url).content.decode()
        assert XSS not in html, url
        assert "onerror=alert(1)&gt;" in html, url
    assert XSS in client.get(page_url("live", project)).json()["pipeline"][0]["message"]


def test_charts_escape_every_text():
    svg = charts.hbar_chart([(XSS, [(XSS, 3, "c0")])], title=XSS, x_label=XSS, legend=[(XSS, "c0")])
    assert XSS not in svg and ESCAPED in svg
    svg = charts.heatmap([[1, 2], [3, 4]], [XSS, "b"], title=XSS)
    assert XSS not in svg
    svg = charts.scatter_map(
        [{"x": 0, "y": 0, "css": "c0", "shape": "dot", "href": '/x"><script>', "title": XSS}],
        title="m",
        legend=[(XSS, "c0", "dot")],
    )
    assert "<script>" not in svg and XSS not in svg


def test_charts_say_so_when_there_is_no_data():
    assert "no data yet" in charts.line_chart(
        [{"name": "a", "css": "s-val", "points": []}], title="t", x_label="x", y_label="y"
    )
    assert "no answers" in charts.column_chart([("a", "a", 0)], title="t", x_label="x", y_label="y")


@pytest.mark.parametrize(("low", "high"), [(0, 1), (0, 7), (0.13, 0.91), (0, 12345), (3, 3)])
def test_ticks_are_round_and_cover_the_range(low, high):
    ticks = nice_ticks(low, high)
    assert ticks[0] <= low and ticks[-1] >= high and 2 <= len(ticks) <= 12
    steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:])}
    assert len(steps) == 1


def test_the_wilson_interval_is_wide_for_few_answers_and_narrow_for_many():
    low, high = selectors.wilson_interval(1, 1)
    assert low < 0.25 and high == 1.0
    low, high = selectors.wilson_interval(900, 1000)
    assert 0.87 < low < 0.9 < high < 0.92
    assert selectors.wilson_interval(0, 0) is None


def _respond(content_type="text/html; charset=utf-8", **attrs):
    from django.http import HttpResponse

    response = HttpResponse("x", content_type=content_type)
    for key, value in attrs.items():
        setattr(response, key, value)
    return response


def test_the_policy_is_set_on_html_only_and_views_may_override_it():
    request = RequestFactory().get("/")
    middleware = ContentSecurityPolicyMiddleware(lambda r: _respond())
    assert middleware(request)["Content-Security-Policy"] == DEFAULT_POLICY
    assert "Content-Security-Policy" not in ContentSecurityPolicyMiddleware(lambda r: _respond("application/json"))(
        request
    )
    custom = csp_override("default-src 'self'; frame-ancestors *")(lambda r: _respond())
    assert (
        ContentSecurityPolicyMiddleware(custom)(request)["Content-Security-Policy"]
        == "default-src 'self'; frame-ancestors *"
    )
    assert "Content-Security-Policy" not in ContentSecurityPolicyMiddleware(csp_exempt(lambda r: _respond()))(request)

    def own_header(r):
        response = _respond()
        response["Content-Security-Policy"] = "sandbox"
        return response

    assert ContentSecurityPolicyMiddleware(own_header)(request)["Content-Security-Policy"] == "sandbox"


def test_json_and_downloads_carry_no_page_policy(client, owner, project):
    client.force_login(owner)
    assert "Content-Security-Policy" not in client.get(page_url("live", project))
    response = client.get(reverse("project-export", args=[project.slug]) + "?format=csv")
    assert response.status_code == 200 and "Content-Security-Policy" not in response
    assert client.get(reverse("login"))["Content-Security-Policy"] == DEFAULT_POLICY

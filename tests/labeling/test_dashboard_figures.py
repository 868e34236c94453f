"""Every figure on the dashboard and the worker's home says what it is: rendered text,
read through the test client."""

import re

import pytest
from django.test import override_settings
from django.urls import reverse

from labeling.dashboard import aggregates
from labeling.models import Answer, Item, PipelineKind, PipelineRun, RunStatus, Site
from labeling.services.answers import AnswerInput, answers_record
from labeling.services.demo import demo_site_create
from labeling.services.projects import project_create
from labeling.services.workers import worker_for_user, worker_sign_up
from labeling.templatetags.crowdloop import num, pct
from tests.labeling.test_dashboard import fresh_cache, loop_project, owner  # noqa: F401

pytestmark = pytest.mark.django_db


def overview(client, project):
    return client.get(reverse("dashboard:overview", args=[project.slug])).content.decode()


def text_of(html):
    """The visible words, tags dropped and spaces collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_model_predictions_are_not_counted_as_labels(client, owner):
    project = loop_project(owner)
    client.force_login(owner)
    sources = aggregates.label_breakdown(project)["sources"]
    assert sources["model"] > 0
    labels = sum(sources[key] for key in aggregates.TRUE_LABEL_SOURCES)
    answers = Answer.objects.filter(item__project=project).count()
    page = text_of(overview(client, project))
    assert f"{answers / labels:.2f} per label incl. pseudo-labels" in page
    assert f"{answers / (labels + sources['model']):.2f}" not in page
    no_label = sources["model"] + sources["review"] + sources["none"]
    assert f"{no_label} pool items with no label yet the model guesses {sources['model']} of them (not labels)" in page


def test_the_unlabeled_count_and_the_source_table_agree_and_held_out_items_are_apart(client, owner):
    project = loop_project(owner)
    client.force_login(owner)
    sources = aggregates.label_breakdown(project)["sources"]
    no_label = sources["model"] + sources["review"] + sources["none"]
    page = text_of(overview(client, project))
    assert f"No label yet {no_label}" in page
    assert "12 to label, 1 held out for measuring" in page


def test_agreement_without_overlapping_answers_is_one_readable_sentence(client, owner):
    project = project_create(name="Empty", labels=["a", "b"], owner=owner)
    client.force_login(owner)
    page = text_of(overview(client, project))
    assert "Not enough overlapping answers yet: agreement needs items with at least two counted answers" in page
    assert "answers agreement, over 0" not in page


def test_throughput_charts_have_titles_and_say_when_there_is_no_data(client, owner):
    project = project_create(name="Empty", labels=["a", "b"], owner=owner)
    client.force_login(owner)
    page = overview(client, project)
    assert "<figcaption>Answers per hour, last 48 hours (UTC)</figcaption>" in page
    assert "No answers in the last 48 hours." in page and "No answers in the last 30 days." in page
    assert "No labels yet." in page


def test_times_are_relative_with_the_absolute_time_on_hover(client, owner):
    project = loop_project(owner)
    client.force_login(owner)
    page = overview(client, project)
    assert re.search(r'Computed <time datetime="[^"]+" title="\d{4}-\d\d-\d\d \d\d:\d\d UTC">just now</time>', page)
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?![^<]*\")", text_of(page))


def test_counts_are_written_one_way():
    assert num(1797) == "1,797" and num(0.2049, 2) == "0.20" and num(None) == "–"
    assert pct(0.853) == "85%" and pct(None) == "–"


def test_a_finished_background_run_says_it_finished_not_its_last_step(client, owner):
    project = project_create(name="Runs", labels=["a", "b"], owner=owner)
    PipelineRun.objects.create(
        project=project, kind=PipelineKind.CLUSTER, status=RunStatus.SUCCEEDED, progress=1.0,
        message="scoring items for human attention",
    )
    client.force_login(owner)
    page = overview(client, project)
    assert "scoring items for human attention" not in page and ">finished<" in page.replace("<td>finished", ">finished<")
    live = client.get(reverse("dashboard:live", args=[project.slug])).json()
    assert live["pipeline"][0]["message"] == "finished"


def test_a_running_background_run_shows_its_step(client, owner):
    project = project_create(name="Runs", labels=["a", "b"], owner=owner)
    PipelineRun.objects.create(
        project=project, kind=PipelineKind.CLUSTER, status=RunStatus.RUNNING, progress=0.8,
        message="scoring items for human attention",
    )
    client.force_login(owner)
    assert "scoring items for human attention" in overview(client, project)


@pytest.mark.parametrize(
    ("issued", "passed", "shown", "hidden"),
    [(0, 0, "none issued yet", "0 (0.00)"), (10, 4, "4 (40% pass)", "(0.40)")],
)
def test_the_pass_rate_of_a_site_reads_as_a_percentage(client, owner, issued, passed, shown, hidden):
    project = project_create(name="Site", labels=["a", "b"], owner=owner)
    site = Site.objects.create(
        name="Shop", sitekey=f"k-{issued}", secret_hash="x", allowed_hostnames=["shop.example"], owner=owner,
        challenges_issued=issued, challenges_passed=passed,
    )
    site.projects.add(project)
    client.force_login(owner)
    page = text_of(client.get(reverse("dashboard:sites", args=[project.slug])).content.decode())
    assert shown in page and hidden not in page


@pytest.fixture
def worker_client(client, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    user = worker_sign_up(username="ann", password="pw-ann-12345", email="")
    client.force_login(user)
    return client, worker_for_user(user)


def test_a_new_worker_sees_no_control_answers_yet_not_a_made_up_accuracy(worker_client):
    client, _ = worker_client
    page = text_of(client.get(reverse("worker-home")).content.decode())
    assert "no control answers yet" in page
    assert "0 of 0" not in page and "70%" not in page


def test_a_worker_with_four_of_four_right_sees_the_raw_count_next_to_the_smoothed_estimate(worker_client, owner):
    client, worker = worker_client
    project = project_create(name="Gold", labels=["a", "b"], data_kind="text", owner=owner)
    label = project.label_classes.first()
    items = [
        Item.objects.create(project=project, text=f"t{i}", checksum=f"{project.pk:08d}{i:056d}") for i in range(4)
    ]
    answers_record(
        worker=worker,
        source="worker",
        inputs=[
            AnswerInput(item=item, label_id=label.pk, task_ref="gold", is_control=True, correct=True, time_taken_ms=1500)
            for item in items
        ],
    )
    page = text_of(client.get(reverse("worker-home")).content.decode())
    assert "4 of 4 control items right" in page
    assert re.search(r"smoothed estimate of your accuracy: \d+%", page)


@override_settings(ALLOWED_HOSTS=["localhost", "testserver", "crowd.example"])
def test_the_demo_site_allows_real_hostnames_but_not_the_test_client(owner):
    project = project_create(name="Digits", labels=["0", "1"], owner=owner)
    site = demo_site_create(project)
    assert "testserver" not in site.allowed_hostnames
    assert {"localhost", "crowd.example"} <= set(site.allowed_hostnames)


def test_the_headline_accuracy_is_held_out_when_there_is_a_split_else_cross_validated_with_its_interval(client, owner):
    from labeling.models import Project, TrainingRun

    project = project_create(name="Measured", labels=["a", "b"], owner=owner)
    estimate = {"accuracy": 0.9, "n": 40, "low": 0.769, "high": 0.96, "method": "cross-validation"}
    run = TrainingRun.objects.create(project=project, status=RunStatus.SUCCEEDED, metrics={"estimate": estimate})
    Project.objects.filter(pk=project.pk).update(active_run=run)
    client.force_login(owner)
    page = text_of(overview(client, project))
    assert "90% active model accuracy cross-validation on 40 human labels; 95% interval 77%–96%" in page
    run.metrics = {"estimate": estimate, "eval_accuracy": 0.935, "eval_n": 397}
    run.save(update_fields=["metrics"])
    page = text_of(overview(client, project))
    assert "94% active model, held-out accuracy on 397 held-out items" in page


def test_every_dashboard_page_title_is_plain_text(client, owner):
    project = loop_project(owner)
    client.force_login(owner)
    for name in ("overview", "workers", "items", "clusters", "training", "sites"):
        html = client.get(reverse(f"dashboard:{name}", args=[project.slug])).content.decode()
        title = re.search(r"<title>(.*?)</title>", html, re.S).group(1)
        assert "<" not in title and len(title) < 120, (name, title[:200])


def test_a_run_that_trained_no_network_shows_no_epochs(client, owner):
    """A cheap model (label spreading, kNN, logistic regression) has no epochs: its
    finished run does not read "0 / 40"; a network's run reads its epochs."""
    from labeling.models import TrainingRun

    project = project_create(name="Epochs", labels=["a", "b"], owner=owner)
    cheap = TrainingRun.objects.create(project=project, status=RunStatus.SUCCEEDED, epoch=0, n_epochs=40)
    net = TrainingRun.objects.create(project=project, status=RunStatus.SUCCEEDED, epoch=12, n_epochs=40)
    client.force_login(owner)
    html = client.get(reverse("dashboard:training", args=[project.slug])).content.decode()
    cells = dict(re.findall(r'data-run="([^"]+)" data-field="epoch">(.*?)</span></', html))
    assert "0 / 40" not in text_of(cells[str(cheap.pk)]) and "–" in cells[str(cheap.pk)]
    assert text_of(cells[str(net.pk)]) == "12 / 40"

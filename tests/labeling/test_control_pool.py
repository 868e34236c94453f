"""The rotating control pool: budgets per window and in all, nobody sees a control item
twice, consensus items join, and a pick reads a few rows, not the whole pool."""
import random
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from labeling import selectors
from labeling.models import (
    ChallengeKind,
    Consensus,
    ControlExposure,
    ControlPoolEntry,
    Item,
    ItemStatus,
    KnownLabel,
    PseudoLabel,
)
from labeling.services import control_pool, selection
from labeling.services import workers as svc
from labeling.services.challenges import ChallengeRefused, ClientInfo, challenge_issue
from tests.labeling.crowd import crowd_project, local_cache, registered_worker  # noqa: F401
from tests.labeling.widget_support import HOST, VISITOR, fresh_cache, project_make, site_make  # noqa: F401

pytestmark = pytest.mark.django_db
NOW = timezone.now()


def visitor(i):
    return ClientInfo(ip=f"198.19.{i // 250}.{i % 250 + 1}", user_agent="ua", hostname=HOST)


def issue(site, client=VISITOR, now=NOW, kind=ChallengeKind.CHOICE):
    return challenge_issue(sitekey=site.sitekey, client=client, kind=kind, now=now, rng=random.Random(0))


def control_ids(challenge):
    return [tile.item_id for tile in challenge.tiles.all() if tile.is_control]


def test_a_visitor_never_sees_the_same_control_item_twice_and_gets_none_when_all_were_shown():
    site = site_make(project_make(gold_per_class=3, unknown=40))[0]
    shown = []
    with pytest.raises(ChallengeRefused, match="nothing to ask"):
        for _ in range(10):
            shown += control_ids(issue(site))
    assert len(shown) == len(set(shown)) == 8, "9 gold items, 2 per challenge: 4 challenges, then none"


def test_a_control_item_is_served_at_most_its_budget_per_window_then_retires(settings):
    settings.CROWDLOOP_CONTROL_SERVES_PER_WINDOW = 2
    settings.CROWDLOOP_CONTROL_MAX_SERVES = 4
    site = site_make(project_make(gold_per_class=2, unknown=200))[0]  # 6 gold: 12 serves a window
    served, visitors = [], iter(range(1000))

    def drain(now):
        count = 0
        while True:
            try:
                served.extend(control_ids(issue(site, client=visitor(next(visitors)), now=now)))
            except ChallengeRefused:
                return count
            count += 1

    assert drain(NOW) == 6
    assert drain(NOW + timedelta(minutes=30)) == 0, "the window's budget is spent"
    assert drain(NOW + timedelta(minutes=61)) == 6, "a new window, a new budget"
    assert drain(NOW + timedelta(hours=3)) == 0, "each item was served its 4 times: retired"
    assert all(served.count(item_id) == 4 for item_id in set(served))


@pytest.mark.parametrize("kind", [ChallengeKind.GRID, ChallengeKind.VERIFY])
def test_a_control_item_shown_under_a_prompt_naming_a_label_is_never_served_again(settings, kind):
    """A grid's target or a verify question's label is the control item's own label half
    of the time: whoever saw it there would know its label later. Choice questions name
    no label, so their items serve their whole budget."""
    settings.CROWDLOOP_CONTROL_SERVES_PER_WINDOW = 10
    settings.CROWDLOOP_CONTROL_MAX_SERVES = 10
    project = project_make(gold_per_class=4, unknown=200)  # 12 gold
    if kind == ChallengeKind.VERIFY:
        label = project.label_classes.first()
        pseudo = list(Item.objects.filter(project=project, known_label__isnull=True))
        for item in pseudo:
            PseudoLabel.objects.create(item=item, label=label, confidence=0.95, source="propagation")
        Item.objects.filter(pk__in=[item.pk for item in pseudo]).update(status=ItemStatus.PSEUDO_LABELED)
    site = site_make(project)[0]
    shown = []
    with pytest.raises(ChallengeRefused):
        for i in range(30):
            shown += control_ids(issue(site, client=visitor(i), kind=kind))
    assert len(shown) >= 8 and len(shown) == len(set(shown)), "each target prompt spends its controls"
    retired = ControlPoolEntry.objects.filter(retired_at__isnull=False)
    assert set(retired.values_list("item_id", flat=True)) == set(shown)
    assert selectors.control_pool_stats(project)["retired"] == len(shown)

    choice_site = site_make(project_make(gold_per_class=1, unknown=40, name="Choices"))[0]  # 3 gold
    shown = [control_ids(issue(choice_site, client=visitor(100 + i))) for i in range(4)]
    assert sum(len(ids) for ids in shown) == 8, "choice controls keep serving within their budget"
    assert not ControlPoolEntry.objects.filter(project=choice_site.projects.first(), retired_at__isnull=False).exists()


def test_certain_consensus_items_join_the_pool_and_leave_it_when_no_longer_certain():
    project = project_make(gold_per_class=1, unknown=6)
    label = project.label_classes.first()
    unknown = list(Item.objects.filter(project=project, known_label__isnull=True)[:2])
    Item.objects.filter(pk__in=[item.pk for item in unknown]).update(status=ItemStatus.LABELED)
    sure = Consensus.objects.create(item=unknown[0], label=label, confidence=0.995, n_answers=3, method="mv")
    Consensus.objects.create(item=unknown[1], label=label, confidence=0.8, n_answers=3, method="mv")
    control_pool.pool_refresh(project)
    pool = set(ControlPoolEntry.objects.filter(project=project).values_list("item_id", flat=True))
    gold = set(KnownLabel.objects.filter(item__project=project).values_list("item_id", flat=True))
    assert pool == gold | {unknown[0].pk}
    sure.confidence = 0.7
    sure.save()
    assert control_pool.pool_refresh(project) == (0, 1)
    assert unknown[0].pk not in set(ControlPoolEntry.objects.values_list("item_id", flat=True))


@pytest.mark.parametrize("kind", [ChallengeKind.GRID, ChallengeKind.VERIFY])
def test_a_consensus_item_once_shown_under_a_prompt_naming_a_label_never_becomes_control(kind):
    """A verify question printed its pseudo-label next to it, a grid's target is often
    one: a bot that saw it there would know its label as a control item."""
    project = project_make(gold_per_class=10, unknown=12)
    project.answers_per_item = 1  # an item leased to one visitor is free for the next
    project.save()
    label = project.label_classes.first()
    unknown = list(Item.objects.filter(project=project, known_label__isnull=True))
    for item in unknown:
        PseudoLabel.objects.create(item=item, label=label, confidence=0.95, source="propagation")
    Item.objects.filter(pk__in=[item.pk for item in unknown]).update(status=ItemStatus.PSEUDO_LABELED)
    site = site_make(project)[0]
    challenge = issue(site, client=visitor(0), kind=kind)
    shown = {tile.item_id for tile in challenge.tiles.all() if not tile.is_control}
    choice = issue(site, client=visitor(1), kind=ChallengeKind.CHOICE)
    in_choice = {tile.item_id for tile in choice.tiles.all() if not tile.is_control} - shown
    assert shown and in_choice
    settled = shown | in_choice
    Item.objects.filter(pk__in=settled).update(status=ItemStatus.LABELED)
    Consensus.objects.bulk_create(
        [Consensus(item_id=item_id, label=label, confidence=0.999, n_answers=3, method="mv") for item_id in settled]
    )
    control_pool.pool_refresh(project)
    pool = set(ControlPoolEntry.objects.filter(project=project).values_list("item_id", flat=True))
    assert in_choice <= pool and not shown & pool


def test_a_pick_reads_a_few_rows_from_a_random_point_not_the_whole_pool(settings):
    settings.CROWDLOOP_CONTROL_POOL_REFRESH_S = 3600
    project = project_make(gold_per_class=700, unknown=0)  # 2,100 gold items
    site = site_make(project)[0]
    issue(site, client=visitor(0))  # the first pick fills the pool table
    worker = registered_worker("ann")
    picks = []
    for seed in range(5):
        with CaptureQueriesContext(connection) as queries:
            picks.append(selection.control_items_pick(project, worker=worker, n=3, rng=random.Random(seed)))
        assert len(queries) <= 4
        assert all("LIMIT" in query["sql"] for query in queries if "controlpoolentry" in query["sql"].lower())
    assert len({item.pk for items in picks for item in items}) == 15, "five picks, fifteen different items"


def test_registered_workers_controls_count_against_the_same_budget():
    project, truth = crowd_project(n_unknown=20, n_gold=10, gold_share=0.5)
    worker = registered_worker("ann")
    leases = svc.tasks_next(worker=worker, project=project, n=10, rng=random.Random(0)).leases
    controls = {lease.item_id for lease in leases if lease.is_control}
    assert controls and set(ControlExposure.objects.filter(worker=worker).values_list("item_id", flat=True)) == controls
    served = dict(ControlPoolEntry.objects.filter(item_id__in=controls).values_list("item_id", "served_total"))
    assert set(served.values()) == {1}


def test_the_dashboard_selector_shows_pool_size_budget_and_exposures(settings):
    settings.CROWDLOOP_CONTROL_SERVES_PER_WINDOW = 1
    project = project_make(gold_per_class=2, unknown=30)
    site = site_make(project)[0]
    issue(site, client=visitor(1))
    issue(site, client=visitor(2))
    stats = selectors.control_pool_stats(project, now=NOW)
    assert stats == {"size": 6, "retired": 0, "available": 2, "served_window": 4, "served_total": 4, "reserve": 100}


def test_the_dashboard_overview_shows_the_control_pool(admin_client):
    project = project_make(gold_per_class=2, unknown=3)
    control_pool.pool_refresh(project)
    page = admin_client.get(f"/dashboard/{project.slug}/").content.decode()
    assert "Control pool: 6 of 6" in page
    assert "At or below the reserve of 100: the widget asks choice questions only" in page


def test_choice_controls_carry_each_label_alike_whatever_the_pools_mix(settings):
    """A pool mostly of one label must not make that label a good blind answer: the pass
    rule counts on a guess being right one time in three here."""
    settings.CROWDLOOP_CONTROL_SERVES_PER_WINDOW = 10**6
    settings.CROWDLOOP_CONTROL_MAX_SERVES = 10**6
    project = project_make(gold_per_class=40, unknown=300)
    common, *rare = project.label_classes.order_by("position")
    for label in rare:  # 40 of the common label, 4 of each other one
        keep = KnownLabel.objects.filter(label=label).order_by("item_id").values_list("item_id", flat=True)[:4]
        KnownLabel.objects.filter(label=label).exclude(item_id__in=list(keep)).delete()
    site = site_make(project)[0]
    labels, rng = [], random.Random(4)
    for i in range(60):
        challenge = challenge_issue(
            sitekey=site.sitekey, client=visitor(i), kind=ChallengeKind.CHOICE, now=NOW, rng=rng
        )
        labels += [tile.expected_label_id for tile in challenge.tiles.all() if tile.is_control]
    assert len(labels) == 120
    assert 0.2 < labels.count(common.pk) / len(labels) < 0.47, "a constant answer would pass far more than 1 in 9"


def _issue_auto(site, i, now=NOW):
    return challenge_issue(sitekey=site.sitekey, client=visitor(i), now=now, rng=random.Random(i))


def _with_pseudo_labels(project):
    """Pseudo-labels on every unknown item, so that yes/no questions can be asked."""
    label = project.label_classes.first()
    pseudo = list(Item.objects.filter(project=project, known_label__isnull=True))
    PseudoLabel.objects.bulk_create(
        [PseudoLabel(item=item, label=label, confidence=0.95, source="propagation") for item in pseudo]
    )
    Item.objects.filter(pk__in=[item.pk for item in pseudo]).update(status=ItemStatus.PSEUDO_LABELED)
    return project


def test_a_pool_at_its_reserve_serves_only_choice_questions_and_keeps_serving(settings):
    """Grids and yes/no questions spend their controls whole: a small pool would be gone
    after a few dozen of them, and the site would have nothing to ask. At the reserve
    the widget asks choice questions, which a small pool sustains, and retires nothing."""
    settings.CROWDLOOP_CONTROL_RESERVE = 100
    site = site_make(_with_pseudo_labels(project_make(gold_per_class=20, unknown=300)), control_items=4)[0]
    # 60 gold at the reserve from the start; 40 choice questions stay within the pool's
    # budget for the window (60 items x 4 serves).
    kinds = {_issue_auto(site, i).kind for i in range(40)}
    assert kinds == {ChallengeKind.CHOICE}
    assert not ControlPoolEntry.objects.filter(retired_at__isnull=False).exists()


def test_a_pool_above_its_reserve_asks_every_kind_until_it_falls_to_the_reserve(settings):
    settings.CROWDLOOP_CONTROL_RESERVE = 40
    settings.CROWDLOOP_CONTROL_SERVES_PER_WINDOW = 100
    settings.CROWDLOOP_CONTROL_MAX_SERVES = 100
    project = _with_pseudo_labels(project_make(gold_per_class=30, unknown=600))  # 90 gold
    site = site_make(project, control_items=4)[0]
    kinds = [_issue_auto(site, i).kind for i in range(80)]
    retiring = [i for i, kind in enumerate(kinds) if kind != ChallengeKind.CHOICE]
    assert retiring, "grids and yes/no questions while the pool is large"
    available = ControlPoolEntry.objects.filter(project=project, retired_at__isnull=True).count()
    assert 40 - 4 <= available <= 40, "retiring stops at the reserve, the last prompt overshooting it at most"
    assert set(kinds[retiring[-1] + 1 :]) == {ChallengeKind.CHOICE}


def test_a_reserve_of_zero_lets_retiring_prompts_spend_the_whole_pool(settings):
    settings.CROWDLOOP_CONTROL_RESERVE = 0
    site = site_make(_with_pseudo_labels(project_make(gold_per_class=4, unknown=200)), control_items=4)[0]
    kinds = []
    with pytest.raises(ChallengeRefused):
        for i in range(40):
            kinds.append(_issue_auto(site, i).kind)
    assert ChallengeKind.GRID in kinds or ChallengeKind.VERIFY in kinds


def test_the_reserve_is_counted_on_a_refreshed_pool_and_recounted_within_seconds(settings, monkeypatch):
    """A long refresh interval neither hides a large pool that was never read (the first
    challenge of a new project may be a grid) nor keeps grids coming for the whole
    interval once the pool has fallen to the reserve."""
    settings.CROWDLOOP_CONTROL_POOL_REFRESH_S = 3600
    settings.CROWDLOOP_CONTROL_RESERVE = 200
    project = _with_pseudo_labels(project_make(gold_per_class=70, unknown=300))  # 210 gold
    site = site_make(project, control_items=4)[0]
    assert control_pool.pool_holds_reserve(project, now=NOW)
    settings.CROWDLOOP_CONTROL_RESERVE = 250
    assert control_pool.pool_holds_reserve(project, now=NOW), "trusted for a few seconds"
    clock = control_pool.time.monotonic() + control_pool.RESERVE_CHECK_S + 1
    monkeypatch.setattr(control_pool.time, "monotonic", lambda: clock)
    assert not control_pool.pool_holds_reserve(project, now=NOW), "recounted after RESERVE_CHECK_S"
    assert {_issue_auto(site, i).kind for i in range(10)} == {ChallengeKind.CHOICE}


import numpy as np
import pytest

from ml.aggregation import (
    DawidSkene,
    MajorityVote,
    OneCoinDawidSkene,
    WeightedMajorityVote,
    choose_method,
    make_aggregator,
)

METHODS = ["majority", "weighted_majority", "dawid_skene", "one_coin"]
EM_CLASSES = [DawidSkene, OneCoinDawidSkene]


def one_coin(accuracy, n_classes):
    conf = np.full((n_classes, n_classes), (1.0 - accuracy) / (n_classes - 1))
    np.fill_diagonal(conf, accuracy)
    return conf


def simulate(confusions, n_items, per_item, seed=0, gold=0.0, class_priors=None):
    """Answers of workers with the given confusion matrices; each item gets
    ``per_item`` distinct random workers. Returns answers, truth and known."""
    rng = np.random.default_rng(seed)
    n_workers, n_classes, _ = confusions.shape
    truth = rng.choice(n_classes, size=n_items, p=class_priors)
    workers = np.argsort(rng.random((n_items, n_workers)), axis=1)[:, :per_item].ravel()
    items = np.repeat(np.arange(n_items), per_item)
    cdf = confusions.cumsum(axis=2)[workers, truth[items]]
    labels = np.minimum((rng.random(items.size)[:, None] > cdf).sum(axis=1), n_classes - 1)
    known = np.where(rng.random(n_items) < gold, truth, -1)
    return np.column_stack([items, workers, labels]), truth, known


def honest_and_spammers(n_honest=6, n_spammers=3, n_classes=4, accuracy=0.8):
    conf = np.concatenate(
        [
            np.repeat(one_coin(accuracy, n_classes)[None], n_honest, axis=0),
            np.full((n_spammers, n_classes, n_classes), 1.0 / n_classes),
        ]
    )
    return conf


def colluders(n_items=600, n_classes=4, n_honest=5, n_colluders=4, accuracy=0.75, gold=0.1):
    """Honest workers plus a group that answers every item with one shared wrong label."""
    rng = np.random.default_rng(3)
    truth = rng.integers(0, n_classes, n_items)
    shared_wrong = (truth + rng.integers(1, n_classes, n_items)) % n_classes
    items = np.arange(n_items)
    rows = []
    for worker in range(n_honest):
        wrong = (truth + rng.integers(1, n_classes, n_items)) % n_classes
        labels = np.where(rng.random(n_items) < accuracy, truth, wrong)
        rows.append(np.column_stack([items, np.full(n_items, worker), labels]))
    for worker in range(n_honest, n_honest + n_colluders):
        rows.append(np.column_stack([items, np.full(n_items, worker), shared_wrong]))
    known = np.where(rng.random(n_items) < gold, truth, -1)
    return np.concatenate(rows), truth, known


@pytest.fixture(scope="module")
def crowd():
    """Three classes, six workers with distinct non-uniform confusions, 5 answers per item."""
    confusions = np.array(
        [
            [[0.9, 0.08, 0.02], [0.1, 0.8, 0.1], [0.05, 0.25, 0.7]],
            [[0.7, 0.3, 0.0], [0.2, 0.75, 0.05], [0.1, 0.1, 0.8]],
            [[0.85, 0.05, 0.1], [0.3, 0.6, 0.1], [0.0, 0.1, 0.9]],
            [[0.6, 0.2, 0.2], [0.05, 0.9, 0.05], [0.2, 0.2, 0.6]],
            [[0.95, 0.05, 0.0], [0.15, 0.7, 0.15], [0.1, 0.3, 0.6]],
            [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]],
        ]
    )
    answers, truth, _ = simulate(confusions, 4000, 5, seed=1, class_priors=[0.5, 0.3, 0.2])
    return {"confusions": confusions, "answers": answers, "truth": truth}


def test_dawid_skene_recovers_worker_confusion_matrices(crowd):
    model = DawidSkene(3).fit(crowd["answers"])
    assert np.abs(model.confusions_ - crowd["confusions"]).max() < 0.06
    assert np.allclose(model.confusions_.sum(axis=2), 1.0)
    assert np.allclose(model.class_priors_, [0.5, 0.3, 0.2], atol=0.03)
    assert (model.labels_ == crowd["truth"]).mean() > 0.9


def test_one_coin_recovers_worker_accuracies(crowd):
    model = OneCoinDawidSkene(3).fit(crowd["answers"])
    truth = crowd["truth"]
    answers = crowd["answers"]
    observed = np.bincount(
        answers[:, 1], weights=answers[:, 2] == truth[answers[:, 0]]
    ) / np.bincount(answers[:, 1])
    assert np.abs(model.skills_ - observed).max() < 0.03
    assert np.allclose(model.confusions_[:, 0, 0], model.skills_)
    assert np.allclose(model.confusions_.sum(axis=2), 1.0)


@pytest.mark.parametrize("method", METHODS)
def test_fitted_attributes_follow_the_contract(method, crowd):
    answers = crowd["answers"][:600]
    model = make_aggregator(method, 3).fit(answers, n_items=130, n_workers=7)
    assert model.method_ == method
    assert model.posteriors_.shape == (130, 3)
    assert np.allclose(model.posteriors_.sum(axis=1), 1.0)
    assert model.labels_.shape == model.confidence_.shape == model.n_answers_.shape == (130,)
    assert np.array_equal(model.confidence_, model.posteriors_.max(axis=1))
    assert model.skills_.shape == (7,)
    assert np.all((model.skills_ >= 0) & (model.skills_ <= 1))
    assert model.confusions_.shape == (7, 3, 3)
    assert np.isclose(model.class_priors_.sum(), 1.0)
    assert model.n_iter_ >= 1


@pytest.mark.parametrize("method", METHODS)
def test_items_without_answers_get_the_class_prior_and_no_label(method):
    answers = np.array([[0, 0, 1], [0, 1, 1], [1, 0, 0], [1, 1, 0], [2, 0, 1]])
    model = make_aggregator(method, 3).fit(answers, known=[-1, -1, -1, -1, 2], n_items=5)
    assert np.allclose(model.posteriors_[3], model.class_priors_)
    assert model.labels_[3] == -1
    assert model.n_answers_.tolist() == [2, 2, 1, 0, 0]
    assert model.labels_[4] == 2


@pytest.mark.parametrize("method", METHODS)
def test_a_fit_with_no_answers_gives_every_item_the_prior(method):
    model = make_aggregator(method, 3).fit(np.empty((0, 3), dtype=int), n_items=4)
    assert np.allclose(model.posteriors_, 1.0 / 3)
    assert model.labels_.tolist() == [-1, -1, -1, -1]
    assert np.allclose(model.update_item([0], [2]).sum(), 1.0)


@pytest.mark.parametrize("method", METHODS)
def test_a_known_item_gets_a_one_hot_posterior_whatever_the_votes(method):
    answers = np.array([[0, w, 1] for w in range(4)] + [[1, w, 0] for w in range(4)])
    model = make_aggregator(method, 3).fit(answers, known=[2, -1])
    assert model.posteriors_[0].tolist() == [0.0, 0.0, 1.0]
    assert model.labels_[0] == 2
    assert model.confidence_[0] == 1.0


@pytest.mark.parametrize("cls", EM_CLASSES)
def test_known_items_move_worker_estimates(cls):
    # Workers 0 and 1 always disagree; only gold can say which one is right.
    n_items = 200
    items = np.arange(n_items)
    answers = np.concatenate(
        [
            np.column_stack([items, np.zeros(n_items, int), np.zeros(n_items, int)]),
            np.column_stack([items, np.ones(n_items, int), np.ones(n_items, int)]),
        ]
    )
    known = np.full(n_items, -1)
    known[:40] = 1
    blind = cls(2).fit(answers)
    told = cls(2).fit(answers, known=known)
    assert told.skills_[1] > blind.skills_[1] + 0.2
    assert told.skills_[1] > told.skills_[0]
    assert (told.labels_[40:] == 1).all()


@pytest.mark.parametrize("method", ["weighted_majority", "dawid_skene", "one_coin"])
def test_spammers_skill_falls_to_chance_and_below_honest_workers(method):
    confusions = honest_and_spammers()
    answers, _, _ = simulate(confusions, 1500, 5, seed=2)
    model = make_aggregator(method, 4).fit(answers)
    honest, spammers = model.skills_[:6], model.skills_[6:]
    assert np.abs(spammers - 0.25).max() < 0.06
    assert spammers.max() < honest.min()


def test_a_spammers_vote_weight_falls_below_an_honest_workers():
    answers, _, _ = simulate(honest_and_spammers(), 1500, 5, seed=2)
    model = WeightedMajorityVote(4).fit(answers)
    assert model.weights_[6:].max() < 0.2
    assert model.weights_[6:].max() < model.weights_[:6].min()


@pytest.mark.parametrize("method", ["weighted_majority", "dawid_skene", "one_coin"])
def test_an_adversarial_worker_gets_a_near_zero_skill(method):
    adversary = (np.ones((4, 4)) - np.eye(4)) / 3
    confusions = np.concatenate([honest_and_spammers(n_spammers=0), adversary[None]])
    answers, _, _ = simulate(confusions, 1500, 5, seed=4)
    model = make_aggregator(method, 4).fit(answers)
    assert model.skills_[6] < 0.05
    if method == "weighted_majority":
        assert model.weights_[6] == 0.0


@pytest.mark.parametrize("method", ["weighted_majority", "dawid_skene", "one_coin"])
def test_colluders_do_not_beat_the_honest_majority_when_gold_exists(method):
    answers, truth, known = colluders()
    unknown = known < 0
    majority = MajorityVote(4).fit(answers, known=known)
    model = make_aggregator(method, 4).fit(answers, known=known)
    assert (majority.labels_[unknown] == truth[unknown]).mean() < 0.5
    assert (model.labels_[unknown] == truth[unknown]).mean() > 0.9
    assert model.skills_[5:].max() < 0.1
    assert model.skills_[:5].min() > 0.6


@pytest.mark.parametrize("cls", EM_CLASSES)
def test_warm_start_converges_to_the_cold_start_posteriors_in_fewer_iterations(cls, crowd):
    answers = crowd["answers"]
    # Yesterday's fit, then 5 % more answers arrive.
    earlier = cls(3, tol=1e-9).fit(answers[: len(answers) * 19 // 20], n_items=4000)
    cold = cls(3, tol=1e-9).fit(answers)
    warm = cls(3, tol=1e-9).fit(answers, init=earlier)
    assert np.allclose(warm.posteriors_, cold.posteriors_, atol=1e-7)
    assert np.allclose(warm.confusions_, cold.confusions_, atol=1e-6)
    assert warm.n_iter_ < cold.n_iter_


def test_warm_start_accepts_parameters_and_new_workers(crowd):
    answers = crowd["answers"]
    earlier = DawidSkene(3).fit(answers)
    params = {"confusions": earlier.confusions_[:4], "class_priors": earlier.class_priors_}
    warm = DawidSkene(3).fit(answers, init=params)
    assert np.allclose(warm.posteriors_, earlier.posteriors_, atol=1e-5)
    one_coin = OneCoinDawidSkene(3).fit(answers, init={"skills": [0.8] * 6})
    assert one_coin.skills_.shape == (6,)


def test_warm_start_from_another_method_is_refused(crowd):
    other = OneCoinDawidSkene(3).fit(crowd["answers"][:100])
    with pytest.raises(ValueError, match="init must be a fitted DawidSkene"):
        DawidSkene(3).fit(crowd["answers"], init=other)


@pytest.mark.parametrize("method", METHODS)
def test_incremental_update_equals_the_full_e_step_for_that_item(method, crowd):
    answers = crowd["answers"][:2000]
    model = make_aggregator(method, 3).fit(answers)
    before = model.posteriors_.copy()
    for item in [0, 7, 123, 399]:
        mine = answers[answers[:, 0] == item]
        posterior = model.update_item(mine[:, 1], mine[:, 2])
        assert np.allclose(posterior, model.posteriors_[item], atol=1e-10)
    assert np.array_equal(model.posteriors_, before)
    assert model.update_item([0, 1], [2, 2], known_label=1).tolist() == [0.0, 1.0, 0.0]
    assert np.allclose(model.update_item([], []), model.class_priors_)


@pytest.mark.parametrize("method", ["weighted_majority", "dawid_skene", "one_coin"])
def test_incremental_update_gives_unseen_workers_the_prior_skill(method, crowd):
    answers = crowd["answers"][:2000]
    model = make_aggregator(method, 3).fit(answers, n_workers=7)  # worker 6 never answered
    assert np.allclose(model.update_item([6, 0], [1, 2]), model.update_item([50, 0], [1, 2]))


def test_majority_vote_ties_go_to_the_more_frequent_class_then_the_lower_index():
    answers = np.array(
        [[0, 0, 2], [0, 1, 1], [1, 0, 0], [1, 1, 2], [2, 0, 2], [2, 1, 2], [3, 0, 0], [3, 1, 1]]
    )
    model = MajorityVote(3).fit(answers)
    # Class 2 has the most votes overall; classes 0 and 1 tie overall, so 0 beats 1.
    assert model.labels_.tolist() == [2, 2, 2, 0]
    assert np.allclose(model.posteriors_[0], [0.0, 0.5, 0.5])
    again = MajorityVote(3).fit(answers[::-1])
    assert np.array_equal(again.labels_, model.labels_)


@pytest.mark.parametrize("method", METHODS)
def test_the_same_input_gives_the_same_output(method, crowd):
    answers = crowd["answers"][:3000]
    known = np.where(np.arange(600) % 10 == 0, crowd["truth"][:600], -1)
    first = make_aggregator(method, 3).fit(answers, known=known)
    second = make_aggregator(method, 3).fit(answers.copy(), known=known.copy())
    assert np.array_equal(first.posteriors_, second.posteriors_)
    assert np.array_equal(first.skills_, second.skills_)


@pytest.mark.parametrize(
    "answers, kwargs, message",
    [
        ([[0, 0, 3]], {}, r"label 3 but n_classes=3"),
        ([[-1, 0, 1]], {}, r"negative item index"),
        ([[0, -2, 1]], {}, r"negative worker index"),
        ([[0, 1]], {}, r"shape \(n_answers, 3\)"),
        ([0, 1, 2], {}, r"shape \(n_answers, 3\)"),
        ([[0, 0, 1.5]], {}, r"integer"),
        ([["a", "b", "c"]], {}, r"integer array"),
        ([[3, 0, 1]], {"known": [1, -1]}, r"known must have length n_items=4, got 2"),
        ([[0, 0, 1]], {"known": [5]}, r"known holds 5"),
        ([[4, 0, 1]], {"n_items": 2}, r"n_items=2 but answers refer to item 4"),
        ([[0, 4, 1]], {"n_workers": 2}, r"n_workers=2 but answers refer to worker 4"),
    ],
)
@pytest.mark.parametrize("method", METHODS)
def test_bad_input_raises_a_clear_value_error(method, answers, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_aggregator(method, 3).fit(answers, **kwargs)


def test_bad_incremental_input_raises_a_clear_value_error(crowd):
    model = DawidSkene(3).fit(crowd["answers"][:300])
    with pytest.raises(ValueError, match="labels in \\[0, 3\\)"):
        model.update_item([0], [3])
    with pytest.raises(ValueError, match="one per answer"):
        model.update_item([0, 1], [1])
    with pytest.raises(ValueError, match="known_label"):
        model.update_item([0], [1], known_label=7)


@pytest.mark.parametrize("n_classes", [1, 2.5, "3"])
def test_n_classes_must_be_an_integer_of_at_least_two(n_classes):
    with pytest.raises(ValueError, match="n_classes must be an integer >= 2"):
        DawidSkene(n_classes).fit([[0, 0, 0]])


def test_unknown_method_names_are_refused():
    with pytest.raises(ValueError, match="unknown method 'glad'"):
        make_aggregator("glad", 3)


def test_weighted_majority_with_given_skills_ignores_workers_at_chance():
    answers = np.array([[0, 0, 1], [0, 1, 2], [0, 2, 2]])
    model = WeightedMajorityVote(3, skills=[0.9, 1 / 3, 1 / 3]).fit(answers)
    assert model.weights_[1] == model.weights_[2] == 0.0
    assert model.labels_[0] == 1


def test_auto_picks_one_coin_when_workers_have_few_answers_and_dawid_skene_when_many():
    few = honest_and_spammers(n_honest=200, n_spammers=100, n_classes=5)
    answers, _, _ = simulate(few, 600, 2, seed=5)  # median 4 answers per worker, K^2 = 25
    assert choose_method(answers, 5) == "one_coin"
    many = honest_and_spammers(n_honest=4, n_spammers=1, n_classes=5)
    answers, _, _ = simulate(many, 500, 3, seed=6)  # 300 answers per worker
    assert choose_method(answers, 5) == "dawid_skene"
    model = make_aggregator("auto", 5).fit(answers)
    assert model.method_ == "dawid_skene"
    assert np.allclose(model.update_item([0], [1]), model.estimator_.update_item([0], [1]))


def test_auto_in_between_follows_the_held_out_likelihood_of_known_items():
    # 100 workers, 12 answers each, 3 classes: between the clear-cut regimes.
    shared_pattern = np.array([[0.55, 0.45, 0.0], [0.0, 0.9, 0.1], [0.4, 0.0, 0.6]])
    answers, _, known = simulate(np.repeat(shared_pattern[None], 100, axis=0), 400, 3, gold=0.2)
    assert choose_method(answers, 3, known=known) == "dawid_skene"
    symmetric = np.repeat(one_coin(0.7, 3)[None], 100, axis=0)
    answers, _, known = simulate(symmetric, 400, 3, gold=0.2)
    assert choose_method(answers, 3, known=known) == "one_coin"


def test_auto_on_no_answers_is_majority_vote():
    assert choose_method(np.empty((0, 3), dtype=int), 3) == "majority"


# --- Evidence of every kind (the cheap path) ----------------------------------------------------

from ml.aggregation.incremental import (  # noqa: E402
    binary_accuracy,
    one_coin_confusion,
    posterior_from_evidence,
    settle_chance,
)


def test_a_no_lowers_only_the_named_label_and_keeps_the_others_ratios():
    prior = np.array([0.4, 0.3, 0.2, 0.1])
    posterior = posterior_from_evidence(prior, verdicts=[(0, False, 0.9)])
    assert posterior[0] < prior[0]
    assert np.allclose(posterior[1:] / posterior[1:].sum(), prior[1:] / prior[1:].sum())


def test_a_coin_flipping_worker_moves_nothing_with_a_yes_or_a_no():
    prior = np.array([0.5, 0.25, 0.25])
    for said_yes in (True, False):
        assert np.allclose(posterior_from_evidence(prior, verdicts=[(1, said_yes, binary_accuracy(1 / 3, 3))]), prior)


def test_one_answer_agreeing_with_a_confident_model_prior_settles_and_a_disagreeing_one_does_not():
    n = 10
    belief = np.full(n, 0.05 / (n - 1))
    belief[3] = 0.95
    prior = np.sqrt(belief) / np.sqrt(belief).sum()  # a machine reading as half a vote
    agree = posterior_from_evidence(prior, votes=[(3, one_coin_confusion(0.7, n))])
    disagree = posterior_from_evidence(prior, votes=[(5, one_coin_confusion(0.7, n))])
    alone = posterior_from_evidence(np.full(n, 0.1), votes=[(3, one_coin_confusion(0.7, n))])
    assert agree.max() > 0.9 > alone.max()
    assert disagree.max() < 0.9


def test_settle_chance_is_high_after_one_vote_and_zero_when_evenly_split():
    n = 4
    after_one = posterior_from_evidence(np.full(n, 0.25), votes=[(0, one_coin_confusion(0.85, n))])
    assert settle_chance(after_one, 0.85, 0.9) > 0.5
    split = posterior_from_evidence(
        np.full(n, 0.25), votes=[(0, one_coin_confusion(0.85, n)), (1, one_coin_confusion(0.85, n))]
    )
    assert settle_chance(split, 0.85, 0.99) == 0.0


@pytest.mark.parametrize("method", [*METHODS, "auto"])
def test_an_answer_of_weight_zero_is_as_if_it_were_never_given(method):
    answers, _, known = simulate(np.stack([one_coin(0.8, 3)] * 5), n_items=60, per_item=3, seed=4, gold=0.2)
    rng = np.random.default_rng(5)
    extra = np.column_stack([rng.integers(0, 60, 40), np.full(40, 5), rng.integers(0, 3, 40)])  # a blind sixth worker
    with_zero = make_aggregator(method, 3).fit(
        np.vstack([answers, extra]), known=known, n_workers=6,
        weights=np.concatenate([np.ones(len(answers)), np.zeros(len(extra))]),
    )
    without = make_aggregator(method, 3).fit(answers, known=known, n_workers=6)
    np.testing.assert_allclose(with_zero.posteriors_, without.posteriors_, atol=1e-6)
    np.testing.assert_allclose(with_zero.skills_[:5], without.skills_[:5], atol=1e-6)


@pytest.mark.parametrize("method", [*METHODS, "auto"])
def test_weights_of_one_change_nothing(method):
    answers, _, known = simulate(np.stack([one_coin(0.75, 4)] * 6), n_items=50, per_item=3, seed=6, gold=0.1)
    weighted = make_aggregator(method, 4).fit(answers, known=known, weights=np.ones(len(answers)))
    plain = make_aggregator(method, 4).fit(answers, known=known)
    np.testing.assert_allclose(weighted.posteriors_, plain.posteriors_)


@pytest.mark.parametrize("method", ["dawid_skene", "one_coin", "weighted_majority"])
def test_lightly_weighted_blind_answers_move_fewer_labels_than_full_weight_ones(method):
    """Blind guessers who answer once each (widget visitors: EM cannot learn their
    skill) and whose answers carry little evidence: weighting them keeps the labels of
    the crowd without them far better than counting them in full."""
    n_items, honest = 200, np.stack([one_coin(0.8, 3)] * 6)
    answers, _, known = simulate(honest, n_items=n_items, per_item=3, seed=7, gold=0.1)
    n_blind = 2 * n_items
    blind = np.column_stack(
        [np.repeat(np.arange(n_items), 2), 6 + np.arange(n_blind), np.random.default_rng(8).integers(0, 3, n_blind)]
    )
    clean = make_aggregator(method, 3).fit(answers, known=known, n_workers=6 + n_blind).labels_
    both = np.vstack([answers, blind])

    def changed(blind_weight):
        weights = np.concatenate([np.ones(len(answers)), np.full(len(blind), blind_weight)])
        labels = make_aggregator(method, 3).fit(both, known=known, n_workers=6 + n_blind, weights=weights).labels_
        return int((labels != clean).sum())

    assert changed(0.05) < changed(1.0) / 3, (changed(0.05), changed(1.0))


@pytest.mark.parametrize("weights", [np.ones(3), np.array([0.5, 1.5, 1, 1]), np.array([np.nan, 1, 1, 1])])
def test_weights_of_the_wrong_length_or_outside_zero_one_are_refused(weights):
    answers = np.array([[0, 0, 0], [0, 1, 1], [1, 0, 1], [1, 1, 1]])
    with pytest.raises(ValueError, match="weights"):
        DawidSkene(2).fit(answers, weights=weights)

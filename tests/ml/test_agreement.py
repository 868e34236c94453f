import math

import numpy as np
import pytest

from ml.agreement import fleiss_kappa, krippendorff_alpha, ratings_table

# Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories.
FLEISS_TABLE = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C:
# 4 observers, 12 units, values 1-5, None where an observer gave no value.
KRIPPENDORFF_DATA = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]


def krippendorff_table():
    units, labels = [], []
    for observer in KRIPPENDORFF_DATA:
        for unit, value in enumerate(observer):
            if value is not None:
                units.append(unit)
                labels.append(value - 1)
    return ratings_table(units, labels, n_categories=5)


def test_fleiss_kappa_matches_the_published_example():
    assert fleiss_kappa(FLEISS_TABLE) == pytest.approx(0.2099, abs=1e-4)


def test_krippendorff_alpha_matches_the_published_nominal_example():
    assert krippendorff_alpha(krippendorff_table()) == pytest.approx(0.743, abs=1e-3)


def test_items_with_a_single_rating_change_nothing():
    table = krippendorff_table()
    assert table[11].sum() == 1
    assert krippendorff_alpha(table) == pytest.approx(krippendorff_alpha(table[:11]))
    padded = np.vstack([FLEISS_TABLE, [[0, 1, 0, 0, 0]]])
    assert fleiss_kappa(padded) == pytest.approx(fleiss_kappa(FLEISS_TABLE))


@pytest.mark.parametrize("measure", [fleiss_kappa, krippendorff_alpha])
def test_perfect_agreement_is_one(measure):
    assert measure([[3, 0, 0], [0, 3, 0], [0, 0, 2], [2, 0, 0]]) == pytest.approx(1.0)


@pytest.mark.parametrize("measure", [fleiss_kappa, krippendorff_alpha])
def test_systematic_disagreement_is_below_zero(measure):
    assert measure([[1, 1], [1, 1], [1, 1]]) < 0


@pytest.mark.parametrize("measure", [fleiss_kappa, krippendorff_alpha])
def test_random_answers_agree_about_as_much_as_chance(measure):
    rng = np.random.default_rng(0)
    units = np.repeat(np.arange(4000), 3)
    table = ratings_table(units, rng.integers(0, 4, units.size), n_categories=4)
    assert abs(measure(table)) < 0.03


@pytest.mark.parametrize("measure", [fleiss_kappa, krippendorff_alpha])
@pytest.mark.parametrize("table", [[[5, 0], [3, 0]], [[1, 0], [0, 1]], np.zeros((0, 3))])
def test_undefined_agreement_is_nan(measure, table):
    assert math.isnan(measure(table))


def test_kappa_and_alpha_are_close_on_a_large_table():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 3, 3000)
    units = np.repeat(np.arange(3000), 4)
    labels = np.where(rng.random(units.size) < 0.8, truth[units], rng.integers(0, 3, units.size))
    table = ratings_table(units, labels)
    assert fleiss_kappa(table) == pytest.approx(krippendorff_alpha(table), abs=0.01)


def test_ratings_table_counts_pairs_and_weights():
    table = ratings_table([107, 3, 107, 107], [1, 0, 1, 2], counts=[1, 2, 4, 1], n_categories=3)
    assert table.tolist() == [[2, 0, 0], [0, 5, 1]]


def test_ratings_table_refuses_bad_input():
    with pytest.raises(ValueError, match="one length"):
        ratings_table([1, 2], [0])
    with pytest.raises(ValueError, match=r"lie in \[0, 2\)"):
        ratings_table([1, 2], [0, 2], n_categories=2)
    with pytest.raises(ValueError, match="negative"):
        ratings_table([1], [0], counts=[-1])
    with pytest.raises(ValueError, match="2-D"):
        fleiss_kappa([1, 2, 3])

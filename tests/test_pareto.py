"""analysis.pareto on cases small enough to work out by hand."""

import numpy as np
import pytest

from analysis import pareto

MIN_MAX = ["min", "max"]  # the study's default: bias/amplification down, world/score up


def test_dominance_with_mixed_modes():
    assert pareto.dominates([0.1, 60], [0.2, 50], MIN_MAX)  # less bias and more score
    assert pareto.dominates([0.1, 60], [0.1, 50], MIN_MAX)  # equal on one, better on the other
    assert not pareto.dominates([0.1, 50], [0.2, 60], MIN_MAX)  # a trade-off: neither dominates
    assert not pareto.dominates([0.2, 60], [0.1, 50], MIN_MAX)
    assert not pareto.dominates([0.1, 60], [0.1, 60], MIN_MAX)  # equal points do not dominate each other
    assert pareto.dominates([0.2, 50], [0.1, 60], ["max", "min"])  # the same points, the other directions


def test_front_keeps_ties_and_drops_dominated():
    values = [[0.1, 60],   # front
              [0.1, 60],   # its twin: also front
              [0.0, 40],   # front: least bias
              [0.3, 70],   # front: best score
              [0.2, 55],   # dominated by [0.1, 60]
              [0.3, 40]]   # dominated by everything above
    assert pareto.non_dominated(values, MIN_MAX).tolist() == [True, True, True, True, False, False]


def test_front_in_three_objectives():
    values = [[1, 1, 1], [0, 2, 2], [2, 0, 2], [2, 2, 0], [1, 1, 2]]
    assert pareto.non_dominated(values, ["min"] * 3).tolist() == [True, True, True, True, False]


def test_hypervolume_2d_by_hand():
    # min/max: losses are (bias, -score). Reference (0.5, 40). Points (0.1, 60), (0.3, 70):
    # the union of [0.1, 0.5] x [40, 60] (area 0.4 * 20 = 8) and [0.3, 0.5] x [40, 70] (0.2 * 30 = 6),
    # overlapping in [0.3, 0.5] x [40, 60] (0.2 * 20 = 4): 8 + 6 - 4 = 10.
    values = [[0.1, 60], [0.3, 70], [0.2, 55]]  # the third is dominated and adds nothing
    assert pareto.hypervolume(values, MIN_MAX, [0.5, 40]) == pytest.approx(10.0)
    # a point no better than the reference on some objective adds nothing either
    assert pareto.hypervolume(values + [[0.6, 90]], MIN_MAX, [0.5, 40]) == pytest.approx(10.0)
    assert pareto.hypervolume([[0.6, 90]], MIN_MAX, [0.5, 40]) == 0.0


def test_hypervolume_3d_by_hand():
    # Two boxes against reference (2, 2, 2): [1,2]x[0,2]x[0,2] (volume 1*2*2 = 4) and [0,2]x[1,2]x[1,2]
    # (2*1*1 = 2), overlapping in [1,2]x[1,2]x[1,2] (1): 4 + 2 - 1 = 5.
    assert pareto.hypervolume([[1, 0, 0], [0, 1, 1]], ["min"] * 3, [2, 2, 2]) == pytest.approx(5.0)
    # the 2-D sweep and the N-D library agree where both apply (a third objective that is constant and
    # 1 away from its reference multiplies the area by 1)
    rng = np.random.default_rng(0)
    pts = rng.random((12, 2))
    flat = np.column_stack([pts, np.zeros(12)])
    assert pareto.hypervolume(pts, ["min", "min"], [1.0, 1.0]) == pytest.approx(
        pareto.hypervolume(flat, ["min"] * 3, [1.0, 1.0, 1.0]))


def test_reference_point_defaults_to_the_worst_value():
    values = [[0.1, 60], [0.3, 70], [0.2, 50]]
    assert pareto.reference_point(values, MIN_MAX, [None, None]).tolist() == [0.3, 50]
    assert pareto.reference_point(values, MIN_MAX, [0.5, None]).tolist() == [0.5, 50]


def test_knee_is_the_balanced_point():
    # scaled over the front, (0.2, 65) sits at (0.5, 0.5) from the ideal corner; the extremes at (0, 1) and (1, 0)
    values = [[0.0, 50], [0.2, 65], [0.4, 70], [0.5, 40]]
    front = pareto.non_dominated(values, MIN_MAX)
    assert front.tolist() == [True, True, True, False]
    assert pareto.knee(values, MIN_MAX, front) == 1
    # one point on the front is its own knee
    assert pareto.knee([[0.1, 60], [0.2, 50]], MIN_MAX, np.array([True, False])) == 0


def test_non_domination_ranks_by_hand():
    values = [[0.1, 60],   # rank 0
              [0.0, 40],   # rank 0
              [0.2, 55],   # rank 1: dominated only by [0.1, 60]
              [0.3, 40],   # rank 2: dominated by [0.2, 55] too
              [0.1, 60]]   # rank 0: a twin
    assert pareto.ranks(values, MIN_MAX).tolist() == [0, 0, 1, 2, 0]


def test_best_first_takes_the_front_then_the_next_layer():
    values = [[0.3, 40],   # rank 2
              [0.2, 55],   # rank 1
              [0.0, 40],   # rank 0, far from the ideal on score
              [0.1, 60]]   # rank 0, nearest the ideal point (0.0, 60) once scaled
    assert pareto.best_first(values, MIN_MAX).tolist() == [3, 2, 1, 0]


def test_a_tied_knee_does_not_depend_on_the_order_of_the_trials():
    # a two-point front: both ends are at scaled distance 1 from the ideal point; the better first objective wins
    values = [[0.06, 52.5], [-0.33, 51.3]]
    assert pareto.knee(values, MIN_MAX, np.array([True, True])) == 1
    assert pareto.knee(values[::-1], MIN_MAX, np.array([True, True])) == 0


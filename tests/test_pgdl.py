"""PGDL's conditional mutual information and the granulated Kendall Ψ, against a direct
re-computation of the competition's definition and against cases whose value is known."""

import itertools
import math
from collections import defaultdict

import numpy as np
import pytest

from topo_monitor.analysis.pgdl import conditional_mutual_information, granulated_kendall


def factorial_grid(levels, seeds=1):
    names = sorted(levels)
    return [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*(levels[n] for n in names))
        for _ in range(seeds)
    ]


def pgdl_reference(measure, gap, hyperparameters):
    """The competition's scoring, written out as its program does it: one 2×2 table per key
    "value of model 1, value of model 2" for the two conditioning hyperparameters, over every
    ordered pair of models; MI and H(gap sign) averaged over the tables; min over ordered pairs
    of hyperparameters."""

    def entropy(counts):
        total = sum(counts)
        return -sum(c / total * math.log2(c / total) for c in counts if c)

    names = list(hyperparameters[0])
    best = math.inf
    for h1, h2 in itertools.permutations(names, 2):
        tables = defaultdict(lambda: [[0, 0], [0, 0]])
        for i, j in itertools.product(range(len(gap)), repeat=2):
            key = (
                hyperparameters[i][h1],
                hyperparameters[j][h1],
                hyperparameters[i][h2],
                hyperparameters[j][h2],
            )
            tables[key][int(gap[i] > gap[j])][int(measure[i] > measure[j])] += 1
        mis, hs = [], []
        for t in tables.values():
            rows = [t[0][0] + t[0][1], t[1][0] + t[1][1]]
            cols = [t[0][0] + t[1][0], t[0][1] + t[1][1]]
            cells = [t[0][0], t[0][1], t[1][0], t[1][1]]
            mis.append(entropy(rows) + entropy(cols) - entropy(cells))
            hs.append(entropy(rows))
        best = min(best, np.mean(mis) / np.mean(hs))
    return best


GRID = {"width": (16, 64), "depth": (1, 2, 3), "dropout": (0.0, 0.5)}


def test_cmi_equals_the_competition_definition(rng):
    hyper = factorial_grid(GRID, seeds=2)
    gap = rng.normal(size=len(hyper)) + np.array([h["depth"] for h in hyper])
    measure = gap + rng.normal(scale=1.0, size=len(hyper))
    expected = pgdl_reference(measure, gap, hyper)
    assert 0 < expected < 1
    assert conditional_mutual_information(measure, gap, hyper) == pytest.approx(expected, rel=1e-12)


def test_cmi_of_the_gap_itself_is_one_and_of_a_constant_is_zero(rng):
    hyper = factorial_grid(GRID)
    gap = rng.normal(size=len(hyper))
    assert conditional_mutual_information(gap, gap, hyper) == pytest.approx(1.0)
    assert conditional_mutual_information(3 * gap + 1, gap, hyper) == pytest.approx(1.0)
    assert conditional_mutual_information(np.ones(len(hyper)), gap, hyper) == pytest.approx(0.0)


def test_a_measure_that_only_tracks_a_hyperparameter_scores_low(rng):
    # The gap grows with depth and has its own noise; the measure *is* the depth. Correlation
    # across the family is high, but once depth is known the measure says nothing in half the
    # cells: the min over conditioning pairs exposes it.
    hyper = factorial_grid(GRID, seeds=3)
    depth = np.array([h["depth"] for h in hyper], dtype=float)
    gap = depth + rng.normal(scale=0.3, size=len(hyper))
    informed = gap + rng.normal(scale=0.05, size=len(hyper))
    assert conditional_mutual_information(depth, gap, hyper) < 0.5 * (
        conditional_mutual_information(informed, gap, hyper)
    )


def test_granulated_kendall_by_hand():
    # Two hyperparameters at two levels: the measure orders the gap along a and against it
    # along b, in both groups.
    hyper = factorial_grid({"a": (0, 1), "b": (0, 1)})  # (a, b) = 00, 01, 10, 11
    gap = np.array([0.0, 1.0, 2.0, 3.0])
    measure = np.array([1.0, 0.0, 3.0, 2.0])  # increases with a, decreases with b
    psi, per = granulated_kendall(measure, gap, hyper)
    assert per == {"a": 1.0, "b": -1.0}
    assert psi == 0.0
    psi, per = granulated_kendall(gap, gap, hyper)
    assert psi == 1.0


def test_bad_inputs_are_clear_errors():
    hyper = factorial_grid({"a": (0, 1), "b": (0, 1)})
    with pytest.raises(ValueError, match="same 4 models"):
        conditional_mutual_information([1.0, 2.0], [1.0, 2.0, 3.0, 4.0], hyper)
    with pytest.raises(ValueError, match="finite"):
        conditional_mutual_information([1.0, math.nan, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0], hyper)
    with pytest.raises(ValueError, match="same hyperparameters"):
        granulated_kendall([1, 2], [1, 2], [{"a": 0}, {"b": 0}])
    with pytest.raises(ValueError, match="two hyperparameters"):
        conditional_mutual_information([1, 2], [1, 2], [{"a": 0}, {"a": 1}])

"""Sliced-Wasserstein distances against gudhi's reference implementation."""

import numpy as np
import pytest
from gudhi.representations import SlicedWassersteinDistance

from topo_monitor.tda.distances import (
    paired_distances,
    sliced_wasserstein,
    sliced_wasserstein_matrix,
)
from topo_monitor.tda.persistence import barcode


def random_diagram(rng, k):
    births = rng.uniform(0, 1, size=k)
    return np.column_stack([births, births + rng.exponential(0.5, size=k)])


def gudhi_sw(a, b, num_directions):
    return SlicedWassersteinDistance(num_directions=num_directions).fit([a]).transform([b])[0, 0]


@pytest.mark.parametrize("num_directions", [2, 10, 50])
@pytest.mark.parametrize(("k_a", "k_b"), [(5, 5), (12, 3), (0, 7), (4, 0), (0, 0)])
def test_sliced_wasserstein_equals_gudhi(rng, num_directions, k_a, k_b):
    a, b = random_diagram(rng, k_a), random_diagram(rng, k_b)
    expected = gudhi_sw(a, b, num_directions)
    assert sliced_wasserstein(a, b, num_directions) == pytest.approx(expected, abs=1e-6, rel=1e-6)


def test_sliced_wasserstein_is_a_semimetric(rng):
    a, b = random_diagram(rng, 8), random_diagram(rng, 6)
    assert sliced_wasserstein(a, a) == 0.0
    assert sliced_wasserstein(a, b) == pytest.approx(sliced_wasserstein(b, a))
    assert sliced_wasserstein(a, b) > 0


def test_distance_matrix_equals_gudhi(rng):
    # Diagrams of different sizes (one empty, one below zero).
    diagrams = [random_diagram(rng, k) for k in (3, 0, 9, 5, 40, 1)]
    diagrams[3] -= 2.0
    ours = sliced_wasserstein_matrix(diagrams, num_directions=20)
    expected = SlicedWassersteinDistance(num_directions=20).fit(diagrams).transform(diagrams)
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(ours, ours.T)
    assert np.all(np.diag(ours) == 0)


def test_distance_matrix_of_fewer_than_two_diagrams():
    assert sliced_wasserstein_matrix([]).shape == (0, 0)
    np.testing.assert_array_equal(sliced_wasserstein_matrix([np.array([[0.0, 1.0]])]), [[0.0]])


def test_bad_input_raises():
    with pytest.raises(ValueError, match="infinite"):
        sliced_wasserstein(np.array([[0.0, np.inf]]), np.empty((0, 2)))
    with pytest.raises(ValueError, match="num_directions"):
        sliced_wasserstein(np.empty((0, 2)), np.empty((0, 2)), num_directions=1)


def test_whole_barcodes_and_backward_bars_are_clear_errors(rng):
    X, Y = rng.normal(size=(30, 3)), rng.normal(size=(25, 3))
    with pytest.raises(ValueError, match=r"bars_a is a list of diagrams.*barcode\(X\)\[0\]"):
        sliced_wasserstein(barcode(X), barcode(Y)[0])
    with pytest.raises(ValueError, match=r"bars_b is a list of diagrams"):
        sliced_wasserstein(barcode(X)[0], barcode(Y))
    with pytest.raises(ValueError, match=r"diagrams\[1\] is a list of diagrams"):
        sliced_wasserstein_matrix([barcode(X)[0], barcode(Y)])
    with pytest.raises(ValueError, match=r"bars_b has 1 bar\(s\) that die before they are born"):
        sliced_wasserstein(random_diagram(rng, 3), np.array([[0.0, 1.0], [2.0, 1.5]]))
    # One barcode's diagrams are a list of diagrams, which sliced_wasserstein_matrix takes.
    diagrams = barcode(X)
    expected = SlicedWassersteinDistance(num_directions=50).fit(diagrams).transform(diagrams)
    np.testing.assert_allclose(
        sliced_wasserstein_matrix(diagrams), expected, rtol=1e-12, atol=1e-12
    )


def test_paired_distances_equal_gudhi_pair_by_pair(rng):
    # One batch mixing sizes: the zero padding must leave every pair's distance unchanged.
    sizes = [(3, 3), (0, 9), (40, 1), (7, 0), (12, 25)]
    a = [random_diagram(rng, k) for k, _ in sizes]
    b = [random_diagram(rng, k) for _, k in sizes]
    b[4] += 3.0  # far from the padding value 0
    ours = paired_distances(a, b, num_directions=20)
    expected = [gudhi_sw(x, y, 20) for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-6)


def test_paired_distances_need_pairs(rng):
    with pytest.raises(ValueError, match="must pair up, got 2 and 1"):
        paired_distances([random_diagram(rng, 2)] * 2, [random_diagram(rng, 2)])
    with pytest.raises(ValueError, match=r"diagrams_b\[1\]"):
        paired_distances([random_diagram(rng, 2)] * 2, [random_diagram(rng, 2), [[1.0, 0.0]]])

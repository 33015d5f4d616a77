"""β0 at scale: clusters counted at a threshold relative to the median MST edge."""

import numpy as np
import pytest
import torch

from helpers import blobs
from topo_monitor import SummaryConfig, measure
from topo_monitor.probing.summary import metric_names, summarize
from topo_monitor.tda.persistence import BETA0_FACTOR, betti0_at_scale, h0_death_times


def separated_blobs(k: int, n: int = 60, dim: int = 16, apart: float = 12.0, seed: int = 0):
    """k Gaussian blobs of n points, centres ``apart`` RMS radii from one another."""
    rng = np.random.default_rng(seed)
    axes, _ = np.linalg.qr(rng.standard_normal((dim, k)))  # orthonormal centre directions
    centres = axes.T * apart * np.sqrt(dim) / np.sqrt(2)
    return np.concatenate([c + rng.standard_normal((n, dim)) for c in centres])


def gudhi_h0_deaths(X: np.ndarray) -> np.ndarray:
    import gudhi

    tree = gudhi.RipsComplex(points=X).create_simplex_tree(max_dimension=1)
    tree.compute_persistence()
    bars = tree.persistence_intervals_in_dimension(0)
    return np.sort(bars[np.isfinite(bars[:, 1]), 1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_k_separated_blobs_give_k_over_a_range_of_factors(seed):
    for k in (2, 4, 7):
        deaths = h0_death_times(separated_blobs(k, seed=seed))
        assert [betti0_at_scale(deaths, f) for f in (2, 3, 4, 6, 8)] == [k] * 5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_blob_gives_one_from_the_default_factor_up(seed):
    deaths = h0_death_times(separated_blobs(1, n=300, seed=seed))
    assert [betti0_at_scale(deaths, f) for f in (BETA0_FACTOR, 4, 6, 10, 100)] == [1] * 5
    assert betti0_at_scale(deaths, 0.5) > 1  # below the typical spacing, points split off


def test_count_ignores_position_rotation_scale_and_duplicates():
    X = separated_blobs(3, n=40)
    rotation, _ = np.linalg.qr(np.random.default_rng(5).standard_normal((16, 16)))
    moved = 1e-3 * X @ rotation + 7.0
    assert betti0_at_scale(h0_death_times(moved)) == betti0_at_scale(h0_death_times(X)) == 3
    # Over half the points on one spot (a ReLU mapping many inputs to 0) leave the scale as it was.
    doubled = np.concatenate([X, np.repeat(X[:1], 200, axis=0)])
    assert betti0_at_scale(h0_death_times(doubled)) == 3
    assert betti0_at_scale(np.zeros(5)) == betti0_at_scale(np.zeros(0)) == 1  # one spot, one point


@pytest.mark.parametrize(
    ("deaths", "factor", "message"),
    [
        (np.zeros((4, 2)), 3.0, r"deaths must be one-dimensional.*bars\[:, 1\]"),
        (np.array([1.0, -1.0]), 3.0, "finite and non-negative"),
        (np.array([1.0, np.inf]), 3.0, "drop the infinite bar"),
        (np.ones(3), 0.0, "factor must be a positive finite number"),
        (np.ones(3), True, "factor must be a real number"),
    ],
)
def test_bad_arguments_are_named(deaths, factor, message):
    with pytest.raises(ValueError, match=message):
        betti0_at_scale(deaths, factor)


def test_the_death_times_used_are_gudhis():
    X = separated_blobs(3, n=50, dim=5, apart=8.0, seed=4)
    ours = h0_death_times(X).numpy()
    reference = gudhi_h0_deaths(X)
    np.testing.assert_allclose(ours, reference, rtol=1e-9, atol=1e-12)
    assert betti0_at_scale(ours) == betti0_at_scale(reference) == 3
    # And the summary counts with those very deaths, per class and on the whole cloud.
    labels = torch.arange(3).repeat_interleave(50)
    clouds = {"block": torch.from_numpy(X)}
    per_class = summarize(clouds, labels, SummaryConfig(metrics=("e0",)))
    assert per_class.per_class["beta0"][0] == [
        betti0_at_scale(gudhi_h0_deaths(X[labels.numpy() == c])) for c in range(3)
    ]
    assert per_class.values["beta0"] == [1.0]  # every class one cluster
    whole = summarize(clouds, labels, SummaryConfig(metrics=("e0",), per_class=False))
    assert whole.values["beta0"] == [3.0]  # the whole cloud: as many clusters as classes


def test_measure_reports_beta0_per_block_as_the_class_mean():
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    data = blobs()
    record = measure(model, data.tensors, metrics=("e0",))
    assert "beta0" in metric_names(SummaryConfig(metrics=("e0",)))
    assert "beta0" not in metric_names(SummaryConfig(metrics=("phdim", "sw")))
    with torch.no_grad():
        hidden = model[:2](data.tensors[0])
    x, y = hidden.numpy(), data.tensors[1].numpy()
    expected = np.mean([betti0_at_scale(h0_death_times(x[y == c])) for c in range(3)])
    assert record.blocks[0] == "1"
    assert record.values["beta0"][0] == pytest.approx(expected)
    assert all(v >= 1 for v in record.values["beta0"])

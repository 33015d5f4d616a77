"""H0/MST and barcodes against gudhi, and closed forms."""

import math

import gudhi
import numpy as np
import pytest
import torch

from topo_monitor.tda import mst
from topo_monitor.tda.mst import (
    _prim_numpy,
    _prim_torch,
    stacked_squared_distances,
    subcloud_mst_lengths,
)
from topo_monitor.tda.persistence import (
    barcode,
    cloud_scale,
    h0_death_times,
    mean_lifespan,
    total_persistence,
)
from topo_monitor.tda.sampling import random_orders


def gudhi_diagram(points: np.ndarray, dim: int) -> np.ndarray:
    """Finite bars of H_dim from gudhi's Rips complex, zero-length bars included."""
    tree = gudhi.RipsComplex(points=np.asarray(points, dtype=np.float64)).create_simplex_tree(
        max_dimension=dim + 1
    )
    tree.compute_persistence(min_persistence=-1)
    bars = tree.persistence_intervals_in_dimension(dim).reshape(-1, 2)
    return bars[np.isfinite(bars[:, 1])]


@pytest.mark.parametrize("n", [1, 2, 3, 50, 500])
@pytest.mark.parametrize("d", [1, 3, 64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_h0_matches_gudhi(rng, n, d, dtype):
    X = rng.normal(size=(n, d)).astype(dtype)
    if n >= 50:
        X[10] = X[3]  # duplicate points: a bar of length exactly 0
        X[20] = X[3]
    ours = h0_death_times(X)
    assert ours.dtype == (torch.float64 if dtype == np.float64 else torch.float32)
    assert ours.shape == (n - 1,)
    expected = np.sort(gudhi_diagram(X, 0)[:, 1])
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-5, atol=0)
    if n >= 50:
        assert (ours[:2] == 0).all()


def test_h0_accepts_tensors_and_keeps_device(rng):
    X = torch.from_numpy(rng.normal(size=(40, 5)))
    out = h0_death_times(X)
    assert isinstance(out, torch.Tensor) and out.device == X.device
    np.testing.assert_allclose(out.numpy(), h0_death_times(X.numpy()).numpy())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_h0_on_cuda_matches_cpu(rng, dtype):
    # Both search in float32 and measure in float64: the same deaths, to the output's rounding.
    X = torch.from_numpy(rng.normal(size=(300, 32))).to(dtype)
    out = h0_death_times(X.cuda())
    assert out.is_cuda and out.dtype == dtype
    rtol = 1e-6 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(out.cpu().numpy(), h0_death_times(X).numpy(), rtol=rtol)


@pytest.mark.parametrize("parents", [True, False])
def test_prim_loops_agree(rng, parents):
    # The torch loop runs on accelerators only; run it here on the CPU against the NumPy loop,
    # on a batch with padding vertices (weight inf), and on a batch of one.
    clouds = [torch.from_numpy(rng.normal(size=(n, 4))) for n in (30, 22, 30)]
    D2 = stacked_squared_distances(clouds, padding=math.inf)
    for batch in (D2, D2[:1]):
        expected = _prim_numpy(batch.numpy(), parents)
        np.testing.assert_array_equal(_prim_torch(batch, parents).numpy(), expected)


@pytest.mark.parametrize("one_by_one", [False, True])
@pytest.mark.parametrize("gather_elements", [None, 3000])
def test_subcloud_mst_lengths_match_gudhi(rng, monkeypatch, gather_elements, one_by_one):
    # Three clouds of different sizes and dimensions (padded into one tensor), and sub-clouds of
    # sizes that fall in one batch (padded to its largest) and in separate batches; with a small
    # memory bound, each batch's sub-matrices are gathered a few at a time. Every batch searched
    # by Prim's loop, or graph by graph by Borůvka's algorithm (padding vertices at inf).
    if gather_elements is not None:
        monkeypatch.setattr(mst, "CHUNK_ELEMENTS", gather_elements)
    monkeypatch.setattr(mst, "one_by_one", lambda B, m: one_by_one)
    clouds = [rng.normal(size=(n, d)) for n, d in [(60, 3), (45, 8), (30, 2)]]
    D2 = stacked_squared_distances([torch.from_numpy(c) for c in clouds], padding=math.inf)
    source = np.array([0, 1, 2, 0, 1, 2, 0])
    sizes = np.array([60, 44, 30, 41, 12, 29, 2])
    points = torch.zeros(len(source), 60, dtype=torch.long)
    for b, s in enumerate(source):
        points[b, : len(clouds[s])] = torch.from_numpy(rng.permutation(len(clouds[s])))
    for given in (points, None):
        got = subcloud_mst_lengths(D2, source, sizes, given)
        for b, s in enumerate(source):
            idx = points[b, : sizes[b]].numpy() if given is not None else np.arange(sizes[b])
            expected = gudhi_diagram(clouds[s][idx], 0)[:, 1].sum()
            assert got[b] == pytest.approx(expected, rel=1e-12), (b, given is None)


def test_random_orders_are_uniform_distinct_and_private():
    counts = torch.tensor([5, 7, 5] * 4000)
    state = torch.get_rng_state()
    orders = random_orders(counts.tolist(), 7, torch.Generator().manual_seed(0))
    assert torch.equal(state, torch.get_rng_state())
    assert orders.shape == (12000, 7) and orders.dtype == torch.int64
    assert all(sorted(row.tolist()) == list(range(7)) for row in orders[:100])
    # A row's own indices come first; after them, in order, the padding up to max(counts).
    fives = orders[counts == 5]
    assert bool((fives[:, :5] < 5).all()) and bool((fives[:, 5:] == torch.tensor([5, 6])).all())
    # Every index equally likely in every position: within 5 standard deviations.
    for position in range(5):
        freq = torch.bincount(fives[:, position], minlength=5).numpy() / len(fives)
        assert np.abs(freq - 0.2).max() < 5 * math.sqrt(0.2 * 0.8 / len(fives))
    again = random_orders(counts.tolist(), 7, torch.Generator().manual_seed(0))
    assert torch.equal(orders, again)
    assert random_orders([5, 7], 3, np.random.default_rng(0)).shape == (2, 3)
    with pytest.raises(ValueError, match="cannot draw 8 distinct points from 7"):
        random_orders([5, 7], 8, np.random.default_rng(0))


def test_points_on_a_line_closed_form():
    n, h = 25, 0.37
    X = np.zeros((n, 4))
    X[:, 2] = np.arange(n) * h
    bars = barcode(X, max_dim=1)
    assert total_persistence(bars[0]) == pytest.approx((n - 1) * h, rel=1e-12)
    np.testing.assert_allclose(h0_death_times(X).numpy(), h, rtol=1e-12)
    assert len(bars[1]) == 0  # a line has no loops


def test_two_far_clusters_give_one_long_bar(rng):
    a = rng.normal(scale=0.01, size=(30, 3))
    b = rng.normal(scale=0.01, size=(30, 3)) + np.array([100.0, 0, 0])
    deaths = h0_death_times(np.vstack([a, b])).numpy()
    assert deaths[-1] > 99.0
    assert deaths[-2] < 1.0


def test_circle_has_exactly_one_loop_matching_gudhi():
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    X = np.column_stack([np.cos(t), np.sin(t)]) * 3.0
    h1 = barcode(X, max_dim=1)[1]
    assert h1.shape == (1, 2)
    reference = gudhi_diagram(X, 1)
    reference = reference[reference[:, 1] > reference[:, 0]]
    np.testing.assert_allclose(h1, reference, rtol=1e-12)
    # Birth: the side of the 40-gon; death: the side of the inscribed equilateral triangle (Rips).
    assert h1[0, 0] == pytest.approx(2 * 3.0 * math.sin(math.pi / 40))
    assert h1[0, 1] == pytest.approx(3.0 * math.sqrt(3), rel=0.05)


@pytest.mark.parametrize(("n", "d"), [(60, 3), (100, 64)])
def test_barcode_h1_matches_gudhi_on_random_cloud(rng, n, d):
    # gudhi's full Rips complex, without the edge collapses ours makes (in R^64 they shrink the
    # 100-point complex twenty-fold) and with them nothing may change.
    X = rng.normal(size=(n, d))
    ours = barcode(X, max_dim=1)[1]
    assert len(ours) > 0
    reference = gudhi_diagram(X, 1)
    reference = reference[reference[:, 1] > reference[:, 0]]
    np.testing.assert_allclose(
        ours[np.lexsort(ours.T[::-1])], reference[np.lexsort(reference.T[::-1])], rtol=1e-12
    )


def test_barcode_subsamples_reproducibly(rng):
    X = rng.normal(size=(200, 4))
    a = barcode(X, max_dim=1, max_points=50, generator=7)
    b = barcode(X, max_dim=1, max_points=50, generator=torch.Generator().manual_seed(7))
    assert len(a[0]) == 49
    for da, db in zip(a, b, strict=True):
        np.testing.assert_array_equal(da, db)
    state = torch.get_rng_state()
    barcode(X, max_dim=0, max_points=50)
    assert torch.equal(state, torch.get_rng_state()), "the global RNG must not be touched"


def test_total_persistence_alpha_and_mean_lifespan():
    bars = np.array([[0.0, 1.0], [0.5, 2.5], [1.0, 1.5]])
    assert total_persistence(bars) == pytest.approx(3.5)
    assert total_persistence(bars, alpha=2) == pytest.approx(1 + 4 + 0.25)
    assert mean_lifespan(bars) == pytest.approx(3.5 / 3)
    assert total_persistence(np.empty((0, 2))) == 0.0
    assert math.isnan(mean_lifespan(np.empty((0, 2))))


def test_scale_free_total_persistence_is_invariant(rng):
    X = rng.normal(size=(80, 6))
    Y = 17.0 * X + 4.0

    def scale_free(cloud):
        return total_persistence(barcode(cloud, max_dim=0)[0], scale=cloud_scale(cloud))

    assert total_persistence(barcode(Y, max_dim=0)[0]) == pytest.approx(
        17.0 * total_persistence(barcode(X, max_dim=0)[0])
    )
    assert scale_free(Y) == pytest.approx(scale_free(X), rel=1e-10)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((0, 3)), "empty"),
        (np.zeros(5), "2-D"),
        (np.zeros((2, 3, 4)), "2-D"),
        (np.array([[0.0, 1.0], [np.nan, 0.0]]), "NaN"),
        (np.array([[0.0, np.inf]]), "infinite"),
    ],
)
def test_bad_clouds_raise_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        h0_death_times(bad)
    with pytest.raises(ValueError, match=message):
        barcode(bad)


def test_bad_diagrams_and_arguments_raise():
    with pytest.raises(ValueError, match="infinite"):
        total_persistence(np.array([[0.0, np.inf]]))
    with pytest.raises(ValueError, match=r"\(k, 2\)"):
        total_persistence(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="alpha"):
        total_persistence(np.zeros((1, 2)), alpha=0)
    with pytest.raises(ValueError, match="max_points"):
        barcode(np.zeros((3, 2)), max_points=0)


def test_the_whole_barcode_instead_of_one_diagram_is_a_clear_error(rng):
    X = rng.normal(size=(30, 3))
    whole = barcode(X)  # [H0, H1]: diagrams of different sizes
    assert len(whole[0]) != len(whole[1])
    equal = [whole[0], whole[0] + 1.0]  # diagrams of one size, that numpy would stack
    for bars in (whole, barcode(X, max_dim=0), equal, np.stack(equal), [np.empty((0, 2))] * 2):
        with pytest.raises(ValueError, match=r"one diagram is expected.*barcode\(X\)\[0\]"):
            total_persistence(bars)
        with pytest.raises(ValueError, match=r"barcode\(X\)\[0\]"):
            mean_lifespan(bars)
    # A diagram given as a list of pairs is still one diagram.
    assert total_persistence(whole[0].tolist()) == pytest.approx(total_persistence(whole[0]))


@pytest.mark.parametrize(
    "alpha", [2, 2.0, np.float32(2), np.int64(2), np.array(2.0), torch.tensor(2.0)]
)
def test_alpha_as_a_numpy_scalar_or_tensor_matches_gudhi(rng, alpha):
    X = rng.normal(size=(40, 4))
    gudhi_bars = gudhi_diagram(X, 0)
    expected = float(np.sum((gudhi_bars[:, 1] - gudhi_bars[:, 0]) ** 2))
    assert total_persistence(barcode(X, max_dim=0)[0], alpha=alpha) == pytest.approx(expected)


@pytest.mark.parametrize(
    "scale",
    [
        np.float32(4.0),
        np.float64(4.0),
        np.array(4.0),
        torch.tensor(4.0),
        torch.tensor(4.0).double(),
    ],
)
def test_scale_as_a_numpy_scalar_or_tensor(scale):
    bars = np.array([[0.0, 1.0], [0.5, 2.5], [1.0, 1.5]])
    assert total_persistence(bars, scale=scale) == pytest.approx(3.5 / 4)
    assert total_persistence(bars, alpha=torch.tensor(2), scale=scale) == pytest.approx(
        (1 + 4 + 0.25) / 16
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("alpha", True),
        ("alpha", "2"),
        ("alpha", torch.tensor([2.0, 3.0])),
        ("alpha", torch.tensor(-1.0)),
        ("alpha", np.float32("nan")),
        ("scale", torch.tensor(0.0)),
        ("scale", np.inf),
        ("scale", None),
    ],
)
def test_bad_alpha_and_scale_raise_clear_errors(name, value):
    with pytest.raises(ValueError, match=name):
        total_persistence(np.array([[0.0, 1.0]]), **{name: value})


def test_a_bar_dying_before_its_birth_is_an_error():
    # The (birth, death) columns swapped: E would be 1 - 3 = -2 if computed.
    with pytest.raises(ValueError, match=r"1 bar\(s\) that die before they are born.*\(3, 0\)"):
        total_persistence([[0.0, 1.0], [3.0, 0.0]])
    with pytest.raises(ValueError, match="die before they are born"):
        mean_lifespan(torch.tensor([[2.0, 1.0]]))
    assert total_persistence([[1.0, 1.0]]) == 0.0  # a zero-length bar is a bar

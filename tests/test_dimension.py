"""PHdim on clouds of known dimension, and its degenerate cases."""

import numpy as np
import pytest
import torch

from topo_monitor.tda import dimension, mst
from topo_monitor.tda.dimension import default_sizes, ph_dimension, ph_dimensions
from topo_monitor.tda.persistence import h0_death_times


def embedded_cube(rng, n, d, ambient=50):
    basis, _ = np.linalg.qr(rng.normal(size=(ambient, d)))
    return rng.uniform(size=(n, d)) @ basis.T


@pytest.mark.parametrize(("d", "n"), [(1, 1000), (2, 1000), (3, 2000), (5, 3000)])
def test_phdim_of_embedded_cube_within_ten_percent(d, n):
    # PHdim under-estimates more as d grows (the MST length approaches its power law slowly):
    # about -5 % at d = 3 and -7 % at d = 5 for these sizes, so higher d needs more points.
    rng = np.random.default_rng(d)
    result = ph_dimension(embedded_cube(rng, n, d), n_draws=5, generator=d)
    assert result.value == pytest.approx(d, rel=0.10)
    assert result.slope == pytest.approx(1 - 1 / result.value)
    assert result.stderr < 0.05
    assert len(result.sizes) == len(result.energies) == 10
    if d > 1:  # on a segment E^0_1 tends to its length: a flat fit, R² says nothing there
        assert result.r2 > 0.8
        assert np.all(np.diff(result.energies) > 0)


def test_phdim_separates_dimensions(rng):
    low = ph_dimension(embedded_cube(rng, 500, 2), generator=1).value
    high = ph_dimension(embedded_cube(rng, 500, 6), generator=1).value
    assert low < 3 < high


def test_phdim_reproducible_and_leaves_global_rng_alone(rng):
    X = torch.from_numpy(embedded_cube(rng, 300, 3))
    state = torch.get_rng_state()
    a = ph_dimension(X, generator=3)
    assert torch.equal(state, torch.get_rng_state())
    b = ph_dimension(X, generator=torch.Generator().manual_seed(3))
    assert a.value == b.value
    c = ph_dimension(X, generator=np.random.default_rng(3))
    assert c.value == pytest.approx(a.value, rel=0.1)


def test_batched_fits_reuse_known_whole_lengths(rng):
    # Classes of different sizes in one batch; the whole-cloud E^0_1 computed by H0 (as the
    # monitor passes it) gives the same fits as the trees PHdim would grow itself.
    clouds = [embedded_cube(rng, n, 2) for n in (120, 90, 150)]
    alone = ph_dimensions(clouds, generator=5)
    whole = [float(h0_death_times(c).sum()) for c in clouds]
    shared = ph_dimensions(clouds, generator=5, whole_lengths=whole)
    for a, b, w in zip(alone, shared, whole, strict=True):
        assert a.energies[-1] == pytest.approx(w, rel=1e-12)
        np.testing.assert_allclose(b.energies, a.energies, rtol=1e-12)
        assert a.value == pytest.approx(2, rel=0.25)
    with pytest.raises(ValueError, match="one value per cloud"):
        ph_dimensions(clouds, whole_lengths=whole[:2])


def test_default_sizes_are_log_spaced_up_to_n():
    sizes = default_sizes(1000)
    assert sizes[0] == 100 and sizes[-1] == 1000 and len(sizes) == 10
    ratios = sizes[1:] / sizes[:-1]
    np.testing.assert_allclose(ratios, ratios.mean(), rtol=0.02)


def test_collapsed_cloud_warns_and_gives_nan():
    with pytest.warns(UserWarning, match="all points"):
        result = ph_dimension(np.ones((100, 3)))
    assert np.isnan(result.value)


def test_too_few_points_warns_and_gives_nan(rng):
    with pytest.warns(UserWarning, match="too few points"):
        assert np.isnan(ph_dimension(rng.normal(size=(10, 3))).value)


def test_slope_at_least_one_warns_and_gives_nan():
    # Vertices of a regular simplex: every subsample of n points has MST length (n - 1) * sqrt(2),
    # which grows slightly faster than n on a log-log scale: no finite dimension fits.
    X = np.eye(200)
    sizes = [20, 50, 100, 200]
    with pytest.warns(UserWarning, match="slope"):
        result = ph_dimension(X, sizes=sizes, n_draws=1)
    assert np.isnan(result.value) and result.slope >= 1


def test_bad_arguments_raise(rng):
    X = rng.normal(size=(50, 2))
    with pytest.raises(ValueError, match="sizes"):
        ph_dimension(X, sizes=[10, 60])
    with pytest.raises(ValueError, match="n_draws"):
        ph_dimension(X, n_draws=0)
    with pytest.raises(ValueError, match="NaN"):
        ph_dimension(np.full((50, 2), np.nan))


@pytest.fixture
def matrices(monkeypatch):
    """Bytes of every dense squared-distance matrix PHdim builds: the clouds' stacked matrices,
    and the matrices on which the trees of subsamples too large for those are searched."""
    sizes: list[int] = []
    stacked = dimension.stacked_squared_distances
    prim, boruvka = mst.prim_mst, mst.boruvka_edges

    def stacked_spy(*args, **kwargs):
        out = stacked(*args, **kwargs)
        sizes.append(out.numel() * out.element_size())
        return out

    def prim_spy(D2):
        sizes.append(D2.numel() * D2.element_size())
        return prim(D2)

    def boruvka_spy(D2, nearest=None):
        sizes.append(D2.nbytes)
        return boruvka(D2, nearest)

    monkeypatch.setattr(dimension, "stacked_squared_distances", stacked_spy)
    monkeypatch.setattr(mst, "prim_mst", prim_spy)
    monkeypatch.setattr(mst, "boruvka_edges", boruvka_spy)
    return sizes


def test_a_cloud_over_the_memory_bound_gives_the_same_fit(rng, monkeypatch, matrices):
    # 400 points with room for a 200-point matrix: the whole cloud and its larger subsamples are
    # searched from their points, the smaller ones on their own matrices; none over the bound.
    X = torch.from_numpy(embedded_cube(rng, 400, 3))
    free = ph_dimension(X, generator=4)
    bound = 200 * 200 * 8
    monkeypatch.setattr(mst, "DENSE_BYTES", bound)
    matrices.clear()
    bounded = ph_dimension(X, generator=4)
    assert matrices and max(matrices) <= bound
    np.testing.assert_allclose(bounded.energies, free.energies, rtol=1e-10)
    assert bounded.value == pytest.approx(free.value, rel=1e-9)


def test_a_cloud_over_the_chunk_bound_takes_its_subsamples_from_its_points(rng, monkeypatch):
    # Cutting sub-matrices out of a large cloud's matrix needs intermediates beyond the chunk
    # bound: such a cloud (here over a lowered bound) gets trees from its subsamples' points,
    # several subsamples per batched run, with the same energies.
    clouds = [embedded_cube(rng, n, 2) for n in (300, 100)]
    free = ph_dimensions(clouds, generator=8)
    monkeypatch.setattr(mst, "CHUNK_ELEMENTS", 200 * 200)
    assert not dimension._gathered(300, 2, 8) and dimension._gathered(100, 2, 8)
    bounded = ph_dimensions(clouds, generator=8)
    for a, b in zip(free, bounded, strict=True):
        np.testing.assert_allclose(b.energies, a.energies, rtol=1e-10)


def test_clouds_are_stacked_within_the_memory_bound(rng, monkeypatch, matrices):
    # Three clouds that fit together without a bound; with one, two stacks, the same fits.
    clouds = [embedded_cube(rng, n, 2).astype(np.float32) for n in (150, 120, 90)]
    free = ph_dimensions(clouds, generator=6)
    bound = 2 * 150 * 150 * 4
    monkeypatch.setattr(mst, "DENSE_BYTES", bound)
    matrices.clear()
    bounded = ph_dimensions(clouds, generator=6)
    assert max(matrices) <= bound
    for a, b in zip(free, bounded, strict=True):
        np.testing.assert_allclose(b.energies, a.energies, rtol=1e-6)


@pytest.fixture
def stacked_dims(monkeypatch) -> list[list[int]]:
    """The dimensions of the clouds of every stack PHdim cuts sub-matrices out of."""
    calls: list[list[int]] = []
    original = dimension.stacked_squared_distances

    def spy(clouds, padding):
        calls.append([c.shape[1] for c in clouds])
        return original(clouds, padding)

    monkeypatch.setattr(dimension, "stacked_squared_distances", spy)
    return calls


@pytest.mark.parametrize("d", [3, 32])
def test_many_points_in_few_dimensions_are_taken_from_their_points(
    rng, monkeypatch, stacked_dims, d
):
    # Cutting a sub-matrix costs per entry whatever d, computing it costs d per entry: a cloud of
    # 1100 points in d = 3 gets its subsamples' trees from its points, one in d = 32 from its
    # matrix, and the energies are those of the other way.
    X = torch.from_numpy(embedded_cube(rng, 1100, d, ambient=d)).float()
    cut = d == 32
    assert dimension._gathered(1100, d, 4) == cut
    chosen = ph_dimension(X, generator=3)
    assert bool(stacked_dims) == cut
    monkeypatch.setattr(dimension, "_gathered", lambda n, d, itemsize: not cut)
    other = ph_dimension(X, generator=3)
    np.testing.assert_allclose(other.energies, chosen.energies, rtol=1e-5)


def test_each_cloud_of_a_stack_is_one_to_cut(rng, stacked_dims):
    # Two clouds of one size: the wide one is cut out of its matrix; the narrow one is not to be
    # cut, so it does not join the wide one's stack, though both would fit in it.
    clouds = [embedded_cube(rng, 1100, d, ambient=d).astype(np.float32) for d in (32, 3)]
    assert dimension._groups([c.shape for c in clouds], 4) == [[0], [1]]
    together = ph_dimensions(clouds, generator=5)
    assert stacked_dims and all(dims == [32] for dims in stacked_dims)
    assert together[0].value == pytest.approx(32, rel=0.5) and 2 < together[1].value < 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_phdim_on_cuda_matches_cpu(rng, dtype):
    clouds = [torch.from_numpy(embedded_cube(rng, n, 3)).to(dtype) for n in (150, 120)]
    cpu = ph_dimensions(clouds, generator=2)
    cuda = ph_dimensions([c.cuda() for c in clouds], generator=2)
    rtol = 1e-5 if dtype == torch.float32 else 1e-10
    for a, b in zip(cpu, cuda, strict=True):
        np.testing.assert_allclose(b.energies, a.energies, rtol=rtol)

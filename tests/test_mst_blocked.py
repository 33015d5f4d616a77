"""The memory-bounded H0 path (issue 17): Prim's algorithm on distance rows computed as needed.

A cloud whose dense distance matrix would exceed ``mst.DENSE_BYTES`` goes through
``prim_mst_from_points``; these tests force small clouds through it by lowering the bound.
"""

import gudhi
import numpy as np
import pytest
import torch

from topo_monitor.tda import mst
from topo_monitor.tda.mst import _centred, _prim_points_numpy, _prim_points_torch
from topo_monitor.tda.persistence import h0_death_times, h0_death_times_many


def cloud_with_duplicates(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    X = rng.normal(size=(n, d))
    if n >= 30:
        X[[10, 20, 29]] = X[3]  # three zero-length bars, and ties for the argmin
    return X


@pytest.fixture
def spy(monkeypatch):
    """Names of the MST routines that ran, in order, while still running them: the dense searches
    (``boruvka_edges`` for one cloud on the CPU, ``prim_mst`` for a batch) and the points path."""
    calls: list[str] = []
    for name in ("boruvka_edges", "prim_mst", "prim_mst_from_points"):
        original = getattr(mst, name)

        def wrapper(*args, _name=name, _original=original):
            calls.append(_name)
            return _original(*args)

        monkeypatch.setattr(mst, name, wrapper)
    return calls


@pytest.mark.parametrize(("n", "d"), [(1, 3), (2, 1), (3, 5), (97, 2), (331, 64), (1009, 7)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_points_path_equals_dense(rng, monkeypatch, spy, n, d, dtype):
    # n prime: the drops of joined points (every eighth of the working set) fall unevenly. Both
    # paths measure their edges in float64: the same deaths, up to the output's rounding.
    X = cloud_with_duplicates(rng, n, d).astype(dtype)
    dense = h0_death_times(X)
    assert "prim_mst_from_points" not in spy
    spy.clear()
    monkeypatch.setattr(mst, "DENSE_BYTES", 0)
    points = h0_death_times(X)
    assert spy == ["prim_mst_from_points"]
    assert points.dtype == dense.dtype and points.shape == (n - 1,)
    rtol = 1e-10 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(points.numpy(), dense.numpy(), rtol=rtol, atol=0)
    if n >= 30:
        assert (points[:3] == 0).all()


def test_points_path_equals_gudhi(rng, monkeypatch, spy):
    X = cloud_with_duplicates(rng, 60, 4)
    monkeypatch.setattr(mst, "DENSE_BYTES", 0)
    ours = h0_death_times(X)
    assert set(spy) == {"prim_mst_from_points"}
    tree = gudhi.RipsComplex(points=X).create_simplex_tree(max_dimension=1)
    tree.compute_persistence(min_persistence=-1)
    bars = tree.persistence_intervals_in_dimension(0)
    expected = np.sort(bars[np.isfinite(bars[:, 1]), 1])
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-10, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_choice_switches_at_the_bound(rng, monkeypatch, spy, dtype):
    # The search matrix is float32 whatever the cloud's dtype: the bound is on n² float32 entries
    # and the component minima, at most n²/2 more. (d = 16: no edge blind to float32, so no
    # float64 search follows.)
    n = 50
    X = torch.from_numpy(rng.normal(size=(n, 16))).to(dtype)
    dense_bytes = n * n * 4 * 3 // 2
    monkeypatch.setattr(mst, "DENSE_BYTES", dense_bytes)
    at_bound = h0_death_times(X)
    assert spy == ["boruvka_edges"]
    monkeypatch.setattr(mst, "DENSE_BYTES", dense_bytes - 1)
    above = h0_death_times(X)
    assert spy == ["boruvka_edges", "prim_mst_from_points"]
    np.testing.assert_allclose(above.numpy(), at_bound.numpy(), rtol=1e-12)


def test_many_clouds_only_the_large_one_leaves_the_batch(rng, monkeypatch, spy):
    # The small clouds share one dense batched run; the large one, alone in its chunk, is over the
    # bound. Results come back in the callers' order.
    shapes = [(40, 12), (300, 16), (38, 12), (40, 10)]
    clouds = [cloud_with_duplicates(rng, n, d) for n, d in shapes]
    dense = h0_death_times_many(clouds)
    spy.clear()
    monkeypatch.setattr(mst, "DENSE_BYTES", 300 * 300 * 4 - 1)
    mixed = h0_death_times_many(clouds)
    assert spy == ["prim_mst_from_points", "prim_mst"]
    for got, expected in zip(mixed, dense, strict=True):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-10, atol=0)


def test_points_search_runs_in_float32_by_default(rng):
    # The rows are computed in float32 (2.5× faster than float64); the lengths come afterwards.
    X = torch.from_numpy(rng.normal(size=(200, 24)))
    seen: list[torch.dtype] = []
    original = mst._prim_points_numpy

    def spy_loop(Xc, sq):
        seen.append(Xc.dtype)
        return original(Xc, sq)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mst, "_prim_points_numpy", spy_loop)
        default = mst.prim_mst_from_points(X)
        exact = mst.prim_mst_from_points(X, torch.float64)
    assert seen == [np.float32, np.float64]
    np.testing.assert_array_equal(default.numpy(), exact.numpy())


def test_torch_loop_agrees_with_numpy_loop(rng):
    # The torch loop runs on accelerators only; run it here on the CPU against the NumPy loop. No
    # duplicate points: a point equally far from two of them may take either as its parent, as the
    # two loops' matrix-vector products round differently.
    for n in (1, 2, 130):
        Xc, sq = _centred(torch.from_numpy(rng.normal(size=(n, 6))))
        expected = _prim_points_numpy(Xc.numpy(), sq.numpy())
        np.testing.assert_array_equal(_prim_points_torch(Xc, sq).numpy(), expected)


def test_edges_have_the_dense_layout(rng):
    X = torch.from_numpy(rng.normal(size=(25, 3)))
    edges = mst.prim_mst_from_points(X)
    expected, _ = mst.prim_mst(mst.squared_distances(X)[None])
    assert edges.dtype == torch.int64
    np.testing.assert_array_equal(edges.numpy(), expected[0].numpy())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_points_path_on_cuda_matches_cpu(rng, monkeypatch, dtype):
    X = torch.from_numpy(cloud_with_duplicates(rng, 500, 16)).to(dtype)
    monkeypatch.setattr(mst, "DENSE_BYTES", 0)
    out = h0_death_times(X.cuda())
    assert out.is_cuda and out.dtype == dtype
    rtol = 1e-10 if dtype == torch.float64 else 1e-6
    np.testing.assert_allclose(out.cpu().numpy(), h0_death_times(X).numpy(), rtol=rtol, atol=0)


def test_edge_lengths_are_measured_a_slice_at_a_time(rng, monkeypatch):
    # A bound of 120 coordinates (both ends of every edge): slices of 3 edges for two
    # 10-dimensional clouds of one shape, batched, and of 6 for a smaller one, padded. The same
    # lengths as measured at once, in float64.
    clouds = [torch.from_numpy(rng.normal(size=(n, 10))).float() for n in (40, 40, 25)]
    edges = mst.mst_edges(clouds)
    whole = mst.edge_lengths(clouds, edges)
    monkeypatch.setattr(mst, "CHUNK_ELEMENTS", 120)
    sliced = mst.edge_lengths(clouds, edges)
    assert sliced.dtype == torch.float64
    np.testing.assert_array_equal(sliced.numpy(), whole.numpy())
    for g, cloud in enumerate(clouds):
        tree = edges[g, : len(cloud) - 1]
        expected = (cloud[tree[:, 0]].double() - cloud[tree[:, 1]].double()).norm(dim=1)
        np.testing.assert_allclose(
            sliced[g, : len(cloud) - 1].numpy(), expected.numpy(), rtol=1e-15
        )
        assert (sliced[g, len(cloud) - 1 :] == 0).all()

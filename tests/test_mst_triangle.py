"""The single-cloud CPU search on the upper block triangle of the matrix (``mst.boruvka_triangle``).

Each pair across two column blocks is multiplied and stored once, so a component's lightest edge
may sit in another component's row. Blocks are made narrow here (``COLUMN_BLOCK``) so that small
clouds have many of them. The trees against Prim's loop and gudhi, on the same clouds as the
whole-matrix search, are in ``test_float32_engine`` (its ``engine`` fixture runs both).
"""

import gudhi
import numpy as np
import pytest
import torch

from topo_monitor.tda import mst
from topo_monitor.tda.persistence import h0_death_times


@pytest.fixture
def narrow_blocks(monkeypatch) -> None:
    """Column blocks of 32 columns, and every one-cloud search of any size on the triangle."""
    monkeypatch.setattr(mst, "COLUMN_BLOCK", 32)
    monkeypatch.setattr(mst, "TRIANGLE_BYTES", 0)
    monkeypatch.setattr(mst, "NARROW_DIM", 1)


def test_column_blocks_cover_the_cloud():
    for n in [1, 2, 15, 16, 17, 500, 767, 1151, 1152, 3000, 13377]:
        bounds = mst.column_blocks(n)
        widths = np.diff(bounds)
        assert bounds[0] == 0 and bounds[-1] == n and (widths > 0).all()
        assert len(widths) == max(1, round(n / mst.COLUMN_BLOCK))
        assert (widths[:-1] % mst.CHUNK_ROWS == 0).all()
        assert widths.max() < mst.COLUMN_BLOCK * 1.5 + mst.CHUNK_ROWS or len(widths) == 1


def test_column_argmin_takes_the_first_row_on_ties(rng):
    block = torch.from_numpy(rng.integers(0, 3, (96, 40)).astype(np.float32))
    for k0 in (16, 48, 96):
        values, rows = mst._column_argmin(block, k0)
        expected = block[:k0].numpy()
        np.testing.assert_array_equal(rows, expected.argmin(axis=0))
        np.testing.assert_array_equal(values, expected.min(axis=0))


def test_triangle_stores_each_pair_once_and_finds_every_nearest_neighbour(narrow_blocks, rng):
    """Small integer coordinates: every Gram-form entry is exact in float32, so ties are exact
    ties, and each point's nearest neighbour must be the whole matrix's first minimum."""
    X = rng.integers(0, 3, (150, 4)).astype(np.float32)
    X[rng.integers(0, 150, 40)] = X[0]  # duplicates: ties at 0
    Xc, sq = torch.from_numpy(X), torch.from_numpy((X**2).sum(axis=1))
    upper = mst._UpperTriangle(Xc, sq)
    whole = (X**2).sum(1)[:, None] + (X**2).sum(1)[None, :] - 2 * X @ X.T
    np.fill_diagonal(whole, np.inf)
    np.testing.assert_array_equal(upper.nearest, whole.argmin(axis=1))

    rows, columns = (a.reshape(-1) for a in np.indices(whole.shape))
    read = upper.entries(rows, columns)
    block = np.searchsorted(mst.column_blocks(150), np.arange(150), side="right") - 1
    stored = block[rows] <= block[columns]
    np.testing.assert_array_equal(read[stored], whole[rows[stored], columns[stored]])
    assert np.isnan(read[~stored]).all()
    bounds = mst.column_blocks(150)
    assert upper.flat.size == int((bounds[1:] * np.diff(bounds)).sum()) < 0.7 * 150**2


def test_large_clouds_take_the_triangle(monkeypatch, rng):
    """The rule of ``mst._cloud_tree``: the triangle for a whole matrix above TRIANGLE_BYTES in
    NARROW_DIM dimensions or more, the whole matrix otherwise; the same deaths either way."""
    ran: list[str] = []
    for name in ("boruvka_triangle", "boruvka_edges"):
        original = getattr(mst, name)
        monkeypatch.setattr(mst, name, lambda *a, _f=original, _n=name: ran.append(_n) or _f(*a))
    monkeypatch.setattr(mst, "TRIANGLE_BYTES", 600 * 600 * 4)
    wide = torch.from_numpy(rng.standard_normal((601, mst.NARROW_DIM)).astype(np.float32))
    deaths = h0_death_times(wide)
    h0_death_times(wide[:600])
    h0_death_times(wide[:, : mst.NARROW_DIM - 1])
    assert ran == ["boruvka_triangle", "boruvka_edges", "boruvka_edges"]
    monkeypatch.setattr(mst, "TRIANGLE_BYTES", 2**40)
    np.testing.assert_array_equal(h0_death_times(wide), deaths)


def test_first_rows_reads_the_first_matching_row(narrow_blocks, rng):
    X = rng.integers(0, 3, (130, 3)).astype(np.float32)  # exact entries, many ties
    upper = mst._UpperTriangle(torch.from_numpy(X), torch.from_numpy((X**2).sum(axis=1)))
    rows = np.sort(rng.choice(130, 70, replace=False))
    columns = rng.integers(0, 130, 40)
    values = np.array([upper.entries(rows, np.full(70, c))[5] for c in columns])
    found = upper.first_rows(rows, columns, values)
    for column, value, row in zip(columns, values, found, strict=True):
        read = upper.entries(rows, np.full(70, column))
        matches = rows[read == value]
        assert row == (matches[0] if len(matches) else -1)


def test_one_component_holding_many_links(narrow_blocks, monkeypatch, rng):
    """A centre, a sphere around it (one component after the first round: every point's nearest
    is the centre) and pairs of outliers beyond it, numbered after it: each pair's lightest edge
    is stored in the sphere's rows, so that one component holds the links of all pairs, read as
    blocks (``first_rows``). The tree matches gudhi's."""
    sphere = rng.standard_normal((300, 32))
    sphere /= np.linalg.norm(sphere, axis=1, keepdims=True)
    far = rng.standard_normal((100, 32))
    far /= np.linalg.norm(far, axis=1, keepdims=True)
    pairs = np.repeat(2.0 * far, 2, axis=0) + 1e-3 * rng.standard_normal((200, 32))
    X = np.concatenate([np.zeros((1, 32)), sphere, pairs])
    monkeypatch.setattr(mst, "HOLDER_READS", 64)
    calls: list[int] = []
    first_rows = mst._UpperTriangle.first_rows
    monkeypatch.setattr(
        mst._UpperTriangle,
        "first_rows",
        lambda self, rows, *a: calls.append(len(rows)) or first_rows(self, rows, *a),
    )
    deaths = h0_death_times(torch.from_numpy(X)).numpy()
    assert max(calls) >= 301  # the sphere and its centre, searched as blocks
    rips = gudhi.RipsComplex(points=X).create_simplex_tree(max_dimension=1)
    rips.compute_persistence()
    bars = rips.persistence_intervals_in_dimension(0)
    np.testing.assert_allclose(deaths.sum(), bars[np.isfinite(bars[:, 1]), 1].sum(), rtol=1e-12)

"""Functional-graph topology: checked against gudhi on the same distance matrix and against
correlation structures whose persistent homology is known in closed form."""

from __future__ import annotations

import json
import math
import os

import gudhi
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import MLP, blobs, loader, quiet_trainer
from topo_monitor import SummaryConfig, TopologyMonitor, TopologyRecord, read_history
from topo_monitor.probing.problems import Problem
from topo_monitor.probing.summary import (
    DEFAULT_METRICS,
    METRICS,
    metric_names,
    network_names,
    summarize,
)
from topo_monitor.tda.functional import (
    DENSITY_GRID,
    THRESHOLD_GRID,
    correlation_distances,
    edge_density,
    functional_topology,
    stratified_quotas,
)


def structured(n: int, m: int, seed: int = 0) -> np.ndarray:
    """ReLU activations of m neurons mixing 4 latent factors, plus noise: a generic graph."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, 4))
    return np.maximum(latent @ rng.standard_normal((4, m)) + rng.standard_normal((n, m)), 0)


def with_correlation(R: np.ndarray, n: int = 200, seed: int = 0) -> np.ndarray:
    """n inputs of neurons whose *sample* correlation matrix is exactly R (R positive definite):
    centred orthonormal columns, mixed by a Cholesky factor of R."""
    Z = np.random.default_rng(seed).standard_normal((n, len(R)))
    Q, _ = np.linalg.qr(Z - Z.mean(axis=0))
    return 3.0 + Q @ np.linalg.cholesky(R).T


def gudhi_diagrams(D: np.ndarray, max_dim: int = 2) -> list[np.ndarray]:
    """gudhi's Rips persistence of D, without edge collapse, sorted."""
    tree = gudhi.RipsComplex(distance_matrix=D).create_simplex_tree(max_dimension=max_dim + 1)
    tree.compute_persistence(homology_coeff_field=2)
    return [
        np.array(sorted(map(tuple, tree.persistence_intervals_in_dimension(k)))).reshape(-1, 2)
        for k in range(1, max_dim + 1)
    ]


def sorted_bars(bars: np.ndarray) -> np.ndarray:
    return np.array(sorted(map(tuple, bars))).reshape(-1, 2)


def test_distances_are_one_minus_absolute_pearson_and_diagrams_match_gudhi() -> None:
    A = structured(300, 22)
    A[:, 5] = -2 * A[:, 3] + 1  # perfectly anti-correlated with neuron 3: distance 0
    D = correlation_distances(A)
    np.testing.assert_allclose(D, 1 - np.abs(np.corrcoef(A.T)), atol=1e-12)
    assert D[3, 5] == pytest.approx(0, abs=1e-12)
    assert (D == D.T).all() and (np.diag(D) == 0).all()

    result = functional_topology([torch.tensor(A, dtype=torch.float64)])
    for ours, theirs in zip(result.diagrams, gudhi_diagrams(D), strict=True):
        assert len(theirs) > 0
        np.testing.assert_allclose(sorted_bars(ours), theirs, atol=1e-12)
    np.testing.assert_array_equal(result.neurons, np.column_stack([np.zeros(22), np.arange(22)]))


def test_neurons_tuned_to_an_angle_give_the_circle_closed_form() -> None:
    """Neuron j fires cos(θ - φ_j), φ_j = 2πj/9, over evenly spaced angles θ: ρ_jk = cos(φ_j -
    φ_k) exactly, and 1 - |ρ| puts the 9 neurons evenly on a circle (φ and φ + π coincide), at
    distances d_k = 1 - cos(kπ/9) between k-th neighbours. The Rips complex of 9 evenly spaced
    points on a circle is a circle until 3rd neighbours join, then two 2-spheres until the graph
    is complete (Adamaszek & Adams 2017): one H1 bar [d_1, d_3), two H2 bars [d_3, d_4)."""
    theta = 2 * np.pi * np.arange(360) / 360
    A = np.cos(theta[:, None] - 2 * np.pi * np.arange(9)[None] / 9)
    d = [1 - math.cos(k * math.pi / 9) for k in range(5)]
    result = functional_topology([A])
    h1, h2 = result.diagrams
    np.testing.assert_allclose(h1, [[d[1], d[3]]], atol=1e-12)
    np.testing.assert_allclose(h2, [[d[3], d[4]]] * 2, atol=1e-12)
    expected = {
        "bars_H1": 1,
        "life_H1": d[3] - d[1],
        "midlife_H1": (d[1] + d[3]) / 2,
        "peak_density_H1": 9 / 36,  # the 9 nearest-neighbour edges of 36 pairs
        "bars_H2": 2,
        "life_H2": d[4] - d[3],
        "midlife_H2": (d[3] + d[4]) / 2,
        "peak_density_H2": 27 / 36,
    }
    assert result.summaries == pytest.approx(expected, abs=1e-12)
    # On the threshold grid: β1 = 1 on [d_1, d_3), β2 = 2 on [d_3, d_4) (away from the ends,
    # where the last bit of the computed correlations decides).
    t = THRESHOLD_GRID
    clear = np.abs(t[:, None] - np.array(d)[None]).min(axis=1) > 1e-9
    np.testing.assert_array_equal(
        result.betti_threshold[0][clear], ((d[1] <= t) & (t < d[3]))[clear]
    )
    np.testing.assert_array_equal(
        result.betti_threshold[1][clear], 2 * ((d[3] <= t) & (t < d[4]))[clear]
    )


def test_an_octahedron_of_correlations_is_one_two_sphere() -> None:
    """Six neurons, correlation 0.45 between all pairs but three disjoint ones (0): at threshold
    0.55 the graph is the octahedron, whose flag complex is a 2-sphere, filled at 1.0."""
    R = np.eye(6) + 0.45 * (np.arange(6)[:, None] // 2 != np.arange(6)[None] // 2)
    result = functional_topology([with_correlation(R)])
    h1, h2 = result.diagrams
    assert len(h1) == 0
    np.testing.assert_allclose(h2, [[0.55, 1.0]], atol=1e-12)
    assert result.summaries["bars_H1"] == 0
    assert math.isnan(result.summaries["life_H1"]) and math.isnan(
        result.summaries["peak_density_H1"]
    )
    assert result.summaries["life_H2"] == pytest.approx(0.45)
    assert result.summaries["midlife_H2"] == pytest.approx(0.775)
    assert result.summaries["peak_density_H2"] == pytest.approx(12 / 15)
    # β at density q is β at the ⌈15q⌉-th shortest edge: the sphere is complete at the 12th
    # (densities in (11/15, 12/15]) and filled by the 13th.
    q = DENSITY_GRID
    np.testing.assert_array_equal(result.betti_density[1], (q > 11 / 15) & (q <= 12 / 15))
    np.testing.assert_array_equal(result.betti_density[0], 0)


def test_independent_neurons_have_no_persistent_class() -> None:
    """Independent neurons correlate by chance only (|ρ| ~ 1/√n): every distance is near 1, so
    no class can live long, while the tuned neurons' circle lives 0.44."""
    A = np.random.default_rng(1).standard_normal((4000, 30))
    result = functional_topology([A])
    lives = np.concatenate([bars[:, 1] - bars[:, 0] for bars in result.diagrams])
    assert len(lives) > 0
    assert lives.max() < 0.05


def test_betti_curves_and_densities_match_gudhi_complexes() -> None:
    A = structured(200, 14, seed=2)
    D = correlation_distances(A)
    result = functional_topology([A])
    pairs = np.triu_indices(14, k=1)
    edges = np.sort(D[pairs])

    def gudhi_betti(t: float) -> list[int]:
        """β1, β2 of the flag complex of the edges of length <= t, from gudhi."""
        tree = gudhi.RipsComplex(distance_matrix=D, max_edge_length=t).create_simplex_tree(
            max_dimension=3
        )
        tree.compute_persistence(homology_coeff_field=2, persistence_dim_max=True)
        return [*tree.betti_numbers(), 0, 0][1:3]

    for g in range(0, len(THRESHOLD_GRID), 4):
        t = THRESHOLD_GRID[g]
        assert list(result.betti_threshold[:, g]) == gudhi_betti(t), t
        assert edge_density(D, np.array([t]))[0] == np.mean(D[pairs] <= t)
    for g in range(1, len(DENSITY_GRID), 3):
        q = DENSITY_GRID[g]
        t = edges[math.ceil(q * len(edges) - 1e-9) - 1]  # the shortest edges making density q
        assert np.mean(D[pairs] <= t) >= q - 1e-12
        assert list(result.betti_density[:, g]) == gudhi_betti(t), q
    # The peak: the lowest threshold at which β_k is largest, from gudhi's Betti numbers at
    # every edge length, as the density of edges in by then.
    curves = np.array([gudhi_betti(t) for t in edges])
    for k in (1, 2):
        peak = edges[int(np.argmax(curves[:, k - 1]))]
        assert result.summaries[f"peak_density_H{k}"] == np.mean(D[pairs] <= peak)
        assert result.summaries[f"bars_H{k}"] == len(result.diagrams[k - 1]) > 0


def test_constant_neurons_are_left_out_and_counted() -> None:
    A = structured(150, 12)
    dead = np.column_stack([np.zeros(150), np.full(150, 5.0), A])
    # A float32 neuron at 1e6 whose values differ by rounding only is constant too.
    dead = np.column_stack([dead, 1e6 + np.float32(1e-9) * np.arange(150)])
    result = functional_topology([torch.tensor(dead, dtype=torch.float32)])
    reference = functional_topology([torch.tensor(A, dtype=torch.float32)])
    assert result.n_constant == 3 and reference.n_constant == 0
    np.testing.assert_array_equal(result.neurons[:, 1], np.arange(2, 14))
    for ours, theirs in zip(result.diagrams, reference.diagrams, strict=True):
        np.testing.assert_array_equal(ours, theirs)
    with pytest.raises(ValueError, match=r"columns \[0, 1, 14\] of A are constant"):
        correlation_distances(dead)


def test_fewer_than_two_usable_neurons_is_a_reason_not_an_error() -> None:
    A = np.column_stack([np.arange(10.0), np.ones(10)])
    result = functional_topology([A])
    assert "two neurons that are not constant, got 1 (1 constant)" in result.reason
    assert all(math.isnan(v) for v in result.summaries.values())
    assert len(result.summaries) == 8


def test_quotas_share_the_cap_evenly_across_blocks() -> None:
    assert stratified_quotas([3, 40, 40], 20) == [3, 8, 9]
    assert stratified_quotas([5, 5], 20) == [5, 5]
    assert stratified_quotas([], 20) == []
    rng = np.random.default_rng(0)
    for _ in range(200):
        counts = rng.integers(0, 30, size=rng.integers(1, 8)).tolist()
        total = int(rng.integers(1, 120))
        quotas = stratified_quotas(counts, total)
        assert sum(quotas) == min(total, sum(counts))
        assert all(0 <= q <= c for q, c in zip(quotas, counts, strict=True))
        open_ = [q for q, c in zip(quotas, counts, strict=True) if q < c]
        assert not open_ or max(open_) - min(open_) <= 1
        # a block given all its neurons had no more than the others were given
        assert all(c <= max(open_) for q, c in zip(quotas, counts, strict=True) if q == c and open_)


def test_the_neuron_draw_is_stratified_reproducible_and_private() -> None:
    blocks = [structured(100, 3, seed=3), structured(100, 40, seed=4), structured(100, 40)]
    numpy_state = np.random.get_state()  # noqa: NPY002 (the global stream is what is checked)
    torch_state = torch.random.get_rng_state()
    first = functional_topology(blocks, max_neurons=20, generator=7)
    again = functional_topology(blocks, max_neurons=20, generator=torch.Generator().manual_seed(7))
    other = functional_topology(blocks, max_neurons=20, generator=8)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state[1])  # noqa: NPY002
    assert np.bincount(first.neurons[:, 0]).tolist() == [3, 8, 9]
    assert len({tuple(n) for n in first.neurons}) == 20
    assert (first.neurons[:, 1] < np.array([3, 40, 40])[first.neurons[:, 0]]).all()
    np.testing.assert_array_equal(first.neurons, again.neurons)
    assert not np.array_equal(first.neurons, other.neurons)
    # The graph is the one of the drawn columns.
    drawn = np.column_stack([blocks[b][:, c] for b, c in first.neurons])
    for ours, theirs in zip(
        first.diagrams, gudhi_diagrams(correlation_distances(drawn)), strict=True
    ):
        np.testing.assert_allclose(sorted_bars(ours), theirs, atol=1e-12)


@pytest.mark.parametrize(
    ("blocks", "options", "message"),
    [
        ([np.ones((5, 3)), np.ones((6, 3))], {}, "same inputs, got row counts"),
        ([np.ones((1, 3))], {}, "at least two inputs"),
        ([np.full((5, 3), np.nan)], {}, "NaN or Inf"),
        ([np.ones(5)], {}, "2-D"),
        ([], {}, "non-empty"),
        ([np.ones((5, 3))], {"max_neurons": 1}, "max_neurons must be an int >= 2"),
        ([np.ones((5, 3))], {"max_dim": 3}, "max_dim must be 1 or 2"),
    ],
)
def test_bad_input_is_a_clear_error(blocks: list, options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        functional_topology(blocks, **options)


# ---------------------------------------------------------------- in the engine and the monitor


def tuned_clouds() -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The 9 tuned neurons of the circle test split over two blocks (5 + 4 columns), with labels
    that split the inputs into 3 classes: only all inputs together give ρ = cos(φ_j - φ_k)."""
    theta = 2 * np.pi * np.arange(360) / 360
    A = torch.tensor(np.cos(theta[:, None] - 2 * np.pi * np.arange(9)[None] / 9))
    labels = torch.arange(360) // 120
    return {"hidden": A[:, :5], "output": A[:, 5:]}, labels


def test_summarize_puts_the_network_graph_of_every_block_in_record_network() -> None:
    clouds, labels = tuned_clouds()
    config = SummaryConfig(metrics=("e0", "functional"), functional_max_neurons=9)
    record = summarize(clouds, labels, config)
    d = [1 - math.cos(k * math.pi / 9) for k in range(5)]
    assert list(record.network) == network_names(config)
    assert record.network["functional_bars_H1"] == 1
    assert record.network["functional_life_H1"] == pytest.approx(d[3] - d[1])
    assert record.network["functional_bars_H2"] == 2
    assert record.network["functional_midlife_H2"] == pytest.approx((d[3] + d[4]) / 2)
    assert record.network["functional_neurons"] == 9
    assert record.network["functional_constant_neurons"] == 0
    assert record.curves["functional_edge_density"] == DENSITY_GRID.tolist()
    assert record.curves["functional_threshold"] == THRESHOLD_GRID.tolist()
    direct = functional_topology(list(clouds.values()))
    for k in (1, 2):
        assert record.curves[f"functional_betti_H{k}"] == direct.betti_density[k - 1].tolist()
        assert record.curves[f"functional_betti_H{k}_threshold"] == (
            direct.betti_threshold[k - 1].tolist()
        )
    assert "functional" in record.timings
    assert list(record.values) == metric_names(config)  # per block: E0 only, as asked

    # Off by default; a block with NaN activations is left out of the graph, with its reason.
    assert SummaryConfig().metrics == DEFAULT_METRICS and "functional" in METRICS
    plain = summarize(clouds, labels, SummaryConfig())
    assert plain.network == {} and plain.curves == {}
    broken = {"broken": torch.full((360, 3), math.nan), **clouds}
    record = summarize(broken, labels, SummaryConfig(metrics=("functional",)))
    assert record.network["functional_neurons"] == 9
    assert record.values == {} and record.problems[0].block == "broken"


def test_the_network_values_survive_the_history_and_old_files_still_read() -> None:
    clouds, labels = tuned_clouds()
    record = summarize(clouds, labels, SummaryConfig(metrics=("functional",)))
    record.network["functional_life_H1"] = math.nan  # NaN is written as null, read back NaN
    back = TopologyRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    assert back.curves == record.curves
    assert math.isnan(back.network.pop("functional_life_H1"))
    record.network.pop("functional_life_H1")
    assert back.network == record.network
    old = {"blocks": ["output"], "depths": [1.0], "values": {"E0_1": [1.0]}, "epoch": 3}
    legacy = TopologyRecord.from_dict(old)
    assert legacy.network == {} and legacy.curves == {} and legacy.epoch == 3


def test_a_graph_of_too_few_neurons_is_a_problem_of_the_network() -> None:
    clouds = {"output": torch.column_stack([torch.arange(10.0), torch.ones(10)])}
    record = summarize(clouds, torch.zeros(10), SummaryConfig(metrics=("functional",)))
    assert record.problems == [
        Problem(
            "network",
            "functional",
            "functional_graph",
            "the functional graph needs two neurons that are not constant, got 1 (1 constant)",
        )
    ]
    assert math.isnan(record.network["functional_life_H1"])


@pytest.mark.parametrize("cap", [3, 2.5, True])
def test_a_bad_neuron_cap_fails_at_construction(cap: object) -> None:
    with pytest.raises(ValueError, match="functional_max_neurons must be an int >= 4"):
        SummaryConfig(metrics=("functional",), functional_max_neurons=cap)
    with pytest.raises(ValueError, match="functional_max_neurons"):
        TopologyMonitor(metrics=("functional",), functional_max_neurons=cap)


def test_the_monitor_logs_the_functional_summaries_per_network(tmp_path) -> None:
    pl.seed_everything(0)
    monitor = TopologyMonitor(
        samples_per_class=30, metrics=("e0", "functional"), functional_max_neurons=12
    )
    logger = TensorBoardLogger(tmp_path, name="run")
    trainer = quiet_trainer(max_epochs=2, callbacks=[monitor], logger=logger)
    model = MLP()
    trainer.fit(model, loader(blobs()))

    newest = monitor.history[-1]
    assert monitor.network_metric_names == list(newest.network)
    assert newest.network["functional_neurons"] == 12
    # Independent truth: the graph of the same 12 neurons (columns of the recorded blocks).
    captured = {}
    hooks = [
        model.net[i].register_forward_hook(lambda m, a, out, i=i: captured.__setitem__(i, out))
        for i in (2, 5)
    ]
    model.eval()
    with torch.no_grad():
        captured["output"] = model(monitor.probe.inputs)
    for h in hooks:
        h.remove()
    again = functional_topology(
        [captured[2], captured[5], captured["output"]],
        max_neurons=12,
        generator=torch.Generator().manual_seed(monitor.seed),
    )
    drawn = torch.cat([captured[k] for k in (2, 5, "output")], dim=1)[:, _columns(again)]
    theirs = gudhi_diagrams(correlation_distances(drawn))
    assert newest.network["functional_bars_H1"] == len(theirs[0])
    assert newest.network["functional_life_H1"] == pytest.approx(
        np.mean(theirs[0][:, 1] - theirs[0][:, 0]) if len(theirs[0]) else math.nan, nan_ok=True
    )

    for name, value in newest.network.items():
        metric = trainer.callback_metrics[f"topology/{name}"]
        assert metric.item() == pytest.approx(value, nan_ok=True)
    events = EventAccumulator(logger.log_dir, size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("topology/functional_bars_H1")] == [0, 1]
    assert "topology_figures/functional_betti_curves" in events.Tags()["images"]
    history = read_history(os.path.join(logger.log_dir, "topology_history.jsonl"))
    assert history[-1].curves == newest.curves
    assert history[-1].network.keys() == newest.network.keys()


def _columns(graph) -> list[int]:
    """Columns of the concatenated blocks (16, 16, 3 neurons) of the graph's nodes."""
    offsets = np.cumsum([0, 16, 16])
    return [int(offsets[b] + c) for b, c in graph.neurons]

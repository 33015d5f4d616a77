"""Mapper graphs and purity: on clouds whose answer is known, in the record, the figure and a
Trainer run."""

import math

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import MLP, blobs, loader, quiet_trainer
from topo_monitor import SummaryConfig, TopologyMonitor, TopologyRecord, measure, read_history
from topo_monitor.probing import summarize
from topo_monitor.probing.summary import MAPPER, metric_names
from topo_monitor.reporting.plots import mapper_figure, topology_figures
from topo_monitor.tda.mapper import SingleLinkage, mapper_graph


def test_separated_labelled_blobs_are_pure(rng):
    # Blobs at different norms, and two at the same norm but far apart in space: every node
    # holds one class, so every purity is 1.
    centres = [(1, 0, 0), (5, 0, 0), (0, 5, 0), (9, 0, 0)]
    X = np.concatenate([np.array(c) + 0.1 * rng.normal(size=(40, 3)) for c in centres])
    y = np.repeat(np.arange(4), 40)
    graph = mapper_graph(X, y)
    assert graph.mean_node_purity == 1.0 and graph.mean_point_purity == 1.0
    assert graph.class_purity == {0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0}
    # Same-norm blobs 1 and 2 never share a node: the clustering separates them.
    for members in graph.nodes:
        assert len(np.unique(y[members])) == 1
    assert np.isfinite(graph.point_purity).all()  # every point lies in some node


@pytest.mark.parametrize("k", [2, 3, 5])
def test_a_blob_mixing_k_classes_everywhere_has_purity_one_over_k(rng, k):
    # Every location holds one point of each of the k classes: whatever the cover, every node
    # holds all k classes.
    locations = rng.normal(size=(30, 4))
    X = np.repeat(locations, k, axis=0)
    y = np.tile(np.arange(k), 30)
    graph = mapper_graph(X, y)
    np.testing.assert_allclose(graph.node_purity, 1.0 / k)
    assert graph.mean_point_purity == pytest.approx(1.0 / k)
    assert graph.class_purity == pytest.approx({c: 1.0 / k for c in range(k)})


def test_point_and_class_purity_by_hand():
    # Two classes far apart except one class-1 point inside class 0's blob.
    X = np.array([[1.0, 0], [1.01, 0], [1.02, 0], [1.015, 0.0], [9.0, 0], [9.01, 0], [9.02, 0]])
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    graph = mapper_graph(X, y, intervals=2, gain=0.3)
    mixed = [m for m in graph.nodes if 3 in m]
    assert len(mixed) == 1 and sorted(mixed[0]) == [0, 1, 2, 3]
    assert graph.point_purity[3] == 0.5 and graph.point_purity[4] == 1.0
    assert graph.class_purity[0] == 0.5 and graph.class_purity[1] == pytest.approx((0.5 + 3) / 4)


def canonical(labels: np.ndarray) -> list[int]:
    """Cluster ids renumbered by first appearance: equal lists, equal partitions."""
    first: dict[int, int] = {}
    return [first.setdefault(int(c), len(first)) for c in labels]


@pytest.mark.parametrize(("d", "threshold"), [(2, 0.2), (2, 0.5), (16, 3.0), (300, 19.0)])
def test_single_linkage_is_scikit_learns_partition(rng, d, threshold):
    from sklearn.cluster import AgglomerativeClustering

    X = np.abs(rng.normal(size=(300, d)))
    X[:100] += 2.0  # a few well separated groups, and the rest cut at whatever the threshold is
    expected = AgglomerativeClustering(
        n_clusters=None, linkage="single", distance_threshold=threshold
    ).fit_predict(X)
    found = SingleLinkage(threshold).fit_predict(X)
    assert canonical(found) == canonical(expected)
    assert 1 < len(set(expected)) < len(X)  # the case is not trivial
    assert list(SingleLinkage(1.0).fit_predict(X[:1])) == [0]


def test_bad_arguments():
    with pytest.raises(ValueError, match="one entry per point"):
        mapper_graph(np.zeros((3, 2)), [0, 1])
    with pytest.raises(ValueError, match="gain"):
        mapper_graph(np.zeros((3, 2)), [0, 1, 0], gain=0.9)


def test_nodes_know_their_majority_class_filter_value_and_interval():
    X = np.array([[1.0, 0], [1.01, 0], [1.02, 0], [1.015, 0.0], [9.0, 0], [9.01, 0], [9.02, 0]])
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    graph = mapper_graph(X, y, intervals=2, gain=0.3)
    for members, majority, value in zip(
        graph.nodes, graph.node_class, graph.node_filter, strict=True
    ):
        counts = np.bincount(y[members], minlength=2)
        assert majority == np.argmax(counts)
        assert value == pytest.approx(np.linalg.norm(X[members], axis=1).mean())
    assert sorted(graph.node_interval.tolist()) == [0, 1]  # one node per interval here


# ---------------------------------------------------------------------------- in the record


def two_blocks(rng, n=60):
    """Block "mixed": three classes interleaved at the same places; block "pure": separated."""
    y = np.repeat(np.arange(3), n)
    mixed = np.tile(rng.normal(size=(n, 4)), (3, 1))
    pure = np.concatenate([c + 0.1 * rng.normal(size=(n, 4)) for c in (1, 4, 7)])
    clouds = {"mixed": torch.tensor(mixed), "pure": torch.tensor(pure)}
    return clouds, torch.tensor(y)


def test_summarize_records_the_purities_of_each_blocks_graph(rng):
    clouds, y = two_blocks(rng)
    record = summarize(clouds, y, SummaryConfig(metrics=("mapper",)))
    for b, name in enumerate(clouds):
        graph = mapper_graph(clouds[name], y)
        assert record.values["mapper_node_purity"][b] == pytest.approx(graph.mean_node_purity)
        assert record.values["mapper_point_purity"][b] == pytest.approx(graph.mean_point_purity)
        assert record.per_class["mapper_class_purity"][b] == pytest.approx(
            [graph.class_purity[c] for c in (0, 1, 2)]
        )
        assert record.mapper_graphs[name].edges == graph.edges
    assert record.values["mapper_point_purity"] == pytest.approx([1 / 3, 1.0])
    assert record.values["mapper_class_purity"] == pytest.approx([1 / 3, 1.0])
    assert set(metric_names(SummaryConfig(metrics=("mapper",)))) == set(record.values)
    assert "mapper_graphs" not in record.to_dict()  # in memory only
    assert TopologyRecord.from_dict(record.to_dict()).per_class == record.per_class


def test_spatial_clouds_give_each_point_its_inputs_label(rng):
    # Two points per input: the Mapper sees the labels of the points, not of the inputs.
    clouds, _ = two_blocks(rng, n=30)
    inputs = torch.arange(45).repeat_interleave(2)
    labels = torch.arange(3).repeat_interleave(15)
    record = summarize(
        clouds, labels, SummaryConfig(metrics=("mapper",)), inputs={"mixed": inputs, "pure": inputs}
    )
    graph = mapper_graph(clouds["pure"], labels[inputs])
    assert record.values["mapper_point_purity"][1] == pytest.approx(graph.mean_point_purity)


def test_the_point_cap_subsamples_without_moving_the_other_metrics(rng):
    clouds, y = two_blocks(rng)
    capped = SummaryConfig(metrics=("phdim", "mapper"), mapper_max_points=50)
    record = summarize(clouds, y, capped)
    assert all(len(np.unique(np.concatenate(g.nodes))) <= 50 for g in record.mapper_graphs.values())
    assert record.values["mapper_point_purity"][1] == 1.0  # still separated
    alone = summarize(clouds, y, SummaryConfig(metrics=("phdim",)))
    assert record.values["PHdim"] == alone.values["PHdim"]


def test_a_non_finite_block_has_no_graph_and_nan_purity(rng):
    clouds, y = two_blocks(rng)
    clouds["mixed"][0, 0] = math.nan
    record = summarize(clouds, y, SummaryConfig(metrics=("mapper",)))
    assert math.isnan(record.values["mapper_node_purity"][0])
    assert list(record.mapper_graphs) == ["pure"]
    assert record.problems and record.problems[0].block == "mixed"


def test_bad_mapper_options_are_refused_at_construction():
    with pytest.raises(ValueError, match="per_class=True"):
        SummaryConfig(metrics=("mapper",), per_class=False)
    with pytest.raises(ValueError, match="mapper_gain"):
        SummaryConfig(metrics=("mapper",), mapper_gain=0.7)
    with pytest.raises(ValueError, match="mapper_intervals"):
        TopologyMonitor(metrics=("mapper",), mapper_intervals=0)
    with pytest.raises(ValueError, match="mapper_max_points"):
        TopologyMonitor(metrics=("mapper",), mapper_max_points=1.5)


# ---------------------------------------------------------------------------- the figure


def test_the_figure_draws_the_last_hidden_blocks_graph(rng):
    clouds, y = two_blocks(rng)
    clouds["output"] = clouds["mixed"].clone()
    record = summarize(clouds, y, SummaryConfig(metrics=("mapper",)))
    graph = record.mapper_graphs["pure"]
    figure = topology_figures([record])
    assert {"topology_figures/mapper_graph", "topology_figures/depth_mapper_point_purity"} <= set(
        figure
    )
    ax = figure["topology_figures/mapper_graph"].axes[0]
    nodes = ax.collections[0]  # the scatter of the nodes; the legend's handles are empty
    assert len(nodes.get_offsets()) == len(graph.nodes)
    np.testing.assert_allclose(nodes.get_offsets()[:, 0], graph.node_filter)
    colours = {tuple(c) for c in nodes.get_facecolors()}
    assert len(colours) == 3  # one per class: every node is pure
    assert len(ax.lines) == len(graph.edges)
    assert "pure" in ax.get_title()
    mixed = mapper_figure(record, "mixed").axes[0].collections[0]
    assert (mixed.get_edgecolors()[:, :3] == 0).all()  # every node mixes classes: ringed black
    with pytest.raises(ValueError, match="no Mapper graph"):
        mapper_figure(record, "absent")


# ---------------------------------------------------------------------------- in a Trainer


def test_monitor_logs_purity_and_draws_the_graph(tmp_path):
    pl.seed_everything(0)
    monitor = TopologyMonitor(
        samples_per_class=30, metrics=("e0", "mapper"), figures_every_n_epochs=1
    )
    logger = TensorBoardLogger(tmp_path, name="run")
    model = MLP()
    quiet_trainer(max_epochs=2, callbacks=[monitor], logger=logger).fit(model, loader(blobs()))

    events = EventAccumulator(logger.log_dir, size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    for metric in MAPPER:
        for block in monitor.block_names:
            assert [e.step for e in events.Scalars(f"topology/{metric}/{block}")] == [0, 1]
    assert [e.step for e in events.Images("topology_figures/mapper_graph")] == [0, 1]
    assert monitor.history[0].mapper_graphs is None  # only the newest graphs are kept

    # Independent truth: the trained model's output on the probe, through mapper_graph.
    model.eval()
    with torch.no_grad():
        output = model(monitor.probe.inputs)
    graph = mapper_graph(output, monitor.probe.labels)
    logged = events.Scalars("topology/mapper_point_purity/output")[-1].value
    assert logged == pytest.approx(graph.mean_point_purity, rel=1e-6)
    history = read_history(f"{logger.log_dir}/topology_history.jsonl")
    assert history[-1].per_class["mapper_class_purity"][-1] == pytest.approx(
        [graph.class_purity[c] for c in (0, 1, 2)]
    )


def test_measure_builds_spatial_graphs_from_every_position_with_its_inputs_label():
    torch.manual_seed(0)
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU())
    model = torch.nn.Sequential(conv, torch.nn.Flatten(), torch.nn.Linear(4 * 16, 2))
    x, y = torch.randn(12, 1, 4, 4), torch.arange(12) % 2
    record = measure(model, (x, y), blocks=["0"], reduction="spatial", metrics=("mapper",))
    with torch.no_grad():
        points = conv(x).permute(0, 2, 3, 1).reshape(-1, 4)  # 16 positions per input
    graph = mapper_graph(points, y.repeat_interleave(16))
    assert record.values["mapper_point_purity"][0] == pytest.approx(graph.mean_point_purity)
    assert sum(map(len, record.mapper_graphs["0"].nodes)) == sum(map(len, graph.nodes))

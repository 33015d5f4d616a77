"""Mapper graphs and purity on clouds whose answer is known."""

import numpy as np
import pytest

from topo_monitor.tda.mapper import mapper_graph


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


def test_bad_arguments():
    with pytest.raises(ValueError, match="one entry per point"):
        mapper_graph(np.zeros((3, 2)), [0, 1])
    with pytest.raises(ValueError, match="gain"):
        mapper_graph(np.zeros((3, 2)), [0, 1, 0], gain=0.9)

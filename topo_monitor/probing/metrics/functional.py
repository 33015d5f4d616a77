"""The ``"functional"`` group: the topology of the network's functional graph, per network
(Corneanu et al.): its H1/H2 summaries in ``record.network`` and its Betti curves in
``record.curves``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from topo_monitor.probing.metrics.base import Context, MetricGroup
from topo_monitor.probing.problems import NETWORK
from topo_monitor.tda.functional import (
    DENSITY_GRID,
    FUNCTIONAL_SUMMARIES,
    THRESHOLD_GRID,
    FunctionalTopology,
    functional_topology,
)

if TYPE_CHECKING:
    from topo_monitor.probing.config import SummaryConfig

__all__ = ["FunctionalGroup"]


class FunctionalGroup(MetricGroup):
    """The functional graph of the neurons of every block with finite activations (columns of the
    clouds, over all probe inputs whatever ``per_class``; one point per input)."""

    name = "functional"
    order = 3

    def network_metrics(self, config: SummaryConfig) -> list[str]:
        return [
            *self.topology_features(config),
            "functional_neurons",
            "functional_constant_neurons",
        ]

    def topology_features(self, config: SummaryConfig) -> list[str]:
        return [f"functional_{s}_H{k}" for k in (1, 2) for s in FUNCTIONAL_SUMMARIES]

    def compute(self, context: Context) -> None:
        if not context.finite:
            return
        with context.timed("functional"):
            graph = functional_topology(
                context.finite, context.config.functional_max_neurons, context.generator
            )
        context.network.update(_network_values(graph))
        context.curves.update(_curves(graph))
        if graph.reason is not None:
            context.problem(NETWORK, "functional", "functional_graph", graph.reason)


def _network_values(graph: FunctionalTopology) -> dict[str, float]:
    network = {f"functional_{name}": value for name, value in graph.summaries.items()}
    network["functional_neurons"] = float(len(graph.neurons))
    network["functional_constant_neurons"] = float(graph.n_constant)
    return network


def _curves(graph: FunctionalTopology) -> dict[str, list[float]]:
    curves = {
        "functional_edge_density": DENSITY_GRID.tolist(),
        "functional_threshold": THRESHOLD_GRID.tolist(),
    }
    for k, (by_density, by_threshold) in enumerate(
        zip(graph.betti_density, graph.betti_threshold, strict=True), start=1
    ):
        curves[f"functional_betti_H{k}"] = by_density.astype(float).tolist()
        curves[f"functional_betti_H{k}_threshold"] = by_threshold.astype(float).tolist()
    return curves

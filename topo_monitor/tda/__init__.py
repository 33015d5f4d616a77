"""Pure mathematics of point clouds and diagrams: the MST engine, persistence, PHdim, distances,
the functional graph of neurons (``functional``) and Mapper graphs (``mapper``).

No Lightning and no model here: tensors and arrays in, numbers and diagrams out.
"""

from topo_monitor.tda.dimension import PHDimResult, ph_dimension, ph_dimensions
from topo_monitor.tda.distances import sliced_wasserstein, sliced_wasserstein_matrix
from topo_monitor.tda.functional import FunctionalTopology, functional_topology
from topo_monitor.tda.mapper import MapperGraph, mapper_graph
from topo_monitor.tda.persistence import (
    barcode,
    betti0_at_scale,
    cloud_scale,
    h0_death_times,
    h0_death_times_many,
    mean_lifespan,
    total_persistence,
)

__all__ = [
    "FunctionalTopology",
    "MapperGraph",
    "PHDimResult",
    "barcode",
    "betti0_at_scale",
    "cloud_scale",
    "functional_topology",
    "h0_death_times",
    "h0_death_times_many",
    "mapper_graph",
    "mean_lifespan",
    "ph_dimension",
    "ph_dimensions",
    "sliced_wasserstein",
    "sliced_wasserstein_matrix",
    "total_persistence",
]

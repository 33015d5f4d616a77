"""topo-monitor: the topology and intrinsic dimension of what a network learns, while it trains.

The mathematics (:mod:`~topo_monitor.persistence`, :mod:`~topo_monitor.dimension`,
:mod:`~topo_monitor.distances`) is plain torch/NumPy/gudhi and can be used on its own.
"""

from topo_monitor.adversarial import AdversarialTable, adversarial_topology
from topo_monitor.adversarial_monitor import AdversarialTopologyMonitor
from topo_monitor.dimension import PHDimResult, ph_dimension
from topo_monitor.distances import distance_matrix, sliced_wasserstein
from topo_monitor.early_stopping import TopologicalEarlyStopping
from topo_monitor.generalization import CalibrationSet, GeneralizationPredictor
from topo_monitor.monitor import TopologyMonitor
from topo_monitor.persistence import (
    barcode,
    cloud_scale,
    h0_death_times,
    mean_lifespan,
    total_persistence,
)
from topo_monitor.predicted_accuracy import PredictedTestAccuracy
from topo_monitor.probe import ProbeSet
from topo_monitor.summary import EpochRecord

__version__ = "0.1.0"

__all__ = [
    "AdversarialTable",
    "AdversarialTopologyMonitor",
    "CalibrationSet",
    "EpochRecord",
    "GeneralizationPredictor",
    "PHDimResult",
    "PredictedTestAccuracy",
    "ProbeSet",
    "TopologicalEarlyStopping",
    "TopologyMonitor",
    "adversarial_topology",
    "barcode",
    "cloud_scale",
    "distance_matrix",
    "h0_death_times",
    "mean_lifespan",
    "ph_dimension",
    "sliced_wasserstein",
    "total_persistence",
]

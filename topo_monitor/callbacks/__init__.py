"""Lightning callbacks: when to measure, on which rank, and what to keep in checkpoints."""

from topo_monitor.callbacks.adversarial_monitor import AdversarialTopologyMonitor
from topo_monitor.callbacks.early_stopping import TopologicalEarlyStopping
from topo_monitor.callbacks.monitor import TopologyMonitor
from topo_monitor.callbacks.predicted_accuracy import PredictedTestAccuracy

__all__ = [
    "AdversarialTopologyMonitor",
    "PredictedTestAccuracy",
    "TopologicalEarlyStopping",
    "TopologyMonitor",
]

"""topo-monitor: the topology and intrinsic dimension of what a network learns, while it trains.

Layers, each usable on its own:

* :mod:`topo_monitor.tda` — pure mathematics (MST engine, persistence, PHdim, distances);
* :mod:`topo_monitor.probing` — measuring a model: :func:`measure` → :class:`TopologyRecord`;
* :mod:`topo_monitor.analysis` — generalization prediction and its statistics, stopping rules,
  redundant blocks, adversarial topology;
* :mod:`topo_monitor.reporting` — loggers, history file, figures;
* :mod:`topo_monitor.callbacks` — the Lightning callbacks.

``import topo_monitor`` imports torch and NumPy only. Lightning (which itself imports matplotlib
through torchmetrics) loads when a callback is first used, gudhi with the first H1 barcode,
matplotlib with the first figure, torchattacks (the ``adversarial`` extra) with the first attack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from topo_monitor.analysis import (
    AdversarialTable,
    AllRule,
    AnyRule,
    CalibrationSet,
    ConvergenceRule,
    GeneralizationPredictor,
    PlateauRule,
    StoppingRule,
    TrendRule,
    VelocityRule,
    adversarial_topology,
    features_from_record,
    paired_bootstrap,
    redundant_blocks,
)
from topo_monitor.probing import ProbeSet, SummaryConfig, TopologyRecord, measure
from topo_monitor.reporting import read_history
from topo_monitor.tda import (
    PHDimResult,
    barcode,
    betti0_at_scale,
    cloud_scale,
    functional_topology,
    h0_death_times,
    mapper_graph,
    mean_lifespan,
    ph_dimension,
    sliced_wasserstein,
    sliced_wasserstein_matrix,
    total_persistence,
)

if TYPE_CHECKING:
    from topo_monitor.callbacks import (
        AdversarialTopologyMonitor,
        PredictedTestAccuracy,
        TopologicalEarlyStopping,
        TopologyMonitor,
    )

__version__ = "0.1.0"

_CALLBACKS = (
    "AdversarialTopologyMonitor",
    "PredictedTestAccuracy",
    "TopologicalEarlyStopping",
    "TopologyMonitor",
)


def __getattr__(name: str) -> Any:
    """The callbacks, imported with Lightning on first use (PEP 562)."""
    if name in _CALLBACKS:
        return getattr(importlib.import_module("topo_monitor.callbacks"), name)
    raise AttributeError(f"module 'topo_monitor' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AdversarialTable",
    "AdversarialTopologyMonitor",
    "AllRule",
    "AnyRule",
    "CalibrationSet",
    "ConvergenceRule",
    "GeneralizationPredictor",
    "PHDimResult",
    "PlateauRule",
    "PredictedTestAccuracy",
    "ProbeSet",
    "StoppingRule",
    "SummaryConfig",
    "TopologicalEarlyStopping",
    "TopologyMonitor",
    "TopologyRecord",
    "TrendRule",
    "VelocityRule",
    "adversarial_topology",
    "barcode",
    "betti0_at_scale",
    "cloud_scale",
    "features_from_record",
    "functional_topology",
    "h0_death_times",
    "mapper_graph",
    "mean_lifespan",
    "measure",
    "paired_bootstrap",
    "ph_dimension",
    "read_history",
    "redundant_blocks",
    "sliced_wasserstein",
    "sliced_wasserstein_matrix",
    "total_persistence",
]

"""Analyses built on measurements: generalization prediction (beside the test-free baselines),
stopping rules, redundant blocks and adversarial-example topology (torchattacks is imported only
when an attack is made)."""

from topo_monitor.analysis.adversarial import AdversarialTable, adversarial_topology
from topo_monitor.analysis.generalization import (
    CalibrationSet,
    GeneralizationPredictor,
    features_from_record,
)
from topo_monitor.analysis.redundancy import redundant_blocks
from topo_monitor.analysis.statistics import paired_bootstrap
from topo_monitor.analysis.stopping import (
    AllRule,
    AnyRule,
    ConvergenceRule,
    PlateauRule,
    StoppingRule,
    TrendRule,
    VelocityRule,
)
from topo_monitor.probing.baselines import mean_margin, param_norm

__all__ = [
    "AdversarialTable",
    "AllRule",
    "AnyRule",
    "CalibrationSet",
    "ConvergenceRule",
    "GeneralizationPredictor",
    "PlateauRule",
    "StoppingRule",
    "TrendRule",
    "VelocityRule",
    "adversarial_topology",
    "features_from_record",
    "mean_margin",
    "paired_bootstrap",
    "param_norm",
    "redundant_blocks",
]

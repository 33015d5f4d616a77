"""Measuring a model: probe sets, blocks and their hooks, reductions, and ``measure`` → record.

No Lightning here: a plain ``nn.Module`` and a probe set are enough.
"""

from topo_monitor.probing.blocks import OUTPUT, candidate_blocks, resolve_blocks
from topo_monitor.probing.measurement import ProbeSharding, as_probe, measure
from topo_monitor.probing.probe import ProbeSet, default_unpack
from topo_monitor.probing.record import TopologyRecord
from topo_monitor.probing.reduction import REDUCTIONS
from topo_monitor.probing.summary import METRICS, SummaryConfig, summarize

__all__ = [
    "METRICS",
    "OUTPUT",
    "REDUCTIONS",
    "ProbeSet",
    "ProbeSharding",
    "SummaryConfig",
    "TopologyRecord",
    "as_probe",
    "candidate_blocks",
    "default_unpack",
    "measure",
    "resolve_blocks",
    "summarize",
]

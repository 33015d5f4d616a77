"""The registry of metric groups: every metric's name, computation and problems in one place.

Everything that lists metrics asks here — :class:`~topo_monitor.probing.config.SummaryConfig`
(which groups exist), :func:`~topo_monitor.probing.summary.summarize` (what to compute, in which
order), the monitor's logged names and TensorBoard layout, the generalization predictor's
features and the stopping rules' checks. A new group is one module with a
:class:`~topo_monitor.probing.metrics.base.MetricGroup` subclass, plus its :func:`register`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from topo_monitor.probing.metrics.base import Context, MetricGroup, minmax_scale
from topo_monitor.probing.metrics.e0 import BETA0, E0Group, lifespan_names
from topo_monitor.probing.metrics.functional import FunctionalGroup
from topo_monitor.probing.metrics.geometry import GeometryGroup
from topo_monitor.probing.metrics.mapper import MAPPER, MapperGroup
from topo_monitor.probing.metrics.phdim import PHdimGroup
from topo_monitor.probing.metrics.sw import BOTTLENECK, VELOCITY, SWGroup

if TYPE_CHECKING:
    from topo_monitor.probing.config import SummaryConfig

__all__ = [
    "BETA0",
    "BOTTLENECK",
    "DEFAULT_METRICS",
    "MAPPER",
    "METRICS",
    "REGISTRY",
    "VELOCITY",
    "Context",
    "MetricGroup",
    "baseline_features",
    "is_profiled",
    "is_topology_feature",
    "lifespan_names",
    "metric_names",
    "minmax_scale",
    "network_names",
    "register",
    "selected_groups",
    "topology_features",
]

REGISTRY: dict[str, MetricGroup] = {}
"""Every metric group by name, in the order their metrics are listed."""


def register(group: MetricGroup) -> MetricGroup:
    """Add a group to the registry (its name must be new); returns it."""
    if group.name in REGISTRY:
        raise ValueError(f"a metric group named {group.name!r} is already registered")
    REGISTRY[group.name] = group
    return group


for _group in (E0Group(), PHdimGroup(), SWGroup(), FunctionalGroup(), GeometryGroup()):
    register(_group)
register(MapperGroup())

METRICS = tuple(REGISTRY)
"""The built-in metric groups: E lifespans (of every dimension in ``homology_dims``) and β0, PHdim,
the sliced-Wasserstein distances (between blocks, to the previous measurement, to the previous
block), the topology of the network's functional graph (per network, opt-in: it is costly), the
geometry baselines a topological measure must beat (opt-in), and the class purity of each
block's Mapper graph (opt-in)."""

DEFAULT_METRICS = ("e0", "phdim", "sw")
"""The metric groups computed unless told otherwise: all but ``"functional"``, ``"geometry"``
and ``"mapper"``."""


def selected_groups(config: SummaryConfig) -> list[MetricGroup]:
    """The groups ``config.metrics`` selects, in registry order."""
    return [group for name, group in REGISTRY.items() if name in config.metrics]


def metric_names(config: SummaryConfig) -> list[str]:
    """Every per-block metric :func:`~topo_monitor.probing.summary.summarize` reports under
    ``config``."""
    return [name for group in selected_groups(config) for name in group.block_metrics(config)]


def network_names(config: SummaryConfig) -> list[str]:
    """Every network-wide value reported under ``config`` (``record.network``): with
    ``"functional"``, ``functional_<summary>_H<k>`` for k = 1, 2, then ``functional_neurons`` and
    ``functional_constant_neurons``."""
    return [name for group in selected_groups(config) for name in group.network_metrics(config)]


def topology_features(config: SummaryConfig) -> list[str]:
    """The topological features of the generalization predictor a measurement under ``config``
    records (``E0_<α>``, ``E0_<α>_scaled``, ``PHdim``, the functional summaries, ...)."""
    return [name for group in selected_groups(config) for name in group.topology_features(config)]


def baseline_features(config: SummaryConfig) -> list[str]:
    """The predictor's geometry baselines a measurement under ``config`` records."""
    return [name for group in selected_groups(config) for name in group.baseline_features(config)]


def is_profiled(metric: str) -> bool:
    """Whether the figures draw ``metric`` as a depth profile (see
    :meth:`~topo_monitor.probing.metrics.base.MetricGroup.profiled`)."""
    return any(group.profiled(metric) for group in REGISTRY.values())


def is_topology_feature(name: str) -> bool:
    """Whether ``name`` is a topological feature under some configuration (any α, H0 or H1)."""
    from topo_monitor.probing.config import SummaryConfig  # it imports this registry

    everything = SummaryConfig(metrics=METRICS, homology_dims=(0, 1))
    return E0Group.is_feature(name) or name in topology_features(everything)

"""From the reduced point clouds of a network's blocks to one record of topology summaries.

Pure functions: no Lightning, no logging. Each quantity is computed on the cloud of every class and
averaged over the classes where it is defined (Magai & Ayzenberg 2022), or on the whole cloud with
``per_class=False``. What is computed is the registry's (:mod:`topo_monitor.probing.metrics`):
:func:`summarize` walks the groups ``config.metrics`` selects over one shared context.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from topo_monitor._validation import check
from topo_monitor.probing.config import FUNCTIONAL_MAX_NEURONS, MAPPER_MAX_POINTS, SummaryConfig
from topo_monitor.probing.metrics import (
    BETA0,
    BOTTLENECK,
    DEFAULT_METRICS,
    MAPPER,
    METRICS,
    VELOCITY,
    Context,
    lifespan_names,
    metric_names,
    minmax_scale,
    network_names,
    selected_groups,
)
from topo_monitor.probing.record import TopologyRecord
from topo_monitor.tda.geometry import GEOMETRY

__all__ = [
    "BETA0",
    "BOTTLENECK",
    "DEFAULT_METRICS",
    "FUNCTIONAL_MAX_NEURONS",
    "GEOMETRY",
    "MAPPER",
    "MAPPER_MAX_POINTS",
    "METRICS",
    "VELOCITY",
    "SummaryConfig",
    "lifespan_names",
    "metric_names",
    "minmax_scale",
    "network_names",
    "summarize",
]


def summarize(
    clouds: Mapping[str, torch.Tensor],
    labels: torch.Tensor,
    config: SummaryConfig,
    generator: torch.Generator | None = None,
    previous: TopologyRecord | None = None,
    inputs: Mapping[str, torch.Tensor] | None = None,
) -> TopologyRecord:
    """Topology summaries of every block's reduced cloud.

    Parameters
    ----------
    clouds : mapping of block name to torch.Tensor of shape (n_block, C_block)
        In execution order; row i of a cloud is probe input i, unless ``inputs`` maps its rows.
    labels : torch.Tensor, shape (n,)
        The probe inputs' labels.
    config : SummaryConfig
    generator : torch.Generator, optional
        For PHdim and H1 subsamples and the functional graph's neuron draw; a fresh seed-0
        generator by default.
    previous : TopologyRecord, optional
        The same model's record on the same probe set at an earlier time (the previous epoch).
        With ``"sw"`` in ``config.metrics``, ``H0_velocity`` of each block is the class-averaged
        SW distance between its scale-free H0 diagrams then and now: how fast the block's
        topology still moves. NaN without a previous record, or for blocks it lacks.
    inputs : mapping of block name to torch.Tensor of int, shape (n_block,), optional
        For blocks with several points per input (the spatial reductions, see
        :meth:`~topo_monitor.probing.reduction.Reducer.inputs`): the probe input of each row.
        Each point carries its input's label: a class's cloud holds all points of its inputs,
        and the geometry baselines label every row.

    Returns
    -------
    TopologyRecord
        With ``epoch``, ``step`` and ``extras`` left for the caller (see :func:`measure`), and
        the scale-free H0 diagrams in ``diagrams`` (kept in memory, never serialized) for the
        next measurement's velocity.
        Values that cannot be computed (NaN/Inf activations, a collapsed cloud, too few points)
        are NaN, and ``problems`` says why, per block. With ``"functional"``, the functional
        graph of the neurons of every block with finite activations (the columns of the
        clouds, over all probe inputs together, whatever ``per_class``; for a block with several
        points per input, the mean of each input's points, as the graph correlates neurons over
        inputs) gives ``record.network`` and ``record.curves``.
    """
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    labels = labels.cpu()
    inputs = {name: rows.cpu() for name, rows in (inputs or {}).items()}
    for name, cloud in clouds.items():
        n_labels = len(labels[inputs[name]]) if name in inputs else len(labels)
        check(
            len(cloud) == n_labels,
            f"block {name!r} has {len(cloud)} points for {n_labels} labels: give "
            "inputs= for a cloud with several points per input",
        )
    groups = selected_groups(config)
    context = Context(
        clouds,
        labels,
        config,
        generator,
        previous,
        inputs,
        wants_h0=any(group.needs_h0 for group in groups),
    )
    for group in sorted(groups, key=lambda group: group.order):
        group.compute(context)
    values, class_counts = _class_means(context.per_class)
    values.update(context.values)
    L = len(context.names)
    return TopologyRecord(
        blocks=context.names,
        depths=[(i + 1) / L for i in range(L)],
        values=values,
        per_class={m: v.tolist() for m, v in context.per_class.items()},
        class_counts=class_counts,
        classes=context.classes,
        sw=context.sw,
        problems=context.problems,
        timings=context.timings,
        network=context.network,
        curves=context.curves,
        diagrams=context.diagrams,
        mapper_graphs=context.mapper_graphs or None,
    )


def _class_means(
    per_class: Mapping[str, np.ndarray],
) -> tuple[dict[str, list[float]], dict[str, list[int]]]:
    """Per metric, each block's mean over the classes where the metric is finite, and how many
    classes entered it: one class without a value (too few points, a collapsed cloud, no finite
    PHdim) must not take the block's value with it. NaN only where no class has one."""
    values: dict[str, list[float]] = {}
    counts: dict[str, list[int]] = {}
    for metric, table in per_class.items():
        finite = np.isfinite(table)
        n = finite.sum(axis=1)
        sums = np.where(finite, table, 0.0).sum(axis=1)
        values[metric] = np.where(n > 0, sums / np.maximum(n, 1), math.nan).tolist()
        counts[metric] = n.astype(int).tolist()
    return values, counts

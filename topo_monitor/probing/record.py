"""The record of one measurement: the topology of every block of a model on one probe set.

The single source of truth: every writer (loggers, history file, figures) and every consumer
(``trainer.callback_metrics``, early stopping, the generalization predictor, the benchmarks)
reads records and never recomputes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from topo_monitor.probing.problems import Problem
from topo_monitor.tda.mapper import MapperGraph

__all__ = ["TopologyRecord", "nan_to_none", "none_to_nan"]


@dataclass
class TopologyRecord:
    """Topology of every block of a model, measured on one probe set.

    Attributes
    ----------
    blocks : list of str, length L
        In execution order; the last is the model output.
    depths : list of float, length L
        Relative depth i / L of block i = 1..L.
    values : dict[str, list of float]
        Per metric, each block's value: for a per-class metric, the mean over the classes where
        it could be computed (``class_counts`` says how many); NaN where none could.
    epoch, step : int or None
        When it was measured during training; None for a model measured outside ``fit``.
    per_class : dict[str, list of list of float]
        Per metric, shape (L, K): the value of each block for each of the K classes.
    class_counts : dict[str, list of int]
        Per per-class metric, length L: how many of the K classes entered each block's value in
        ``values`` (K when every class gave one; 0 where the value is NaN). With
        ``per_class=False``, 1 or 0. Empty in history files older than this field.
    classes : list of int, length K
    sw : list of list of float or None
        (L, L) sliced-Wasserstein distances between the blocks' scale-free H0 diagrams.
    problems : list of Problem
        Why some values are NaN (or some classes left out of a mean): block, class, metric,
        cause and detail of each case.
    timings : dict[str, float]
        Seconds spent per stage.
    extras : dict[str, float]
        Test-free baselines measured on the same probe set (``margin``, ``param_norm``), for
        :mod:`topo_monitor.analysis.generalization`.
    network : dict[str, float]
        Values of the whole network, not of a block: the functional graph's summaries
        (``functional_life_H1``, ...; see :func:`~topo_monitor.probing.summary.network_names`).
        Empty unless a network-wide metric group is on; absent from older history files.
    curves : dict[str, list of float]
        Curves of the whole network, each of the length of the grid it is sampled on: the
        functional graph's grids ``functional_edge_density`` and ``functional_threshold``, and
        its Betti curves ``functional_betti_H<k>`` (on the density grid) and
        ``functional_betti_H<k>_threshold``.
    diagrams : dict[str, list of np.ndarray of shape (n_k, 2)] or None
        Per block, the scale-free H0 diagram of each class, for the next measurement's
        ``H0_velocity``. In memory only: not serialized, None in a record read back.
    mapper_graphs : dict[str, MapperGraph] or None
        With the ``"mapper"`` metric group, each block's Mapper graph (for its figure; node
        indices refer to the points it was built on, see ``SummaryConfig.mapper_max_points``).
        In memory only, as ``diagrams``.
    """

    blocks: list[str]
    depths: list[float]
    values: dict[str, list[float]]
    epoch: int | None = None
    step: int | None = None
    per_class: dict[str, list[list[float]]] = field(default_factory=dict)
    class_counts: dict[str, list[int]] = field(default_factory=dict)
    classes: list[int] = field(default_factory=list)
    sw: list[list[float]] | None = None
    problems: list[Problem] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    extras: dict[str, float] = field(default_factory=dict)
    network: dict[str, float] = field(default_factory=dict)
    curves: dict[str, list[float]] = field(default_factory=dict)
    diagrams: dict[str, list[np.ndarray]] | None = field(default=None, repr=False, compare=False)
    mapper_graphs: dict[str, MapperGraph] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        """A JSON-ready dict (without ``diagrams`` and ``mapper_graphs``): NaN becomes None."""
        data = asdict(replace(self, diagrams=None, mapper_graphs=None))
        del data["diagrams"], data["mapper_graphs"]
        return nan_to_none(data)

    @classmethod
    def from_dict(cls, data: Mapping) -> TopologyRecord:
        """From :meth:`to_dict`; history files of older versions load too (problems written as
        ``[block, text]`` pairs, no ``class_counts``)."""
        data = dict(data)
        kept = {key: data.pop(key, None) for key in ("epoch", "step", "sw")}
        if kept["sw"] is not None:
            kept["sw"] = none_to_nan(kept["sw"])
        kept["problems"] = [Problem.from_dict(p) for p in data.pop("problems", [])]
        return cls(**none_to_nan(data), **kept)


def nan_to_none(obj: object) -> object:
    """NaN and ±inf → None through dicts, lists and tuples: JSON has neither (``null``)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [nan_to_none(v) for v in obj]
    return obj


def none_to_nan(obj: object) -> object:
    """None → NaN through dicts and lists: the inverse of :func:`nan_to_none` on numbers."""
    if obj is None:
        return math.nan
    if isinstance(obj, dict):
        return {k: none_to_nan(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [none_to_nan(v) for v in obj]
    return obj

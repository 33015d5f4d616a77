"""What a measurement computes: :class:`SummaryConfig`, checked once for every entry point.

``measure``, the callbacks and ``adversarial_topology`` all build one, so the same bad option gets
the same message everywhere. Which metric groups exist is the registry's business
(:mod:`topo_monitor.probing.metrics`); a group checks the options it depends on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from topo_monitor._validation import as_positive, check, is_positive_int
from topo_monitor.probing.metrics import DEFAULT_METRICS, METRICS, selected_groups
from topo_monitor.tda.mapper import MAPPER_GAIN, MAPPER_INTERVALS

__all__ = [
    "FUNCTIONAL_MAX_NEURONS",
    "MAPPER_MAX_POINTS",
    "SummaryConfig",
    "summary_config",
]

MAPPER_MAX_POINTS = 3000
"""Points of a block's cloud the Mapper graph is built on (a random subsample when larger): the
default probe's 300 inputs × 10 classes. On 2 CPU cores: 0.015 s per block of 500 points, 0.17 s
per ResNet-18 block of 3000 (benchmarks/bench_monitor.py), 0.3 s at 3000 points × 512 channels."""

FUNCTIONAL_MAX_NEURONS = 50
"""Default cap on the functional graph's nodes. Its H2 grows like m⁴: on activations like the
digits example's (7 blocks, 500 probe inputs, 2 CPU cores) 0.015 s at 40 neurons, 0.03 s at 50,
0.06 s at 60, 0.14 s at 80, 0.26 s at 100, against a training epoch of 1-1.2 s
(benchmarks/bench_monitor.py)."""


@dataclass(frozen=True)
class SummaryConfig:
    """What to compute, checked on construction. Sequences are stored as sorted tuples.

    Parameters
    ----------
    metrics : non-empty subset of {"e0", "phdim", "sw", "functional", "geometry", "mapper"}
        ``"e0"``: lifespan sums E^i (for every i in ``homology_dims``) and β0 at scale
        (:data:`BETA0`); ``"phdim"``; ``"sw"``: the sliced-Wasserstein distances between the
        blocks' scale-free H0 diagrams, the topological velocity ``H0_velocity`` (see
        :func:`summarize`) and the bottleneck distance of adjacent blocks
        (:data:`BOTTLENECK`); ``"functional"`` (not in the default): the persistent homology
        up to H2 of the graph of the network's neurons weighted by their correlations over the
        probe inputs (Corneanu et al.), stored per network in ``record.network`` and
        ``record.curves``.
        ``"mapper"`` (not in the default): the purities :data:`MAPPER` of each block's Mapper
        graph, the graphs themselves in ``record.mapper_graphs``.
    homology_dims : (0,) or (0, 1)
        H1 is costly (a Rips complex), hence opt-in and capped by ``h1_max_points``.
    alpha : float
        Exponent of E_α.
    per_class : bool
        Compute on each class's cloud and average; False: on the whole cloud.
    normalize : None or "minmax"
        ``"minmax"`` scales every feature of a block's cloud to [0, 1] first, as the reference
        code of Magai & Ayzenberg does (their E is then twice ours: they halve lifespans).
    h1_max_points : int
        Points per class cloud for H1 (a random subsample when larger).
    phdim_draws : int
        Subsamples per size in the PHdim fit.
    sw_directions : int
        As ``gudhi.representations.SlicedWassersteinDistance(num_directions=...)``.
    functional_max_neurons : int
        Nodes of the functional graph, drawn stratified across blocks when there are more
        (its H2 costs ~m⁴).
    mapper_intervals, mapper_gain : int, float
        The Mapper cover: intervals over the range of the norms, and their overlap as a fraction
        of their length (``"mapper"``; purity needs class labels, hence ``per_class=True``).
    mapper_max_points : int
        Points of a block's cloud for its Mapper graph (a random subsample when larger).
    """

    metrics: tuple[str, ...] = DEFAULT_METRICS
    homology_dims: tuple[int, ...] = (0,)
    alpha: float = 1.0
    per_class: bool = True
    normalize: str | None = None
    h1_max_points: int = 150
    phdim_draws: int = 3
    sw_directions: int = 50
    functional_max_neurons: int = FUNCTIONAL_MAX_NEURONS
    mapper_intervals: int = MAPPER_INTERVALS
    mapper_gain: float = MAPPER_GAIN
    mapper_max_points: int = MAPPER_MAX_POINTS

    def __post_init__(self) -> None:
        metrics = tuple(self.metrics) if not isinstance(self.metrics, str) else (self.metrics,)
        check(
            len(metrics) > 0 and set(metrics) <= set(METRICS),
            f"metrics must be a non-empty subset of {METRICS}, got {self.metrics!r}",
        )
        dims = tuple(sorted(set(self.homology_dims)))
        check(dims in ((0,), (0, 1)), f"homology_dims must be (0,) or (0, 1), got {dims!r}")
        check(isinstance(self.per_class, bool), f"per_class must be a bool, got {self.per_class!r}")
        check(
            self.normalize in (None, "minmax"),
            f'normalize must be None or "minmax", got {self.normalize!r}',
        )
        check(
            is_positive_int(self.h1_max_points) and self.h1_max_points >= 3,
            f"h1_max_points must be an int >= 3, got {self.h1_max_points!r}",
        )
        check(
            is_positive_int(self.phdim_draws),
            f"phdim_draws must be a positive int, got {self.phdim_draws!r}",
        )
        check(
            is_positive_int(self.sw_directions) and self.sw_directions >= 2,
            f"sw_directions must be an int >= 2, got {self.sw_directions!r}",
        )
        check(
            is_positive_int(self.functional_max_neurons) and self.functional_max_neurons >= 4,
            f"functional_max_neurons must be an int >= 4, got {self.functional_max_neurons!r}",
        )
        check(
            is_positive_int(self.mapper_intervals),
            f"mapper_intervals must be a positive int, got {self.mapper_intervals!r}",
        )
        check(
            isinstance(self.mapper_gain, (int, float)) and 0 < self.mapper_gain <= 0.5,
            f"mapper_gain must be in (0, 0.5], got {self.mapper_gain!r}",
        )
        check(
            is_positive_int(self.mapper_max_points) and self.mapper_max_points >= 2,
            f"mapper_max_points must be an int >= 2, got {self.mapper_max_points!r}",
        )
        object.__setattr__(self, "metrics", metrics)
        object.__setattr__(self, "homology_dims", dims)
        object.__setattr__(self, "alpha", as_positive(self.alpha, "alpha"))
        for group in selected_groups(self):
            group.check(self)


def summary_config(
    config: SummaryConfig | None,
    options: dict[str, Any],
    owner: str = "measure",
    others: Sequence[str] = (),
) -> SummaryConfig:
    """``config``, or one built from keyword ``options``: what every entry point that takes
    ``config=`` or the summary options as keywords does. An unknown keyword is a ``TypeError``
    that lists the summary options and the ``others`` the entry point takes itself."""
    if config is not None:
        if options:
            raise TypeError(f"{owner}: give config= or summary options {sorted(options)}, not both")
        check(
            isinstance(config, SummaryConfig),
            f"{owner}: config must be a SummaryConfig, got {type(config).__name__}",
        )
        return config
    known = [f.name for f in fields(SummaryConfig)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        own = f" and its own options are {list(others)}" if others else ""
        raise TypeError(
            f"{owner} got unexpected keyword argument(s) {unknown}: the summary options are "
            f"{known}{own}"
        )
    return SummaryConfig(**options)

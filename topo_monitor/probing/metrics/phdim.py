"""The ``"phdim"`` group: the persistent-homology dimension of each class cloud, with its R²."""

from __future__ import annotations

from typing import TYPE_CHECKING

from topo_monitor.probing.metrics.base import Context, MetricGroup
from topo_monitor.tda.dimension import MIN_POINTS, PHDimResult, ph_dimensions

if TYPE_CHECKING:
    from topo_monitor.probing.config import SummaryConfig

__all__ = ["PHdimGroup"]

PHDIM = "PHdim"


class PHdimGroup(MetricGroup):
    """PHdim (Schweinhart; Magai & Ayzenberg) with ``PHdim_r2``; a class whose fit is degenerate
    is NaN with its cause (and left out of the block's class mean)."""

    name = "phdim"
    order = 0

    def block_metrics(self, config: SummaryConfig) -> list[str]:
        return [PHDIM, "PHdim_r2"]

    def topology_features(self, config: SummaryConfig) -> list[str]:
        return [PHDIM]

    def profiled(self, metric: str) -> bool:
        return metric == PHDIM

    def compute(self, context: Context) -> None:
        if not context.groups:
            return
        # The H0 bars, when another group needs them, give every whole cloud's MST length.
        whole = (
            [context.h0_bars[b, k][:, 1].sum() for b, k, _ in context.groups]
            if context.wants_h0
            else None
        )
        with context.timed("phdim"):
            fits = ph_dimensions(
                [X for _, _, X in context.groups],
                n_draws=context.config.phdim_draws,
                generator=context.generator,
                whole_lengths=whole,
            )
        for (b, k, _), fit in zip(context.groups, fits, strict=True):
            context.store(PHDIM, b, k, fit.value)
            context.store("PHdim_r2", b, k, fit.r2)
            if fit.reason is not None:
                context.problem(b, PHDIM, _cause(fit), fit.reason, k)


def _cause(fit: PHDimResult) -> str:
    """The kind of a degenerate fit, read from its data (not its words)."""
    if len(fit.sizes) == 0 or int(fit.sizes.max()) < MIN_POINTS:
        return "too_few_points"
    if len(fit.sizes) < 3:
        return "too_few_sizes"
    if fit.slope == fit.slope and fit.slope >= 1:
        return "slope_at_least_one"
    return "zero_mst_length"

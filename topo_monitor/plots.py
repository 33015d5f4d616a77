"""Matplotlib figures of topology records: depth profiles and the layer-distance heatmap."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from topo_monitor.summary import EpochRecord

__all__ = [
    "METRIC_LABELS",
    "adversarial_curves",
    "adversarial_depth_profile",
    "depth_profile",
    "sw_heatmap",
]

DPI = 80
"""Enough for TensorBoard's image panel; rendering cost grows with the pixel count."""

METRIC_LABELS = {
    "E0_1": "$E^0_1$ (MST length)",
    "E0_1_scaled": "scale-free $E^0_1$ (÷ RMS radius)",
    "E0_mean_lifespan": "mean H0 lifespan",
    "E1_1": "$E^1_1$",
    "E1_1_scaled": "scale-free $E^1_1$ (÷ RMS radius)",
    "E1_mean_lifespan": "mean H1 lifespan",
    "PHdim": "PHdim",
    "PHdim_r2": "$R^2$ of the PHdim fit",
}


def depth_profile(records: Sequence[EpochRecord], metric: str) -> Figure:
    """One curve per epoch of ``metric`` (class-averaged) against relative depth.

    Later epochs are drawn darker, so "topological simplification" during training shows as the
    curves sinking with depth as the colour darkens (Magai & Ayzenberg 2022, Fig. 3).
    Figures are built without pyplot, so nothing global is touched in the training process.
    """
    fig = Figure(figsize=(6.4, 4.0), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    cmap = colormaps["viridis_r"]
    shown = [r for r in records if metric in r.values]
    for i, record in enumerate(shown):
        colour = cmap(0.15 + 0.85 * i / max(len(shown) - 1, 1))
        ax.plot(
            record.depths,
            record.values[metric],
            "o-",
            ms=3,
            color=colour,
            label=f"epoch {record.epoch}",
        )
    if shown:
        last = shown[-1]
        ax.set_xticks(
            last.depths, [f"{b}\n{d:.2f}" for b, d in zip(last.blocks, last.depths, strict=True)]
        )
        ax.tick_params(axis="x", labelsize=7, labelrotation=45)
    ax.set_xlabel("block (relative depth)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.set_title(f"{metric} through the network", fontsize=10)
    ax.grid(alpha=0.3)
    if 0 < len(shown) <= 12:
        ax.legend(fontsize=7, ncols=2)
    elif shown:
        norm = Normalize(shown[0].epoch, shown[-1].epoch)
        fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="epoch")
    return fig


def sw_heatmap(record: EpochRecord) -> Figure:
    """The L×L sliced-Wasserstein distances between the blocks' diagrams (paper 001, Fig. 5)."""
    matrix = np.array(record.sw, dtype=float)
    fig = Figure(figsize=(5.2, 4.6), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap="magma")
    ticks = np.arange(len(record.blocks))
    ax.set_xticks(ticks, record.blocks, rotation=90, fontsize=7)
    ax.set_yticks(ticks, record.blocks, fontsize=7)
    ax.set_title(f"sliced Wasserstein between blocks, epoch {record.epoch}", fontsize=10)
    fig.colorbar(image, ax=ax, label="SW of scale-free H0 diagrams")
    return fig


def adversarial_depth_profile(rows: Sequence[dict], attack: str, metric: str = "E0_1") -> Figure:
    """``metric`` of the adversarial examples against relative depth, one curve per ε
    (input space at depth 0; Magai & Ayzenberg 2022, Fig. 7)."""
    fig = Figure(figsize=(6.4, 4.0), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    chosen = [r for r in rows if r["attack"] == attack]
    budgets = sorted({r["eps"] for r in chosen})
    cmap = colormaps["plasma"]
    for i, eps in enumerate(budgets):
        curve = [r for r in chosen if r["eps"] == eps]
        success = curve[0]["success_rate"]
        ax.plot(
            [r["depth"] for r in curve],
            [r.get(metric, np.nan) for r in curve],
            "o-",
            ms=3,
            color=cmap(0.85 * i / max(len(budgets) - 1, 1)),
            label=f"ε={eps:g} (success {success:.0%})",
        )
    if chosen:
        first = [r for r in chosen if r["eps"] == budgets[0]]
        ax.set_xticks([r["depth"] for r in first], [r["block"] for r in first])
        ax.tick_params(axis="x", labelsize=7, labelrotation=45)
    ax.set_xlabel("block (relative depth; input space at 0)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.set_title(f"{attack}: {metric} of adversarial examples", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def adversarial_curves(rows: Sequence[dict]) -> Figure:
    """Success rate and input-space PHdim of the adversarial examples against ε, per attack
    (Magai & Ayzenberg 2022, Fig. 8)."""
    fig = Figure(figsize=(8.0, 3.4), dpi=DPI, layout="constrained")
    left, right = fig.subplots(1, 2)
    inputs = [r for r in rows if r["depth"] == 0]
    for attack in dict.fromkeys(r["attack"] for r in inputs):
        curve = sorted((r for r in inputs if r["attack"] == attack), key=lambda r: r["eps"])
        budgets = [r["eps"] for r in curve]
        left.plot(budgets, [r["success_rate"] for r in curve], "o-", ms=3, label=attack)
        right.plot(budgets, [r.get("PHdim", np.nan) for r in curve], "o-", ms=3, label=attack)
    left.set(xlabel="ε", ylabel="attack success rate", title="success")
    right.set(xlabel="ε", ylabel="PHdim of X' (input space)", title="input-space PHdim")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig

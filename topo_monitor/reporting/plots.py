"""Matplotlib figures of topology records: depth profiles, the layer-distance heatmap, the
functional graph's Betti curves and a block's Mapper graph."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import text_to_path

from topo_monitor.probing.metrics import is_profiled
from topo_monitor.probing.problems import NETWORK
from topo_monitor.probing.record import TopologyRecord

__all__ = [
    "METRIC_LABELS",
    "adversarial_curves",
    "adversarial_depth_profile",
    "adversarial_figures",
    "betti_curves",
    "depth_profile",
    "mapper_figure",
    "sw_heatmap",
    "topology_figures",
]

DPI = 80
"""Enough for TensorBoard's image panel; rendering cost grows with the pixel count."""
SMALL_FONTSIZE = 7
LABEL_CHARS = 18
"""Block names longer than this are shown by their end in tick labels."""
DEPTH_PAD = 0.03
"""Depth profiles span the blocks' relative depths plus this on each side, set before drawing
so that the margins can be sized then."""

BETTI_DENSITY = "functional_edge_density"
"""The record curve holding the density grid of the functional graph's Betti curves."""


METRIC_LABELS = {
    "E0_1": "$E^0_1$ (MST length)",
    "E0_1_scaled": "scale-free $E^0_1$ (÷ RMS radius)",
    "E0_mean_lifespan": "mean H0 lifespan",
    "E1_1": "$E^1_1$",
    "E1_1_scaled": "scale-free $E^1_1$ (÷ RMS radius)",
    "E1_mean_lifespan": "mean H1 lifespan",
    "PHdim": "PHdim",
    "PHdim_r2": "$R^2$ of the PHdim fit",
    "mapper_point_purity": "Mapper point purity (1 = no node mixes classes)",
}


def topology_figures(
    history: Sequence[TopologyRecord], prefix: str = "topology"
) -> dict[str, Figure]:
    """What :class:`~topo_monitor.TopologyMonitor` draws, by tag (``<prefix>_figures/...``): a
    depth profile of every scale-free metric over the whole history, the newest record's SW
    heatmap, and with the functional graph, its Betti curves over the whole history."""
    newest = history[-1]
    folder = f"{prefix}_figures"
    figures = {
        f"{folder}/depth_{metric}": depth_profile(history, metric)
        for metric in newest.values
        if is_profiled(metric)  # scale-free: raw E would compare the blocks' scales
    }
    if newest.sw is not None:
        figures[f"{folder}/sw_heatmap"] = sw_heatmap(newest)
    if BETTI_DENSITY in newest.curves:
        figures[f"{folder}/functional_betti_curves"] = betti_curves(history)
    if newest.mapper_graphs:
        figures[f"{folder}/mapper_graph"] = mapper_figure(newest)
    return figures


def adversarial_figures(rows: Sequence[dict]) -> dict[str, Figure]:
    """What :class:`~topo_monitor.AdversarialTopologyMonitor` draws, by tag: per attack, the
    scale-free E^0_1 of its examples against depth; and success rate and input-space PHdim
    against ε."""
    figures = {
        f"adversarial/{attack}/depth_E0_1_scaled": adversarial_depth_profile(
            rows, attack, "E0_1_scaled"
        )
        for attack in dict.fromkeys(r["attack"] for r in rows)
    }
    figures["adversarial/curves"] = adversarial_curves(rows)
    return figures


def depth_profile(records: Sequence[TopologyRecord], metric: str) -> Figure:
    """One curve per epoch of ``metric`` (class-averaged) against relative depth.

    Later epochs are drawn darker, so "topological simplification" during training shows as the
    curves sinking with depth as the colour darkens (Magai & Ayzenberg 2022, Fig. 3). The legend
    names the first and the last epoch only: one entry per epoch costs more to draw than the
    curves, and the colour order says the rest.
    Figures are built without pyplot, so nothing global is touched in the training process.
    """
    shown = [r for r in records if metric in r.values]
    blocks, depths = (shown[-1].blocks, shown[-1].depths) if shown else ([], [])
    fig, ax = _depth_axes(
        [f"{_short(b)}\n{d:.2f}" for b, d in zip(blocks, depths, strict=True)], depths
    )
    _by_epoch(ax, [(r.depths, r.values[metric]) for r in shown], shown, "o-", ms=3)
    missing = _missing_note(shown[-1], metric) if shown else None
    if missing:
        _note(ax, missing)
    ax.set_xlabel("block (relative depth)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.set_title(f"{metric} through the network", fontsize=10)
    ax.grid(alpha=0.3)
    return fig


def betti_curves(records: Sequence[TopologyRecord]) -> Figure:
    """β1 and β2 of the functional graph against edge density, one curve per epoch.

    Later epochs are drawn darker, as in :func:`depth_profile` and Corneanu et al.'s figures:
    learning to generalize should show as cavities appearing (β2) and β1's peak moving to lower
    densities; memorizing as the peaks moving back to higher densities.
    """
    shown = [r for r in records if BETTI_DENSITY in r.curves]
    # Up to the density where the last cavity of any epoch closes (graphs fill up well before
    # every pair is joined), in tenths.
    alive = [
        density
        for r in shown
        for k in (1, 2)
        for density, beta in zip(
            r.curves[BETTI_DENSITY], r.curves[f"functional_betti_H{k}"], strict=True
        )
        if beta > 0
    ]
    right = min(1.0, math.ceil(10 * max(alive, default=0.9) + 0.5) / 10)
    fig = Figure(figsize=(8.0, 3.4), dpi=DPI)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.9, wspace=0.22)
    for k, ax in enumerate(fig.subplots(1, 2), start=1):
        _by_epoch(
            ax,
            [(r.curves[BETTI_DENSITY], r.curves[f"functional_betti_H{k}"]) for r in shown],
            shown,
            "-",
            lw=1.2,
        )
        ax.set_xlim(0, right)
        ax.set_xlabel("edge density (fraction of neuron pairs joined)")
        ax.set_ylabel(f"$\\beta_{k}$ ({k}-D cavities)")
        ax.grid(alpha=0.3)
    if shown:
        newest = shown[-1]
        neurons = newest.network.get("functional_neurons", math.nan)
        fig.axes[0].set_title(f"functional graph of {neurons:.0f} neurons: $\\beta_1$", fontsize=10)
        fig.axes[1].set_title("$\\beta_2$", fontsize=10)
        failed = [p.reason for p in newest.problems if p.block == NETWORK]
        if failed:
            _note(fig.axes[0], f"epoch {newest.epoch}: {failed[0]}")
    return fig


def _by_epoch(
    ax: Axes,
    curves: Sequence[tuple[Sequence[float], Sequence[float]]],
    records: Sequence[TopologyRecord],
    style: str,
    **options: float,
) -> None:
    """One (x, y) curve per record, later darker; the legend names the first and the last only:
    one entry per epoch costs more to draw than the curves, and the colour order says the rest."""
    cmap = colormaps["viridis_r"]
    lines = []
    for i, (x, y) in enumerate(curves):
        colour = cmap(0.15 + 0.85 * i / max(len(curves) - 1, 1))
        lines += ax.plot(x, y, style, color=colour, **options)
    if records:
        ends = [0, len(records) - 1] if len(records) > 1 else [0]
        # Several checks in one epoch (a step cadence): the curves are told apart by step.
        by_step = len({r.epoch for r in records}) < len(records)
        ax.legend(
            [lines[i] for i in ends],
            [_when(records[i], i, by_step) for i in ends],
            fontsize=SMALL_FONTSIZE,
            title="darker = later" if len(records) > 2 else None,
            title_fontsize=SMALL_FONTSIZE,
        )


def _note(ax: Axes, text: str) -> None:
    """A boxed message in the middle of the axes (why a curve is missing)."""
    ax.text(
        0.5,
        0.5,
        text,
        transform=ax.transAxes,
        ha="center",
        va="center",
        wrap=True,
        fontsize=SMALL_FONTSIZE,
        bbox={"facecolor": "white", "edgecolor": "0.6"},
    )


def _missing_note(record: TopologyRecord, metric: str) -> str | None:
    """What to write on a figure whose newest curve has blocks without a value, and why."""
    values = np.asarray(record.values[metric], dtype=float)
    if np.isfinite(values).all():
        return None
    causes = sorted({p.reason for p in record.problems if p.covers(metric)})
    where = (
        "any block"
        if not np.isfinite(values).any()
        else f"{int((~np.isfinite(values)).sum())} block(s)"
    )
    because = "; ".join(causes[:2]) if causes else "see record.problems"
    return f"{metric} could not be computed for {where} at epoch {record.epoch}: {because}"


def sw_heatmap(record: TopologyRecord) -> Figure:
    """The L×L sliced-Wasserstein distances between the blocks' diagrams (paper 001, Fig. 5)."""
    matrix = np.array(record.sw, dtype=float)
    labels = [_short(b) for b in record.blocks]
    fig, ax = _figure(
        (5.2, 4.6), bottom_labels=labels, bottom_angle=90, left_labels=labels, right=0.76, pad=0.2
    )
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap="magma", aspect="auto")
    ticks = np.arange(len(labels))
    _bottom_ticks(ax, ticks, labels, 90)
    ax.set_yticks(ticks, labels, fontsize=SMALL_FONTSIZE)
    title = "sliced Wasserstein between blocks"
    ax.set_title(title if record.epoch is None else f"{title}, epoch {record.epoch}", fontsize=10)
    box = ax.get_position()
    bar = fig.add_axes((box.x1 + 0.03, box.y0, 0.025, box.height))
    fig.colorbar(image, cax=bar, label="SW of scale-free H0 diagrams")
    return fig


def adversarial_depth_profile(rows: Sequence[dict], attack: str, metric: str = "E0_1") -> Figure:
    """``metric`` of the adversarial examples against relative depth, one curve per ε
    (input space at depth 0; Magai & Ayzenberg 2022, Fig. 7)."""
    chosen = [r for r in rows if r["attack"] == attack]
    budgets = sorted({r["eps"] for r in chosen})
    first = [r for r in chosen if r["eps"] == budgets[0]] if chosen else []
    fig, ax = _depth_axes([_short(r["block"]) for r in first], [r["depth"] for r in first])
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
    ax.set_xlabel("block (relative depth; input space at 0)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.set_title(f"{attack}: {metric} of adversarial examples", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=SMALL_FONTSIZE)
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
        ax.legend(fontsize=SMALL_FONTSIZE)
    return fig


def mapper_figure(record: TopologyRecord, block: str | None = None) -> Figure:
    """A block's Mapper graph (default: the last hidden block, else the output): each node at its
    points' mean ℓ2 norm (the filter) across, nodes of the same cover interval stacked up;
    coloured by their majority class, area proportional to their points, ringed in black when
    they mix classes (PNNL's seed paper, Fig. 3)."""
    graphs = record.mapper_graphs or {}
    hidden = [b for b in record.blocks[:-1] if b in graphs]
    block = block if block is not None else (hidden[-1] if hidden else record.blocks[-1])
    if block not in graphs:
        raise ValueError(f"the record has no Mapper graph of block {block!r}: {sorted(graphs)}")
    graph = graphs[block]
    x = graph.node_filter
    y = np.zeros(len(x))
    for interval in np.unique(graph.node_interval):  # stacked, by class, centred on 0
        members = np.flatnonzero(graph.node_interval == interval)
        members = members[np.argsort(graph.node_class[members], kind="stable")]
        y[members] = np.arange(len(members)) - (len(members) - 1) / 2
    fig, ax = _figure((6.4, 4.4), left=0.1, right=0.8)
    for i, j in graph.edges:
        ax.plot(x[[i, j]], y[[i, j]], "-", color="0.7", lw=0.8, zorder=1)
    classes = record.classes or sorted(set(graph.node_class.tolist()))
    cmap = colormaps["tab10" if len(classes) <= 10 else "tab20"]
    colour = {c: cmap(i % cmap.N) for i, c in enumerate(classes)}
    sizes = np.array([len(m) for m in graph.nodes], dtype=float)
    ax.scatter(
        x,
        y,
        s=15 + 400 * sizes / max(sizes.max(initial=0), 1),
        c=[colour.get(c, "0.5") for c in graph.node_class],
        edgecolors=["black" if p < 1 else "white" for p in graph.node_purity],
        linewidths=1.2,
        zorder=2,
    )
    shown = [c for c in classes if c in set(graph.node_class.tolist())]
    handles = [
        ax.scatter([], [], s=30, color=colour[c], edgecolors="white", label=f"class {c}")
        for c in shown
    ]
    handles.append(ax.scatter([], [], s=30, color="0.85", edgecolors="black", label="mixed"))
    ax.legend(
        handles=handles,
        fontsize=SMALL_FONTSIZE,
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
        title="majority class",
        title_fontsize=SMALL_FONTSIZE,
    )
    ax.set_yticks([])
    ax.set_ylabel("the nodes of each cover interval, side by side")
    ax.set_xlabel("mean ℓ2 norm of the node's activations (the Mapper filter)")
    when = "" if record.epoch is None else f", epoch {record.epoch}"
    ax.set_title(
        f"Mapper graph of {_short(block)}{when}: {len(graph.nodes)} nodes, purity "
        f"{graph.mean_node_purity:.2f} (nodes), {graph.mean_point_purity:.2f} (points)",
        fontsize=9,
    )
    ax.grid(alpha=0.3, axis="x")
    return fig


def _when(record: TopologyRecord, index: int, by_step: bool = False) -> str:
    if by_step and record.step is not None:
        return f"step {record.step}"
    return f"epoch {record.epoch}" if record.epoch is not None else f"record {index}"


def _short(name: str) -> str:
    """Block names as tick labels: long dotted paths keep their informative end."""
    return name if len(name) <= LABEL_CHARS else "…" + name[-(LABEL_CHARS - 1) :]


def _label_extent(labels: Sequence[str], angle: float) -> float:
    """Inches that tick labels at ``angle`` degrees to their axis take across it: the longest
    line measured with the font's metrics (no drawing), 1.2 em per line."""
    if not labels:
        return 0.0
    font = FontProperties(size=SMALL_FONTSIZE)
    lines = {line for label in labels for line in label.split("\n")}
    width = max(text_to_path.get_text_width_height_descent(x, font, False)[0] for x in lines)
    height = 1.2 * SMALL_FONTSIZE * max(label.count("\n") + 1 for label in labels)
    rad = np.deg2rad(angle)
    return (width * np.sin(rad) + height * np.cos(rad)) / 72


def _figure(
    size: tuple[float, float],
    *,
    bottom_labels: Sequence[str] = (),
    bottom_angle: float = 0,
    left_labels: Sequence[str] = (),
    left: float = 0.0,
    right: float = 0.97,
    pad: float = 0.45,
    first_tick: float | None = None,
) -> tuple[Figure, Axes]:
    """A one-axes figure with margins sized from its tick labels.

    Matplotlib's layout engines measure every text artist on each draw, which costs as much
    as drawing the plot; the monitor draws these figures during training, so the margins come
    from measuring the tick labels alone (names are shortened to at most LABEL_CHARS).
    ``first_tick``: where the first bottom label's tick sits, as a fraction of the axes width;
    a label turned less than 90° reaches left of its tick, and must stay in the figure.
    """
    width, height = size
    fig = Figure(figsize=size, dpi=DPI)
    bottom = (_label_extent(bottom_labels, bottom_angle) + pad) / height
    left_in = max(left * width, _label_extent(left_labels, 90) + pad)
    if bottom_labels and first_tick is not None and first_tick < 1:
        spill = _label_extent(bottom_labels[:1], 90 - bottom_angle)
        # the tick is at left_in + first_tick * (right * width - left_in), which must be >= spill
        left_in = max(left_in, (spill - first_tick * right * width) / (1 - first_tick))
    fig.subplots_adjust(left=left_in / width, right=right, bottom=bottom, top=1 - 0.3 / height)
    return fig, fig.subplots()


def _depth_axes(labels: Sequence[str], depths: Sequence[float]) -> tuple[Figure, Axes]:
    """A figure for values against relative depth, ticks named after the blocks."""
    low, high = (depths[0] if len(depths) else 0.0) - DEPTH_PAD, 1 + DEPTH_PAD
    fig, ax = _figure(
        (6.4, 4.0),
        bottom_labels=labels,
        bottom_angle=45,
        left=0.12,
        first_tick=(depths[0] - low) / (high - low) if len(depths) else None,
    )
    ax.set_xlim(low, high)
    # Short y tick labels whatever the values (×10^k above the axis), so the left margin holds.
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
    if len(depths):
        _bottom_ticks(ax, depths, labels, 45)
    return fig, ax


def _bottom_ticks(
    ax: Axes, positions: Sequence[float], labels: Sequence[str], angle: float
) -> None:
    ax.set_xticks(positions, labels)
    ax.tick_params(axis="x", labelsize=SMALL_FONTSIZE)
    for text in ax.get_xticklabels():
        text.set(
            rotation=angle, ha="right", va="top" if angle < 90 else "center", rotation_mode="anchor"
        )

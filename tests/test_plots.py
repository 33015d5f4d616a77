"""Figures: the data drawn is the data given, and no text falls outside the image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg

from topo_monitor import TopologyRecord, measure
from topo_monitor.reporting.plots import (
    LABEL_CHARS,
    adversarial_depth_profile,
    depth_profile,
    sw_heatmap,
    topology_figures,
)

SHORT = ["layer1.0", "layer1.1", "layer2.0", "output"]
LONG = [f"encoder.layers.encoder_layer_{i}.mlp" for i in range(11)] + ["heads.head", "output"]
WIDE = [f"WWWWWWWWWWWWWWWW{i}" for i in range(30)] + ["output"]  # the widest glyphs, many blocks


def records(blocks: list[str], epochs: int) -> list[TopologyRecord]:
    rng = np.random.default_rng(0)
    L = len(blocks)
    return [
        TopologyRecord(
            epoch=e,
            step=10 * e,
            blocks=blocks,
            depths=[(i + 1) / L for i in range(L)],
            values={"E0_1": list(rng.random(L)), "PHdim": list(1 + 9 * rng.random(L))},
            sw=(lambda a: (a + a.T) * (1 - np.eye(L)))(rng.random((L, L))).tolist(),
        )
        for e in range(epochs)
    ]


def assert_text_inside(fig) -> None:
    """Everything drawn (tick labels, titles, legend, colour bar) lies within the image."""
    canvas = FigureCanvasAgg(fig)  # what TensorBoard's add_figure renders with
    canvas.draw()
    drawn = fig.get_tightbbox(canvas.get_renderer())  # inches, drawn artists only
    width, height = fig.get_size_inches()
    tolerance = 1 / fig.dpi
    assert drawn.x0 >= -tolerance and drawn.y0 >= -tolerance, f"cut at the left/bottom: {drawn}"
    assert drawn.x1 <= width + tolerance and drawn.y1 <= height + tolerance, (
        f"cut at the right/top: {drawn} in a {width} x {height} in figure"
    )


@pytest.mark.parametrize("blocks", [SHORT, LONG, WIDE], ids=["short", "long", "wide"])
def test_depth_profile_draws_every_epoch_inside_the_image(blocks: list[str]) -> None:
    history = records(blocks, 7)
    fig = depth_profile(history, "PHdim")
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert len(lines) == len(history)
    for line, record in zip(lines, history, strict=True):
        np.testing.assert_array_equal(line.get_xdata(), record.depths)
        np.testing.assert_array_equal(line.get_ydata(), record.values["PHdim"])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["epoch 0", "epoch 6"]
    ticks = [t.get_text().split("\n")[0] for t in ax.get_xticklabels()]
    assert ticks == [b if len(b) <= LABEL_CHARS else "…" + b[-(LABEL_CHARS - 1) :] for b in blocks]
    assert_text_inside(fig)


def test_depth_profile_of_one_epoch_and_of_a_missing_metric() -> None:
    fig = depth_profile(records(SHORT, 1), "E0_1")
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["epoch 0"]
    assert_text_inside(fig)
    empty = depth_profile(records(SHORT, 2), "E1_1")
    assert empty.axes[0].get_lines() == []


@pytest.mark.parametrize("blocks", [SHORT, LONG, WIDE], ids=["short", "long", "wide"])
def test_sw_heatmap_shows_the_matrix_inside_the_image(blocks: list[str]) -> None:
    record = records(blocks, 1)[0]
    record.sw[0][1] = record.sw[1][0] = float("nan")
    fig = sw_heatmap(record)
    image = fig.axes[0].get_images()[0].get_array()
    np.testing.assert_array_equal(image.data[~image.mask], np.array(record.sw)[~image.mask])
    assert image.mask[0, 1] and image.mask[1, 0] and image.mask.sum() == 2
    assert_text_inside(fig)


def test_adversarial_depth_profile_inside_the_image() -> None:
    rows = [
        {"attack": "PGD", "eps": eps, "success_rate": 0.5, "block": b, "depth": d, "E0_1": 1.0}
        for eps in (0.01, 0.03)
        for b, d in zip(["input", *LONG], np.linspace(0, 1, len(LONG) + 1), strict=True)
    ]
    fig = adversarial_depth_profile(rows, "PGD")
    assert len(fig.axes[0].get_lines()) == 2
    assert_text_inside(fig)


@pytest.mark.parametrize("case", ["one block", "all NaN", "tiny", "huge"])
def test_sw_heatmap_edge_cases_stay_inside_the_image(case: str) -> None:
    blocks = ["output"] if case == "one block" else SHORT
    record = records(blocks, 1)[0]
    L = len(blocks)
    if case == "all NaN":
        record.sw = [[float("nan")] * L for _ in range(L)]
    elif case in ("tiny", "huge"):
        factor = 1e-7 if case == "tiny" else 1e5
        record.sw = (factor * np.array(record.sw)).tolist()
    assert_text_inside(sw_heatmap(record))


@pytest.mark.parametrize("scale", [1e-7, -3e4, 1e9])
def test_depth_profile_of_extreme_values_stays_inside_the_image(scale: float) -> None:
    history = records(LONG, 3)
    for record in history:
        record.values["PHdim"] = (scale * (1 + np.array(record.values["PHdim"]))).tolist()
    assert_text_inside(depth_profile(history, "PHdim"))


def test_a_metric_that_could_not_be_computed_is_said_on_its_figure(tmp_path) -> None:
    import torch

    from topo_monitor import measure

    x, y = torch.randn(1000, 8), torch.arange(200).repeat_interleave(5)  # 5 images per class
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 200))
    with pytest.warns(UserWarning, match="too few points"):
        record = measure(model, (x, y), epoch=3)
    texts = [t.get_text() for t in depth_profile([record], "PHdim").axes[0].texts]
    assert texts == [
        "PHdim could not be computed for any block at epoch 3: PHdim: too few points (5 < 20)"
    ]
    assert len(depth_profile([record], "E0_1_scaled").axes[0].texts) == 0
    fig = depth_profile([record], "PHdim")
    FigureCanvasAgg(fig).print_png(str(tmp_path / "phdim.png"))  # draws without error


def test_betti_curves_draw_beta1_and_beta2_of_every_epoch_against_density() -> None:
    import torch

    from topo_monitor import SummaryConfig
    from topo_monitor.probing.summary import summarize
    from topo_monitor.reporting.plots import topology_figures

    rng = np.random.default_rng(0)
    config = SummaryConfig(metrics=("e0", "functional"), functional_max_neurons=20)
    history = []
    for epoch in range(4):
        cloud = torch.tensor(np.maximum(rng.standard_normal((120, 25)) @ rng.random((25, 25)), 0))
        history.append(
            summarize({"block": cloud, "output": cloud[:, :5]}, torch.zeros(120), config)
        )
        history[-1].epoch = epoch
    figures = topology_figures(history)
    assert "topology_figures/functional_betti_curves" in figures
    assert "topology_figures/functional_betti_curves" not in topology_figures(records(SHORT, 2))
    fig = figures["topology_figures/functional_betti_curves"]
    for k, ax in enumerate(fig.axes, start=1):
        lines = ax.get_lines()
        assert len(lines) == len(history)
        for line, record in zip(lines, history, strict=True):
            np.testing.assert_array_equal(
                line.get_xdata(), record.curves["functional_edge_density"]
            )
            np.testing.assert_array_equal(line.get_ydata(), record.curves[f"functional_betti_H{k}"])
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["epoch 0", "epoch 3"]
        # later epochs darker: the colours' luminance falls
        luminance = [np.dot(line.get_color()[:3], [0.299, 0.587, 0.114]) for line in lines]
        assert luminance == sorted(luminance, reverse=True)
    assert "20 neurons" in fig.axes[0].get_title()
    assert_text_inside(fig)


@pytest.mark.parametrize(
    ("options", "profiles"),
    [
        ({}, {"E0_1_scaled", "PHdim"}),
        ({"alpha": 2.0, "homology_dims": (0, 1)}, {"E0_2_scaled", "E1_2_scaled", "PHdim"}),
    ],
)
def test_the_depth_profiles_are_the_scale_free_metrics_the_record_holds(options, profiles):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 4, generator=g), torch.arange(60) % 2
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    record = measure(model, (x, y), epoch=0, **options)
    tags = set(topology_figures([record]))
    assert {t.removeprefix("topology_figures/depth_") for t in tags if "depth_" in t} == profiles

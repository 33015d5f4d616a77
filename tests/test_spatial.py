"""Spatial point clouds (Purvine et al.): several points per input, their labels, the cap."""

import math

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from helpers import quiet_trainer, reduce_output
from topo_monitor import SummaryConfig, TopologyMonitor, measure
from topo_monitor.probing import OUTPUT, ProbeSharding, summarize
from topo_monitor.probing.reduction import RANDOM_POSITIONS, Reducer
from topo_monitor.tda.geometry import davies_bouldin
from topo_monitor.tda.persistence import h0_death_times, total_persistence


def labelled_positions(B: int, H: int, W: int) -> torch.Tensor:
    """``(B, 3, H, W)``: the vector at position (h, w) of input b is (b, h, w)."""
    b, h, w = torch.meshgrid(torch.arange(B), torch.arange(H), torch.arange(W), indexing="ij")
    return torch.stack([b, h, w], dim=1).float()


def e0(cloud: torch.Tensor) -> float:
    deaths = h0_death_times(cloud).double().numpy()
    return total_persistence(np.column_stack([np.zeros_like(deaths), deaths]), 1.0)


class TinyCNN(pl.LightningModule):
    """Two 3x3 convolutions, global average pooling, a linear head."""

    def __init__(self, channels: int = 6) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(channels, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def images(n: int, size: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random one-channel images, class 1 brighter in its top half."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 1, size, size, generator=g)
    x[y == 1, :, : size // 2] += 1.5
    return x, y


# ---------------------------------------------------------------------------- the reductions


def test_spatial_rows_are_every_position_input_major_then_row_major():
    x = labelled_positions(2, 2, 3)
    expected = [[b, h, w] for b in range(2) for h in range(2) for w in range(3)]
    torch.testing.assert_close(reduce_output(x, "spatial"), torch.tensor(expected).float())
    torch.testing.assert_close(reduce_output(x, "spatial"), x.permute(0, 2, 3, 1).reshape(-1, 3))


def test_spatial_points_of_sequences_are_their_tokens():
    x = torch.randn(2, 5, 4)  # (B, T, C)
    torch.testing.assert_close(reduce_output(x, "spatial"), x.reshape(10, 4))
    torch.testing.assert_close(
        reduce_output(x.transpose(1, 2), "spatial", channel_dim=1), x.reshape(10, 4)
    )


@pytest.mark.parametrize("reduction", ["spatial", "spatial_random", "spatial_top1", "spatial_top5"])
def test_dense_outputs_keep_one_point_per_input(reduction):
    x = torch.randn(4, 6)
    torch.testing.assert_close(reduce_output(x, reduction), x)


def test_top1_and_top5_pick_the_largest_norm_positions_by_decreasing_norm():
    x = 0.01 * torch.randn(2, 2, 3, 3)
    chosen = {  # per input, five (position, vector) by decreasing norm: 7, 6, 5, 4, 3
        0: [
            ((2, 1), [0, -7]),
            ((1, 2), [6, 0]),
            ((0, 0), [3, 4]),
            ((1, 0), [0, 4]),
            ((2, 0), [3, 0]),
        ],
        1: [
            ((0, 1), [-7, 0]),
            ((2, 2), [0, 6]),
            ((1, 1), [-3, -4]),
            ((0, 0), [4, 0]),
            ((2, 1), [0, -3]),
        ],
    }
    for b, picks in chosen.items():
        for (h, w), vector in picks:
            x[b, :, h, w] = torch.tensor(vector, dtype=torch.float32)
    expected = torch.tensor([vector for b in (0, 1) for _, vector in chosen[b]]).float()
    torch.testing.assert_close(reduce_output(x, "spatial_top5"), expected)
    torch.testing.assert_close(reduce_output(x, "spatial_top1"), expected[[0, 5]])
    torch.testing.assert_close(reduce_output(x, "spatial_top1"), reduce_output(x, "top_l2"))


def test_random_positions_are_distinct_fixed_by_the_seed_and_independent_of_batching():
    x = labelled_positions(10, 4, 4)
    whole = Reducer("spatial_random", seed=3)("block", x)
    assert whole.shape == (10 * RANDOM_POSITIONS, 3)
    points = whole.reshape(10, RANDOM_POSITIONS, 3)
    assert (points[..., 0] == torch.arange(10.0)[:, None]).all()  # each input's own vectors
    index = points[..., 1] * 4 + points[..., 2]
    assert (index.diff(dim=1) > 0).all()  # distinct, in position order
    batched = Reducer("spatial_random", seed=3)
    torch.testing.assert_close(torch.cat([batched("block", x[:4]), batched("block", x[4:])]), whole)
    second_shard = Reducer("spatial_random", seed=3, first_input=4)("block", x[4:])
    torch.testing.assert_close(second_shard, whole[4 * RANDOM_POSITIONS :])
    assert not torch.equal(Reducer("spatial_random", seed=4)("block", x), whole)


def test_the_cap_bounds_the_points_per_class_cloud_deterministically():
    x = labelled_positions(10, 4, 4)  # 16 positions per input
    capped = Reducer("spatial", inputs_per_cloud=10, max_points=30, seed=1)
    rows = capped("block", x)
    assert rows.shape == (30, 3) and capped.points_per_input == {"block": 3}
    torch.testing.assert_close(
        rows, Reducer("spatial", inputs_per_cloud=10, max_points=30, seed=1)("block", x)
    )
    points = rows.reshape(10, 3, 3)
    assert (points[..., 0] == torch.arange(10.0)[:, None]).all()
    assert ((points[..., 1] * 4 + points[..., 2]).diff(dim=1) > 0).all()
    # The top positions keep the largest ones; an input always keeps one point.
    top = Reducer("spatial_top5", inputs_per_cloud=10, max_points=20)("block", x)
    torch.testing.assert_close(
        top, reduce_output(x, "spatial_top5").reshape(10, 5, 3)[:, :2].reshape(20, 3)
    )
    assert Reducer("spatial", inputs_per_cloud=100, max_points=30)("block", x).shape == (10, 3)


def test_the_model_output_keeps_one_point_per_input_and_inputs_map_the_rows():
    reducer = Reducer("spatial_top5")
    scores = torch.randn(3, 4, 2)
    torch.testing.assert_close(reducer(OUTPUT, scores), scores.mean(1))
    reducer("block", torch.randn(3, 2, 4, 4))
    reducer("dense", torch.randn(3, 7))
    assert reducer.points_per_input == {OUTPUT: 1, "block": 5, "dense": 1}
    inputs = reducer.inputs(3)
    assert list(inputs) == ["block"]
    assert inputs["block"].tolist() == [0] * 5 + [1] * 5 + [2] * 5


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors")
def test_outputs_with_different_numbers_of_positions_are_refused():
    reducer = Reducer("spatial")
    reducer("block", torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match="points per input"):
        reducer("block", torch.randn(2, 3, 2, 2))
    ragged = torch.nested.nested_tensor([torch.randn(3, 4), torch.randn(5, 4)])
    with pytest.raises(ValueError, match="points per input"):
        reduce_output(ragged, "spatial")
    padded = torch.zeros(2, 5, 4)
    padded[0, :3], padded[1] = ragged.unbind()
    torch.testing.assert_close(
        reduce_output(ragged, "spatial_top1"), reduce_output(padded, "top_l2")
    )


def test_bad_options_are_refused_at_construction():
    with pytest.raises(ValueError, match="reduction must be one of"):
        Reducer("spatial_top3")
    with pytest.raises(ValueError, match="max_points"):
        Reducer("spatial", max_points=0)
    with pytest.raises(ValueError, match="reduction must be one of"):
        TopologyMonitor(reduction="spatial_top3")


# ---------------------------------------------------------------------------- labels and E0


def test_each_point_carries_its_inputs_label():
    # Inputs 0, 2 (class 0): points 0, 1, 2 and 10, 11, 12 on a line: E0 = 1 + 1 + 8 + 1 + 1.
    # Inputs 1, 3 (class 1): points 0, 0.5, 1 and 5, 5.5, 6: E0 = 4 * 0.5 + 4.
    line = torch.tensor([[0, 1, 2], [0, 0.5, 1], [10, 11, 12], [5, 5.5, 6]])
    cloud = torch.stack([line.reshape(-1), torch.zeros(12)], dim=1)
    labels = torch.tensor([0, 1, 0, 1])
    clouds = {"block": cloud, OUTPUT: torch.randn(4, 2)}
    rows = {"block": torch.arange(4).repeat_interleave(3)}
    config = SummaryConfig(metrics=("e0", "geometry"))
    record = summarize(clouds, labels, config, inputs=rows)
    assert record.per_class["E0_1"][0] == pytest.approx([12.0, 6.0])
    assert record.values["davies_bouldin"][0] == pytest.approx(
        davies_bouldin(cloud, labels.repeat_interleave(3))
    )
    with pytest.raises(ValueError, match="give inputs="):
        summarize(clouds, labels, config)


def test_measure_e0_is_that_of_the_per_class_spatial_clouds():
    torch.manual_seed(0)
    model = TinyCNN()
    x, y = images(6, size=4)
    record = measure(model, (x, y), blocks=["features.0"], reduction="spatial", metrics=("e0",))
    with torch.no_grad():
        maps = model.features[0](x).permute(0, 2, 3, 1)  # (6, 4, 4, C)
    expected = [e0(maps[y == c].reshape(-1, maps.shape[-1])) for c in (0, 1)]
    assert record.blocks == ["features.0", OUTPUT]
    assert record.per_class["E0_1"][0] == pytest.approx(expected, rel=1e-5)
    gap = measure(model, (x, y), blocks=["features.0"], metrics=("e0",))
    assert record.per_class["E0_1"][1] == pytest.approx(gap.per_class["E0_1"][1])
    assert record.extras["margin"] == pytest.approx(gap.extras["margin"])


def test_the_functional_graph_of_spatial_clouds_is_that_of_the_per_input_means():
    torch.manual_seed(0)
    model, (x, y) = TinyCNN(channels=8), images(20)
    options = dict(blocks=["features.0", "features.2"], metrics=("functional",))
    spatial = measure(model, (x, y), reduction="spatial", **options)
    gap = measure(model, (x, y), reduction="gap", **options)
    assert spatial.network["functional_neurons"] > 4
    np.testing.assert_allclose(
        list(spatial.network.values()), list(gap.network.values()), rtol=1e-5, equal_nan=True
    )


def test_a_sharded_measurement_draws_the_same_random_positions():
    torch.manual_seed(0)
    model, probe = TinyCNN(), images(7)  # uneven: rank 1 forwards inputs 4, 5, 6 and a pad
    options = dict(blocks=["features.0"], reduction="spatial_random", metrics=("e0",), seed=2)
    shards: list[torch.Tensor] = []

    def keep(shard: torch.Tensor) -> torch.Tensor:
        shards.append(shard)
        return torch.stack([shard, shard])

    def broadcast(obj, src=0):
        return obj

    assert measure(model, probe, sharding=ProbeSharding(1, 2, keep, broadcast), **options) is None
    rank1 = iter(shards)
    gather = ProbeSharding(0, 2, lambda shard: torch.stack([shard, next(rank1)]), broadcast)
    sharded = measure(model, probe, sharding=gather, **options)
    single = measure(model, probe, **options)
    np.testing.assert_allclose(sharded.per_class["E0_1"], single.per_class["E0_1"], rtol=1e-5)


# ---------------------------------------------------------------------------- in a Trainer


def test_monitor_with_spatial_top5_logs_finite_e0_per_block(tmp_path):
    pl.seed_everything(0)
    x, y = images(48)
    monitor = TopologyMonitor(
        samples_per_class=20,
        reduction="spatial_top5",
        metrics=("e0", "phdim"),
        figures_every_n_epochs=None,
    )
    trainer = quiet_trainer(callbacks=[monitor], logger=False, default_root_dir=tmp_path)
    trainer.fit(TinyCNN(), DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True))
    assert [r.epoch for r in monitor.history] == [0, 1]
    assert monitor.block_names == ["features.1", "features.3", OUTPUT]
    for block in monitor.block_names:
        assert math.isfinite(trainer.callback_metrics[f"topology/E0_1/{block}"].item())
    assert all(math.isfinite(v) for v in monitor.history[-1].values["E0_1"])

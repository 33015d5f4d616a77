"""Redundant adjacent blocks: the bottleneck distance between their scale-free H0 diagrams."""

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

from topo_monitor import TopologyRecord, measure
from topo_monitor.analysis import redundant_blocks
from topo_monitor.analysis.redundancy import REDUNDANCY_THRESHOLD
from topo_monitor.probing.summary import BOTTLENECK, SummaryConfig, metric_names


@pytest.fixture(scope="module")
def digits() -> TensorDataset:
    data = load_digits()
    return TensorDataset(
        torch.tensor(data.data / 16.0, dtype=torch.float32), torch.tensor(data.target)
    )


def mlp_with_identity_block(seed: int) -> nn.Sequential:
    """Blocks "1", "3", "5", "7", output; block "3" is ReLU(I x + 0) of block "1", frozen."""
    torch.manual_seed(seed)
    identity = nn.Linear(32, 32)
    with torch.no_grad():
        identity.weight.copy_(torch.eye(32))
        identity.bias.zero_()
    identity.requires_grad_(False)
    return nn.Sequential(
        nn.Linear(64, 32), nn.ReLU(), identity, nn.ReLU(),
        nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10),
    )  # fmt: skip


def trained(model: nn.Module, data: TensorDataset, steps: int, seed: int) -> nn.Module:
    inputs, labels = data.tensors
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        batch = torch.randint(len(inputs), (64,), generator=generator)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(inputs[batch]), labels[batch]).backward()
        optimizer.step()
    return model


@pytest.fixture(scope="module")
def record(digits) -> TopologyRecord:
    """The MLP with an identity block, trained 60 steps (87 % accuracy), measured on 30 inputs
    per class."""
    model = trained(mlp_with_identity_block(0), digits, 60, 0)
    blocks = [name for name, m in model.named_children() if isinstance(m, nn.ReLU)]
    return measure(model, digits, blocks=blocks, samples_per_class=30, metrics=("sw",))


def test_an_identity_block_is_flagged_and_distinct_blocks_are_not(record):
    assert record.blocks == ["1", "3", "5", "7", "output"]
    flagged = redundant_blocks(record)
    assert [(a, b) for a, b, _ in flagged] == [("1", "3")]
    assert flagged[0][2] < 1e-4  # the same cloud: the same diagrams (to gudhi's 1e-4 error)
    others = record.values[BOTTLENECK][2:]
    assert min(others) > 1.5 * REDUNDANCY_THRESHOLD  # distinct trained blocks: clearly apart
    assert math.isnan(record.values[BOTTLENECK][0])  # nothing before the first block
    # A record read back from a history file gives the same answer.
    assert redundant_blocks(TopologyRecord.from_dict(record.to_dict())) == flagged
    assert len(redundant_blocks(record, threshold=1.0)) == 4


def test_stored_distances_are_gudhis_bottleneck_on_the_same_diagrams(record):
    import gudhi

    assert BOTTLENECK in metric_names(SummaryConfig(metrics=("sw",)))
    assert BOTTLENECK not in metric_names(SummaryConfig(metrics=("e0", "phdim")))
    for b in range(1, len(record.blocks)):
        before, now = record.diagrams[record.blocks[b - 1]], record.diagrams[record.blocks[b]]
        exact = np.mean([gudhi.bottleneck_distance(p, q) for p, q in zip(before, now, strict=True)])
        assert record.values[BOTTLENECK][b] == pytest.approx(exact, abs=1e-4)
    assert "bottleneck" in record.timings


def test_a_block_without_diagrams_has_no_distance_on_either_side():
    inputs = torch.randn(60, 4)
    labels = torch.arange(3).repeat_interleave(20)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        model[2].weight.zero_()  # block "3" is constant: a collapsed cloud, no scale-free diagram
        model[2].bias.fill_(1.0)
    with pytest.warns(UserWarning, match="collapsed"):
        record = measure(model, (inputs, labels), blocks=["1", "3"], metrics=("sw",))
    distances = record.values[BOTTLENECK]
    assert math.isnan(distances[1]) and math.isnan(distances[2])
    assert redundant_blocks(record, threshold=1e9) == []


def test_bad_arguments_are_named():
    record = TopologyRecord(blocks=["a", "output"], depths=[0.5, 1.0], values={"E0_1": [1, 2]})
    with pytest.raises(ValueError, match=r'no H0_bottleneck_prev_block values: .*"sw"'):
        redundant_blocks(record)
    record.values[BOTTLENECK] = [math.nan, 0.0]
    for threshold in (0.0, -1.0, math.inf, "0.1"):
        with pytest.raises(ValueError, match="threshold must be"):
            redundant_blocks(record, threshold=threshold)

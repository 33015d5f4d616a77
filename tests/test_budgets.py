"""Bounded cost at any number of classes and any reduction: a probe budget (classes drawn at
random when there are too many) and a memory budget for the clouds (a clear error at fit start,
never a run the operating system kills)."""

import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from helpers import MLP, quiet_trainer
from topo_monitor import ProbeSet, TopologyMonitor, measure


def many_classes(classes=1000, per_class=20, dim=8):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(classes).repeat_interleave(per_class)
    return TensorDataset(torch.randn(len(y), dim, generator=g), y)


def test_too_many_classes_for_the_budget_draws_classes_once_and_says_so():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        probe = ProbeSet.from_dataset(many_classes(), 300, seed=3, max_inputs=3000)
    messages = [str(w.message) for w in caught if "max_probe_inputs" in str(w.message)]
    assert len(messages) == 1 and "150 classes drawn at random (seed 3)" in messages[0]
    assert len(probe) == 3000 and len(probe.classes) == 150
    assert (torch.bincount(probe.labels)[probe.classes] == 20).all()
    again = ProbeSet.from_dataset(many_classes(), 300, seed=3, max_inputs=3000)
    assert torch.equal(again.labels, probe.labels)  # the same draw every time
    other = ProbeSet.from_dataset(many_classes(), 300, seed=4, max_inputs=3000)
    assert not torch.equal(other.labels, probe.labels)
    # Within the budget nothing is drawn.
    assert len(ProbeSet.from_dataset(many_classes(10), 300, max_inputs=3000).classes) == 10


def test_a_thousand_class_run_is_bounded_and_quiet():
    model = MLP(dim=8, hidden=16, classes=1000)
    monitor = TopologyMonitor(metrics=("e0", "phdim", "sw"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_trainer(max_epochs=2, callbacks=[monitor], logger=False).fit(
            model, DataLoader(many_classes(), batch_size=256)
        )
    ours = [
        str(w.message)
        for w in caught
        if "topo_monitor" in str(w.message) or "probe" in str(w.message)
    ]
    assert sum("max_probe_inputs" in m for m in ours) == 1
    per_epoch = [m for m in ours if "max_probe_inputs" not in m]
    # at most one warning per cause and epoch, whatever the number of classes and blocks
    assert len(per_epoch) == len(set(per_epoch)) <= 2 * 4, per_epoch
    assert [len(r.classes) for r in monitor.history] == [150, 150]


def test_clouds_over_the_memory_budget_stop_fit_at_its_start():
    model = MLP()
    before = [p.detach().clone() for p in model.parameters()]
    data = TensorDataset(torch.randn(90, 8), torch.arange(90) % 3)
    monitor = TopologyMonitor(samples_per_class=30, reduction="flatten", max_cloud_bytes=10_000)
    trainer = quiet_trainer(max_epochs=1, callbacks=[monitor], logger=False)
    with pytest.raises(
        ValueError, match=r"over max_cloud_bytes=.*block 'net\.\d'.*reduction=\"gap\""
    ):
        trainer.fit(model, DataLoader(data, batch_size=16))
    assert trainer.global_step == 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_measure_stops_after_the_first_batch_when_the_clouds_would_not_fit():
    conv = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    x, y = torch.rand(64, 3, 32, 32), torch.arange(64) % 2
    conv(x[:1])
    per_input = 16 * 32 * 32 * 4  # the ReLU block, flattened, in float32 bytes
    budget = 64 * per_input // 2
    with pytest.raises(ValueError, match=r"at most (1[0-9]|2[0-9]|3[0-2]) probe inputs"):
        measure(conv, (x, y), reduction="flatten", batch_size=8, max_cloud_bytes=budget)
    record = measure(conv, (x, y), reduction="gap", batch_size=8, max_cloud_bytes=budget)
    assert record.blocks[-1] == "output"


def test_the_fit_start_projection_uses_the_reducer_measure_uses():
    # A spatial reduction keeps k = min(positions, MAX_POINTS // inputs of the largest class)
    # points per input: 3 classes of 30 inputs on 8 x 8 maps give k = min(64, 1500 // 30) = 50.
    from topo_monitor.probing.measurement import cloud_bytes_per_input
    from topo_monitor.probing.reduction import MAX_POINTS

    conv = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 3))
    probe = ProbeSet.from_tensors(torch.rand(90, 1, 8, 8), torch.arange(90) % 3)
    k = min(64, MAX_POINTS // 30)
    sizes = cloud_bytes_per_input(conv, probe, blocks=["1"], reduction="spatial", batch_size=16)
    assert sizes["1"] == k * 4 * 4  # k points of 4 float32 channels
    whole = cloud_bytes_per_input(
        conv, probe, blocks=["1"], reduction="spatial", batch_size=16, per_class=False
    )
    assert whole["1"] == min(64, MAX_POINTS // 90) * 4 * 4

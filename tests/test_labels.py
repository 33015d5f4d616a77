"""How the probe reads labels: class ids only, unless the user says how to group the probe."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from helpers import MLP, blobs, loader, quiet_trainer
from topo_monitor import ProbeSet, TopologyMonitor, measure


class Regressor(MLP):
    """The MLP with one output, trained on real-valued targets."""

    def __init__(self) -> None:
        super().__init__(classes=1)
        self.steps = 0

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.steps += 1
        return F.mse_loss(self(x).squeeze(1), y.float())


def regression_data(n: int = 90) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    return TensorDataset(x, 3 * torch.randn(n, generator=g))  # N(0, 3) targets


@pytest.mark.parametrize(
    "targets, seen",
    [
        (3 * torch.randn(90), r"targets such as .* \(90 distinct values\)"),  # regression
        (torch.rand(90), r"targets such as"),  # soft labels in [0, 1)
        (F.one_hot(torch.arange(90) % 3).float(), r"shape \(90, 3\) \(soft or one-hot"),
    ],
)
def test_targets_that_are_not_class_ids_are_an_error_at_fit_start(tmp_path, targets, seen):
    data = TensorDataset(torch.randn(90, 8), targets)
    model = Regressor()
    trainer = quiet_trainer(
        callbacks=[TopologyMonitor(samples_per_class=10)], logger=False, default_root_dir=tmp_path
    )
    with pytest.raises(ValueError, match=seen + r".*per_class=False"):
        trainer.fit(model, loader(data))
    assert model.steps == 0  # before any training step, not after an epoch


def test_per_class_false_measures_regression_targets_as_one_cloud(tmp_path):
    monitor = TopologyMonitor(samples_per_class=40, per_class=False, figures_every_n_epochs=None)
    trainer = quiet_trainer(callbacks=[monitor], logger=False, default_root_dir=tmp_path)
    trainer.fit(Regressor(), loader(regression_data()))
    record = monitor.history[-1]
    assert len(monitor.probe) == 40 and not monitor.probe.classified
    assert record.classes == [-1]
    assert all(math.isfinite(v) for v in record.values["E0_1"])
    assert math.isnan(record.extras["margin"])  # no classes: no margin


def test_integral_float_labels_are_classes_and_user_groups_must_be_integers():
    data = blobs()
    x, y = data.tensors
    floats = measure(MLP(), TensorDataset(x, y.double()), samples_per_class=10)
    ints = measure(MLP(), data, samples_per_class=10)
    assert floats.classes == ints.classes == [0, 1, 2]
    with pytest.raises(ValueError, match="not integer class ids"):
        ProbeSet.from_tensors(x, torch.rand(len(x)))
    assert ProbeSet.from_tensors(x, y.float()).labels.dtype == torch.int64


def test_many_small_classes_give_one_short_probe_warning():
    x = torch.randn(5000, 8)
    y = torch.arange(1000).repeat_interleave(5)  # 1000 classes x 5 images
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        probe = ProbeSet.from_dataset(TensorDataset(x, y), samples_per_class=10)
    assert len(probe) == 5000
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "(1000 classes)" in message and len(message) < 400
    assert np.array_equal(probe.classes, np.arange(1000))


def test_many_small_classes_give_one_warning_per_cause_not_one_per_class():
    x = torch.randn(1000, 8)
    y = torch.arange(200).repeat_interleave(5)  # 200 classes x 5 images: PHdim impossible
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = measure(MLP(classes=200), (x, y))
    messages = [str(w.message) for w in caught if "topo_monitor" in str(w.message)]
    assert len(messages) == 1, messages
    assert "PHdim: too few points (5 < 20), in 200 class(es) of 3 block(s)" in messages[0]
    assert all(math.isnan(v) for v in record.values["PHdim"])
    assert len(record.problems) == 600  # every case is still on record

"""The callbacks work with both the `pytorch_lightning` and the `lightning.pytorch` Trainer."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from helpers import blobs, loader
from topo_monitor import AdversarialTopologyMonitor, TopologyMonitor

L = pytest.importorskip("lightning.pytorch", reason="the `lightning` package is not installed")


class UnifiedMLP(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def test_lightning_pytorch_trainer_accepts_the_monitors(tmp_path):
    monitor = TopologyMonitor(samples_per_class=20, metrics=("e0",))
    trainer = L.Trainer(
        max_epochs=2,
        callbacks=[monitor, AdversarialTopologyMonitor(every_n_epochs=2)],
        logger=L.loggers.TensorBoardLogger(tmp_path),
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        accelerator="cpu",
    )
    x, y = blobs().tensors
    data = TensorDataset((x - x.min()) / (x.max() - x.min()), y)  # in [0, 1], for the attacks
    trainer.fit(UnifiedMLP(), loader(data))
    assert [r.epoch for r in monitor.history] == [0, 1]
    assert "topology/E0_1/last" in trainer.callback_metrics

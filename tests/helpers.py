"""Small models and data shared by the Lightning tests (importable by DDP child processes)."""

from __future__ import annotations

import tempfile

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def blobs(n_per_class: int = 40, classes: int = 3, dim: int = 8, seed: int = 0) -> TensorDataset:
    """Gaussian blobs, one per class: a task a small MLP learns in a few epochs."""
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(classes, dim, generator=g)
    x = torch.cat([c + torch.randn(n_per_class, dim, generator=g) for c in centres])
    y = torch.arange(classes).repeat_interleave(n_per_class)
    return TensorDataset(x, y)


class MLP(pl.LightningModule):
    """Linear-ReLU x2 with dropout and batch norm: both would betray a monitor that leaks state."""

    def __init__(self, dim: int = 8, hidden: int = 16, classes: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


def reduce_output(
    output: torch.Tensor, reduction: str = "gap", channel_dim: int | None = None, seed: int = 0
) -> torch.Tensor:
    """The points of one batch of a block's outputs, uncapped: a :class:`Reducer` on this batch
    alone (``measure`` keeps one for the whole probe)."""
    from topo_monitor.probing.reduction import Reducer

    return Reducer(reduction, channel_dim, seed=seed)("", output)


def loader(dataset: TensorDataset, shuffle: bool = True) -> DataLoader:
    return DataLoader(dataset, batch_size=16, shuffle=shuffle)


def quiet_trainer(**kwargs) -> pl.Trainer:
    """A CPU Trainer without progress bars; its files go to a fresh temporary folder unless
    ``default_root_dir`` says where (never into the working directory)."""
    defaults = dict(
        default_root_dir=tempfile.mkdtemp(prefix="topo-monitor-test-"),
        accelerator="cpu",
        devices=1,
        max_epochs=2,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        log_every_n_steps=1,
    )
    return pl.Trainer(**{**defaults, **kwargs})

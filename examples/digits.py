"""Watch the topology of a small residual CNN learning scikit-learn's bundled digits (no download).

    python examples/digits.py --epochs 12 --logdir runs
    tensorboard --logdir runs

Every epoch, TopologyMonitor runs 50 training images per class through the network and logs,
for every residual block and the output, the MST length E^0_1, its scale-free form, PHdim and the
sliced-Wasserstein distances between blocks (``--h1``, ``--functional``, ``--mapper``: more).
"""

from __future__ import annotations

import argparse

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import TensorBoardLogger
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from topo_monitor import TopologyMonitor


class ResidualBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus a (projected) shortcut, then ReLU: a ResNet basic block."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class DigitsResNet(pl.LightningModule):
    """A 6-block residual CNN for 8×8 digit images."""

    def __init__(self, width: int = 32, lr: float = 3e-3, weight_decay: float = 5e-4) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width))
        self.layers = nn.Sequential(
            ResidualBlock(width, width),
            ResidualBlock(width, width),
            ResidualBlock(width, 2 * width, stride=2),
            ResidualBlock(2 * width, 2 * width),
            ResidualBlock(2 * width, 4 * width, stride=2),
            ResidualBlock(4 * width, 4 * width),
        )
        self.head = nn.Linear(4 * width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(F.relu(self.stem(x)))
        return self.head(x.mean(dim=(2, 3)))

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val_loss", F.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean(), prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )


def digits_datasets(seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """Train/validation split of the 1797 bundled 8×8 digits, scaled to [0, 1]."""
    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(digits.target, dtype=torch.long)
    train_idx, val_idx = train_test_split(
        np.arange(len(y)), test_size=0.25, stratify=digits.target, random_state=seed
    )
    return TensorDataset(x[train_idx], y[train_idx]), TensorDataset(x[val_idx], y[val_idx])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--logdir", default="runs")
    parser.add_argument(
        "--samples-per-class",
        type=int,
        default=50,
        help="probe images per class (digits has ~135 per class for training; 100 gives "
        "steadier PHdim values at twice the monitoring cost)",
    )
    parser.add_argument("--h1", action="store_true", help="also compute H1 (slower)")
    parser.add_argument(
        "--functional", action="store_true", help="also the functional graph (Corneanu et al.)"
    )
    parser.add_argument(
        "--mapper", action="store_true", help="also the Mapper graphs' class purity (PNNL)"
    )
    args = parser.parse_args()
    extra = [g for g, on in (("functional", args.functional), ("mapper", args.mapper)) if on]

    pl.seed_everything(0, verbose=False)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    train, val = digits_datasets()
    monitor = TopologyMonitor(
        samples_per_class=args.samples_per_class,
        homology_dims=(0, 1) if args.h1 else (0,),
        metrics=("e0", "phdim", "sw", *extra),
    )
    logger = TensorBoardLogger(args.logdir, name="digits")
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        callbacks=[monitor],
        logger=logger,
        accelerator="auto",
        devices=1,
        enable_model_summary=False,
        log_every_n_steps=10,
    )
    trainer.fit(
        DigitsResNet(),
        DataLoader(train, batch_size=64, shuffle=True),
        DataLoader(val, batch_size=256),
    )
    last = monitor.history[-1]
    print("\nE0_1_scaled by block at the last epoch:")
    for block, value in zip(last.blocks, last.values["E0_1_scaled"], strict=True):
        print(f"  {block:12s} {value:8.3f}")
    print(f"\nHistory: {logger.log_dir}/topology_history.jsonl")
    print(f"Now run:  tensorboard --logdir {args.logdir}")


if __name__ == "__main__":
    main()

"""Watch the topology of a ResNet-18 learning CIFAR-10, read from a local copy (no download).

    python examples/cifar10.py --data-dir ~/data --epochs 30 --logdir runs
    tensorboard --logdir runs

``--data-dir`` must hold the python version of CIFAR-10 as distributed by its authors
(``cifar-10-python.tar.gz``, unpacked)::

    <data-dir>/cifar-10-batches-py/data_batch_1 ... data_batch_5, test_batch

each a pickled dict with ``b"data"`` (N×3072 uint8, rows are the R, G, B planes of a 32×32 image)
and ``b"labels"`` (N class indices). ``--data-dir`` may also be that ``cifar-10-batches-py``
directory itself. Nothing is ever downloaded. The files are pickles: only point this at data you
trust.

The network is torchvision's ResNet-18 with the usual CIFAR stem (a 3×3 convolution of stride 1 and
no max-pooling). Every epoch, TopologyMonitor runs ``--samples-per-class`` training images per
class (300 by default) through it and logs, for each of the 8 residual blocks and the output, the
MST length E^0_1, its scale-free form, PHdim and the sliced-Wasserstein distances between blocks.
On a CPU an epoch of the full 50,000 images takes long: try ``--limit-train 5000`` first.
"""

from __future__ import annotations

import argparse
import os
import pickle
from collections.abc import Sequence

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import torchvision
from pytorch_lightning.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

from topo_monitor import TopologyMonitor

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
BATCHES_DIR = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def _batches_dir(data_dir: str | os.PathLike) -> str:
    """``<data_dir>/cifar-10-batches-py``, or ``data_dir`` itself if it holds the batch files."""
    data_dir = os.fspath(os.path.expanduser(data_dir))
    nested = os.path.join(data_dir, BATCHES_DIR)
    if os.path.isdir(nested):
        return nested
    if os.path.isfile(os.path.join(data_dir, TEST_FILES[0])) or os.path.isfile(
        os.path.join(data_dir, TRAIN_FILES[0])
    ):
        return data_dir
    return nested


def load_cifar10(data_dir: str | os.PathLike, train: bool, normalize: bool = True) -> TensorDataset:
    """CIFAR-10 from the python-pickle files in a local directory.

    Parameters
    ----------
    data_dir : path
        The directory that holds ``cifar-10-batches-py/`` (or that directory itself).
    train : bool
        The 50,000 training images (``data_batch_1`` to ``data_batch_5``, in that order), else the
        10,000 test images (``test_batch``).
    normalize : bool, default True
        Subtract the CIFAR-10 channel means and divide by the standard deviations; False keeps the
        pixels in [0, 1].

    Returns
    -------
    TensorDataset
        ``(images, labels)``: float32 of shape (N, 3, 32, 32) and int64 of shape (N,).

    Raises
    ------
    FileNotFoundError
        If a batch file is missing; the message says which layout is expected.
    ValueError
        If a file is not a CIFAR-10 batch.
    """
    directory = _batches_dir(data_dir)
    names = TRAIN_FILES if train else TEST_FILES
    missing = [n for n in names if not os.path.isfile(os.path.join(directory, n))]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 not found in {os.fspath(data_dir)!r}: missing {', '.join(missing)} in "
            f"{directory!r}. Expected the python version of CIFAR-10 (cifar-10-python.tar.gz from "
            f"https://www.cs.toronto.edu/~kriz/cifar.html, unpacked), laid out as "
            f"<data-dir>/{BATCHES_DIR}/{{{','.join(TRAIN_FILES)},{TEST_FILES[0]}}}; "
            "each file a pickled dict with b'data' (N x 3072 uint8) and b'labels'. "
            "This example never downloads anything."
        )
    images, labels = [], []
    for name in names:
        path = os.path.join(directory, name)
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
            raise ValueError(f"{path!r} is not a CIFAR-10 batch (a dict with b'data', b'labels')")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(batch[b"labels"]):
            raise ValueError(
                f"{path!r}: expected b'data' of shape (N, 3072) and N labels, got data of shape "
                f"{data.shape} and {len(batch[b'labels'])} labels"
            )
        images.append(data)
        labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
    x = torch.from_numpy(np.concatenate(images)).reshape(-1, 3, 32, 32).float().div_(255.0)
    if normalize:
        mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
        x = (x - mean) / std
    return TensorDataset(x, torch.from_numpy(np.concatenate(labels)))


def resnet18_cifar(num_classes: int = 10) -> nn.Module:
    """torchvision's ResNet-18 (random weights) with the CIFAR stem: 3×3 stride-1 conv, no pool."""
    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def augment(x: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """The standard CIFAR augmentation on a batch: random crop after zero padding, random flip."""
    n, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n,), device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channels = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    out = padded[batch, channels, rows, cols]
    flip = torch.rand(n, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


class CifarResNet(pl.LightningModule):
    """ResNet-18 (CIFAR stem) trained with SGD, momentum, weight decay and a one-cycle schedule."""

    def __init__(self, lr: float = 0.1, weight_decay: float = 5e-4, augment: bool = True) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = resnet18_cifar(10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        x, y = batch
        if self.hparams.augment:
            x = augment(x)
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val_loss", F.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean(), prog_bar=True)

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(
            self.parameters(),
            lr=self.hparams.lr,
            momentum=0.9,
            weight_decay=self.hparams.weight_decay,
            nesterov=True,
        )
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=self.hparams.lr,
            total_steps=max(1, int(self.trainer.estimated_stepping_batches)),
        )
        return [optimizer], [{"scheduler": schedule, "interval": "step"}]


def subset(dataset: TensorDataset, size: int | None, seed: int = 0) -> TensorDataset | Subset:
    """A fixed random subset of ``size`` items (the whole dataset if None or not smaller)."""
    if size is None or size >= len(dataset):
        return dataset
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    return Subset(dataset, order[:size].tolist())


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", required=True, help=f"directory holding {BATCHES_DIR}/ (never downloaded)"
    )
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--logdir", default="runs")
    parser.add_argument("--samples-per-class", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--limit-train", type=int, default=None, help="train on a fixed random subset of this size"
    )
    parser.add_argument(
        "--limit-val", type=int, default=None, help="validate on a fixed random subset"
    )
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--no-normalize", action="store_true", help="keep pixels in [0, 1]")
    parser.add_argument("--no-augment", action="store_true", help="no random crops and flips")
    parser.add_argument("--h1", action="store_true", help="also compute H1 (slower)")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> TopologyMonitor:
    """Train and monitor; returns the TopologyMonitor (its ``history`` holds every epoch)."""
    args = parse_args(argv)
    pl.seed_everything(args.seed, verbose=False)
    normalize = not args.no_normalize
    train = subset(load_cifar10(args.data_dir, train=True, normalize=normalize), args.limit_train)
    val = subset(load_cifar10(args.data_dir, train=False, normalize=normalize), args.limit_val)
    monitor = TopologyMonitor(
        samples_per_class=args.samples_per_class,
        homology_dims=(0, 1) if args.h1 else (0,),
        seed=args.seed,
    )
    logger = TensorBoardLogger(args.logdir, name="cifar10")
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        callbacks=[monitor],
        logger=logger,
        accelerator=args.accelerator,
        devices=1,
        enable_model_summary=False,
        log_every_n_steps=min(50, max(1, len(train) // args.batch_size)),
    )
    loader_args = dict(num_workers=args.num_workers, persistent_workers=args.num_workers > 0)
    trainer.fit(
        CifarResNet(lr=args.lr, augment=not args.no_augment),
        DataLoader(train, batch_size=args.batch_size, shuffle=True, **loader_args),
        DataLoader(val, batch_size=512, **loader_args),
    )
    if monitor.history:
        last = monitor.history[-1]
        print("\nE0_1_scaled and PHdim by block at the last epoch:")
        for block, e0, dim in zip(
            last.blocks, last.values["E0_1_scaled"], last.values["PHdim"], strict=True
        ):
            print(f"  {block:16s} {e0:8.3f} {dim:8.2f}")
        print(f"\nHistory: {logger.log_dir}/topology_history.jsonl")
    print(f"Now run:  tensorboard --logdir {args.logdir}")
    return monitor


if __name__ == "__main__":
    main()

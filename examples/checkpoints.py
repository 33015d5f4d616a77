"""Measure a folder of saved checkpoints with ``topo_monitor.measure``: no callback, no Trainer.

The workflow of the seed papers (train models, save them, measure each afterwards). First a short
run of the digits example saves one checkpoint per epoch (skipped when the folder already holds
checkpoints); then each checkpoint is loaded and measured on one fixed probe set of training
images, and a table of the last hidden block's topology and the test-free baselines is printed.

    python examples/checkpoints.py                      # train 4 epochs, then measure
    python examples/checkpoints.py --checkpoints DIR    # measure your own DigitsResNet checkpoints
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from digits import DigitsResNet, digits_datasets

from topo_monitor import ProbeSet, measure


def train(folder: str, epochs: int) -> None:
    """A short digits run that keeps the checkpoint of every epoch."""
    train_set, _ = digits_datasets()
    pl.seed_everything(0, verbose=False)
    trainer = pl.Trainer(
        max_epochs=epochs,
        callbacks=[ModelCheckpoint(dirpath=folder, filename="{epoch}", save_top_k=-1)],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(DigitsResNet(), DataLoader(train_set, batch_size=64, shuffle=True))


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", default="runs/checkpoints")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of the run that saves them")
    parser.add_argument("--samples-per-class", type=int, default=50)
    args = parser.parse_args(argv)

    paths = glob.glob(os.path.join(args.checkpoints, "*.ckpt"))
    if not paths:
        train(args.checkpoints, args.epochs)
        paths = glob.glob(os.path.join(args.checkpoints, "*.ckpt"))
    paths.sort(key=lambda p: int(re.search(r"epoch=(\d+)", p).group(1)))

    # One probe set for every checkpoint, drawn once with a private seed: the same inputs, so the
    # numbers compare across checkpoints.
    train_set, _ = digits_datasets()
    probe = ProbeSet.from_dataset(train_set, args.samples_per_class, seed=0)
    rows = []
    print(f"{'checkpoint':>16s} {'E0_1_scaled':>12s} {'PHdim':>7s} {'margin':>8s} {'|w|':>7s}")
    for path in paths:
        model = DigitsResNet.load_from_checkpoint(path, map_location="cpu")
        epoch = int(re.search(r"epoch=(\d+)", path).group(1))
        record = measure(model, probe, epoch=epoch, metrics=("e0", "phdim"))
        hidden = -2  # the last hidden block; -1 is the model output
        row = {
            "epoch": epoch,
            "E0_1_scaled": record.values["E0_1_scaled"][hidden],
            "PHdim": record.values["PHdim"][hidden],
            **record.extras,
        }
        rows.append(row)
        print(
            f"{os.path.basename(path):>16s} {row['E0_1_scaled']:12.2f} {row['PHdim']:7.2f} "
            f"{row['margin']:8.2f} {row['param_norm']:7.2f}"
        )
    print(f"blocks: {record.blocks}")
    return rows


if __name__ == "__main__":
    main()

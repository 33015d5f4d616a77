"""Topology of adversarial examples for the digits CNN (Magai & Ayzenberg 2022, §4.3).

    python examples/adversarial.py --epochs 8 --out adversarial_out

Trains the residual CNN of examples/digits.py, attacks 500 training images with FGSM, MI-FGSM and
PGD at several budgets ε, and measures the topology of the adversarial examples in input space and
inside every block. Writes the table (CSV) and two figures (PNG) to --out, and prints a summary.
"""

from __future__ import annotations

import argparse
import os
import sys

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from digits import DigitsResNet, digits_datasets

from topo_monitor import AdversarialTable, adversarial_topology
from topo_monitor.reporting.plots import adversarial_curves, adversarial_depth_profile

EPS = (0.0, 0.05, 0.1, 0.2)


def train_digits_model(
    epochs: int, seed: int = 0
) -> tuple[DigitsResNet, torch.Tensor, torch.Tensor]:
    """The digits CNN after ``epochs`` epochs, and the training images and labels."""
    pl.seed_everything(seed, verbose=False)
    train, _ = digits_datasets(seed)
    model = DigitsResNet()
    trainer = pl.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(model, DataLoader(train, batch_size=64, shuffle=True))
    inputs, labels = train.tensors
    return model, inputs, labels


def analyse(
    model: DigitsResNet, inputs: torch.Tensor, labels: torch.Tensor, n: int
) -> AdversarialTable:
    generator = torch.Generator().manual_seed(0)
    chosen = torch.randperm(len(labels), generator=generator)[:n]
    return adversarial_topology(model, inputs[chosen], labels[chosen], eps=EPS)


def main(argv: list[str] | None = None) -> AdversarialTable:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--inputs", type=int, default=500)
    parser.add_argument("--out", default="adversarial_out")
    args = parser.parse_args(argv)

    model, inputs, labels = train_digits_model(args.epochs)
    table = analyse(model, inputs, labels, args.inputs)
    os.makedirs(args.out, exist_ok=True)
    table.to_csv(os.path.join(args.out, "adversarial_topology.csv"))
    adversarial_depth_profile(table.rows, "PGD", "E0_1_scaled").savefig(
        os.path.join(args.out, "pgd_depth_E0_1_scaled.png"), dpi=100
    )
    adversarial_curves(table.rows).savefig(os.path.join(args.out, "curves.png"), dpi=100)

    last_hidden = table.rows[-2]["block"]
    print(f"\nblock {last_hidden!r} (the last hidden one); E values scale-free (see README)")
    print(
        f"{'attack':7s} {'eps':>5s} {'success':>8s} {'acc':>6s} {'PHdim(X)':>9s} "
        f"{'E0_1':>8s} {'E1_1':>8s} {'PHdim':>7s}"
    )
    for row in table.select(block="input"):
        hidden = table.select(attack=row["attack"], eps=row["eps"], block=last_hidden)[0]
        print(
            f"{row['attack']:7s} {row['eps']:5.2f} {row['success_rate']:8.2f} "
            f"{row['accuracy']:6.2f} {row['PHdim']:9.2f} {hidden['E0_1_scaled']:8.2f} "
            f"{hidden['E1_1_scaled']:8.3f} {hidden['PHdim']:7.2f}"
        )
    print(f"\nattack {table.timings['attack']:.1f} s, topology {table.timings['topology']:.1f} s")
    print(f"Table and figures in {args.out}/")
    return table


if __name__ == "__main__":
    main()

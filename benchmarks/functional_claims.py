"""Corneanu et al.'s functional-graph claims, checked on the digits example's network.

    python benchmarks/functional_claims.py [--epochs 60] [--seed 0] [--figure PATH]

The claims (seed 004, CVPR 2019): learning to generalize creates 2-D cavities in the functional
graph and moves its 1-D cavities toward lower edge density; memorizing moves them back toward
higher density. Two runs of ``examples/digits.py``'s DigitsResNet (AdamW, batch 64, the
example's settings) on the 1347 training digits: clean labels, and 40 % of them replaced by a
random *other* class (a fixed draw), which the network can only fit by memorizing. Every
epoch, a :class:`TopologyMonitor` with ``metrics=("functional",)`` (50 training images per
class, the default 50-neuron graph, the same neurons every epoch: the draw's seed is fixed)
records the functional summaries; a callback records, on the model in eval mode, the training
accuracy on the labels trained on, the fraction of the flipped labels that the model predicts
(memorized), and the accuracy on the 450 held-out digits (test).

Each claim is read from means over 3-epoch windows — the first epochs, the epochs around the
best test accuracy, the last epochs — and printed with its numbers; the spread of a summary over
neuron draws (``benchmarks/bench_monitor.py``) says how large a change must be to mean
anything. Figures: the accuracies and summaries against epoch for both runs, and each run's
Betti curves as the monitor draws them.

Runs are cached in ``benchmarks/.cache/functional_claims/`` (one JSON file per run): a finished
study re-reports in seconds. The full study (2 runs × 60 epochs) trains for about 2 × 60 ×
(epoch + 1 s of functional graph and accuracies); ``--epochs 3`` checks the script.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from types import ModuleType

import numpy as np
import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure
from torch.utils.data import DataLoader, TensorDataset

from topo_monitor import TopologyMonitor, TopologyRecord
from topo_monitor.reporting.plots import betti_curves

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, "benchmarks", ".cache", "functional_claims")
NOISES = (0.0, 0.4)
WINDOW = 3
SAMPLES_PER_CLASS = 50


def load_digits_example() -> ModuleType:
    """``examples/digits.py`` as a module."""
    spec = importlib.util.spec_from_file_location(
        "topo_monitor_example_digits", os.path.join(ROOT, "examples", "digits.py")
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def flip_labels(y: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """``y`` with ``fraction`` of its entries (a random choice) replaced by a random other
    class, drawn with a private generator."""
    g = torch.Generator().manual_seed(seed)
    classes = int(y.max()) + 1
    flipped = torch.randperm(len(y), generator=g)[: round(fraction * len(y))]
    out = y.clone()
    out[flipped] = (y[flipped] + torch.randint(1, classes, (len(flipped),), generator=g)) % classes
    return out


class Accuracies(pl.Callback):
    """Per epoch, in eval mode under ``no_grad`` (training is left as it was): accuracy on the
    labels trained on, the fraction of the flipped labels predicted, and the test accuracy."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, clean: torch.Tensor, test) -> None:
        self.x, self.y, self.flipped = x, y, y != clean
        self.test = test
        self.rows: list[dict[str, float]] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        seconds = time.perf_counter() - self._start
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            predicted = pl_module(self.x).argmax(dim=1)
            test = (pl_module(self.test.tensors[0]).argmax(dim=1) == self.test.tensors[1]).float()
        pl_module.train(was_training)
        hit = (predicted == self.y).float()
        self.rows.append(
            {
                "epoch": trainer.current_epoch,
                "train_acc": float(hit.mean()),
                "memorized": float(hit[self.flipped].mean()) if self.flipped.any() else math.nan,
                "test_acc": float(test.mean()),
                "seconds": seconds,  # the epoch with the monitor and this callback in it
            }
        )


def run(noise: float, epochs: int, seed: int) -> list[dict]:
    """One training run's rows, one per epoch, from the cache when it holds them."""
    path = os.path.join(CACHE, f"digits_noise{round(100 * noise)}_seed{seed}_epochs{epochs}.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    example = load_digits_example()
    pl.seed_everything(seed, verbose=False)
    train, test = example.digits_datasets()
    x, clean = train.tensors
    y = flip_labels(clean, noise, seed)
    accuracies = Accuracies(x, y, clean, test)
    monitor = TopologyMonitor(
        metrics=("functional",),
        samples_per_class=SAMPLES_PER_CLASS,
        seed=seed,
        figures_every_n_epochs=None,
    )
    with tempfile.TemporaryDirectory() as directory:
        trainer = pl.Trainer(
            max_epochs=epochs,
            callbacks=[monitor, accuracies],
            logger=False,
            default_root_dir=directory,
            accelerator="cpu",
            devices=1,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
        )
        trainer.fit(
            example.DigitsResNet(), DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
        )
    rows = [
        {
            **row,
            "functional_seconds": record.timings["functional"],
            "network": record.network,
            "curves": record.curves,
        }
        for row, record in zip(accuracies.rows, monitor.history, strict=True)
    ]
    os.makedirs(CACHE, exist_ok=True)
    with open(path, "w") as f:
        json.dump(rows, f)
    return rows


def window_mean(rows: list[dict], centre: int, key: str) -> float:
    """Mean of a network value (or an accuracy) over the WINDOW epochs around ``centre``, kept
    inside the run."""
    start = min(max(centre - WINDOW // 2, 0), max(len(rows) - WINDOW, 0))
    chosen = rows[start : start + WINDOW]
    return statistics.fmean(r[key] if key in r else r["network"][key] for r in chosen)


def report(runs: dict[float, list[dict]]) -> list[str]:
    """The table and the verdict on each claim, as lines of text."""
    lines = []
    for noise, rows in runs.items():
        lines.append(f"\ndigits, {noise:.0%} label noise: {len(rows)} epochs")
        lines.append(
            f"{'epoch':>5} {'train':>6} {'memor.':>6} {'test':>6} {'H1 bars':>7} "
            f"{'H1 peak':>7} {'H1 mid':>7} {'H2 bars':>7} {'H2 peak':>7}"
        )
        step = max(1, len(rows) // 15)
        for r in rows[::step] + ([rows[-1]] if (len(rows) - 1) % step else []):
            n = r["network"]
            lines.append(
                f"{r['epoch']:>5} {r['train_acc']:6.3f} {r['memorized']:6.3f} {r['test_acc']:6.3f} "
                f"{n['functional_bars_H1']:7.0f} {n['functional_peak_density_H1']:7.3f} "
                f"{n['functional_midlife_H1']:7.3f} {n['functional_bars_H2']:7.0f} "
                f"{n['functional_peak_density_H2']:7.3f}"
            )
    lines.append(f"\nClaims, from {WINDOW}-epoch window means (first / best test / last):")
    for noise, rows in runs.items():
        best = int(np.argmax([r["test_acc"] for r in rows]))
        at = {"first": 0, "best": best, "last": len(rows) - 1}
        for key in (
            "test_acc",
            "train_acc",
            "memorized",
            "functional_bars_H1",
            "functional_peak_density_H1",
            "functional_bars_H2",
            "functional_peak_density_H2",
        ):
            means = [window_mean(rows, e, key) for e in at.values()]
            lines.append(
                f"  {noise:4.0%} noise  {key:28s} "
                + "  ".join(f"{name} {m:7.3f}" for name, m in zip(at, means, strict=True))
                + f"   (best test at epoch {best})"
            )
    clean, noisy = runs[NOISES[0]], runs[NOISES[-1]]
    best = int(np.argmax([r["test_acc"] for r in clean]))
    verdicts = [
        (
            "generalizing creates 2-D cavities (clean: H2 bars first -> best test)",
            window_mean(clean, 0, "functional_bars_H2"),
            window_mean(clean, best, "functional_bars_H2"),
            "rise",
        ),
        (
            "generalizing moves 1-D cavities to lower density (clean: H1 peak first -> best)",
            window_mean(clean, 0, "functional_peak_density_H1"),
            window_mean(clean, best, "functional_peak_density_H1"),
            "fall",
        ),
    ]
    noisy_best = int(np.argmax([r["test_acc"] for r in noisy]))
    verdicts.append(
        (
            "memorizing moves them back to higher density (40 %: H1 peak best -> last)",
            window_mean(noisy, noisy_best, "functional_peak_density_H1"),
            window_mean(noisy, len(noisy) - 1, "functional_peak_density_H1"),
            "rise",
        )
    )
    for claim, before, after, direction in verdicts:
        shows = after > before if direction == "rise" else after < before
        verdict = "shows" if shows else "does not show"
        if min(len(clean), len(noisy)) < 3 * WINDOW:
            verdict = f"no verdict: the windows overlap in fewer than {3 * WINDOW} epochs"
        lines.append(
            f"  {claim}: {before:.3f} -> {after:.3f}: {verdict} "
            "(compare with the neuron-draw spread)"
        )
    return lines


def figure(runs: dict[float, list[dict]]) -> Figure:
    """Accuracies, peak densities and bar counts against epoch, one column per run, the epoch
    of best test accuracy dashed."""
    fig = Figure(figsize=(10.0, 8.0), dpi=100, layout="constrained")
    axes = fig.subplots(3, len(runs), sharex="col", squeeze=False)
    for col, (noise, rows) in enumerate(runs.items()):
        epochs = [r["epoch"] for r in rows]
        network = {key: [r["network"][key] for r in rows] for key in rows[0]["network"]}
        top, middle, bottom = axes[:, col]
        top.plot(epochs, [r["train_acc"] for r in rows], label="train (labels trained on)")
        top.plot(epochs, [r["test_acc"] for r in rows], label="test")
        if noise > 0:
            top.plot(epochs, [r["memorized"] for r in rows], label="flipped labels fitted")
        top.set(ylabel="accuracy", title=f"digits, {noise:.0%} label noise")
        for k in (1, 2):
            middle.plot(epochs, network[f"functional_peak_density_H{k}"], label=f"β{k} peak")
            bottom.plot(epochs, network[f"functional_bars_H{k}"], label=f"H{k} bars")
        middle.set(ylabel="edge density")
        bottom.set(ylabel="number of bars", xlabel="epoch")
        best = epochs[int(np.argmax([r["test_acc"] for r in rows]))]
        for ax in (top, middle, bottom):
            ax.axvline(best, color="0.5", ls="--", lw=0.8, label="best test accuracy")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    return fig


def as_records(rows: list[dict]) -> list[TopologyRecord]:
    """Records holding only the functional graph, for the monitor's Betti-curve figure."""
    return [
        TopologyRecord(
            blocks=[],
            depths=[],
            values={},
            epoch=r["epoch"],
            network=r["network"],
            curves=r["curves"],
        )
        for r in rows
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", default=os.path.join(CACHE, "functional_claims.png"))
    args = parser.parse_args(argv)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    start = time.perf_counter()
    runs = {noise: run(noise, args.epochs, args.seed) for noise in NOISES}
    print("\n".join(report(runs)))
    os.makedirs(os.path.dirname(os.path.abspath(args.figure)), exist_ok=True)
    figure(runs).savefig(args.figure)
    stem, ext = os.path.splitext(args.figure)
    for noise, rows in runs.items():
        betti_curves(as_records(rows)).savefig(f"{stem}_betti_noise{round(100 * noise)}{ext}")
    seconds = [r["seconds"] for rows in runs.values() for r in rows]
    print(
        f"\nFigures: {args.figure} and its _betti_noise* siblings. Epochs took "
        f"{statistics.median(seconds):.1f} s (median, functional graph and accuracies "
        f"included); this report {time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()

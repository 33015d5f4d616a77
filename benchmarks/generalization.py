"""Evidence: does topology of training data predict test accuracy, and when would it stop training?

    python benchmarks/generalization.py [--runs 40] [--epochs 30] [--retrain]

Trains a family of small CNNs and MLPs on scikit-learn's digits (60 % train, 15 % validation,
25 % test), varying width, depth, learning rate, weight decay, batch size, dropout, augmentation,
label noise and training-set fraction. Every epoch, TopologyMonitor measures the last hidden block
on *training* data only; the test accuracy is recorded for the evidence, never for the features.
Printed:

1. Pearson r and Kendall τ of each topological feature, and of the baselines (final training
   loss, output margin, parameter norm), with the final test accuracy across the family;
2. nested leave-one-out MAE of GeneralizationPredictor (topology, baselines, both, its choice)
   against predicting the family mean;
3. the within-run correlation of E0_1 with test accuracy across epochs (paper: r = -0.92).

Early stopping has its own study: benchmarks/early_stopping.py.

The trained family is cached in benchmarks/.cache/; a second run only re-analyses (seconds).
About 10 minutes on 2 CPU cores for the default 40 runs of 30 epochs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from topo_monitor import TopologyMonitor
from topo_monitor.analysis.generalization import (
    BASELINE_FEATURES,
    CalibrationSet,
    GeneralizationPredictor,
    features_from_record,
    kendall_tau,
    pearson_r,
)

CACHE = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".cache", "generalization.json")
FEATURES = ("E0_1", "E0_1_scaled", "PHdim")


@dataclass
class Config:
    seed: int
    arch: str
    width: int
    depth: int
    lr: float
    weight_decay: float
    batch_size: int
    dropout: float
    augment: bool
    label_noise: float
    train_fraction: float


def sample_configs(n: int) -> list[Config]:
    rng = np.random.default_rng(2024)
    return [
        Config(
            seed=i,
            arch=("cnn", "mlp")[i % 2],
            width=int(rng.choice([8, 16, 32, 64])),
            depth=int(rng.choice([1, 2, 3])),
            lr=float(10 ** rng.uniform(-2.7, -1.7)),
            weight_decay=float(rng.choice([0.0, 1e-4, 1e-3])),
            batch_size=int(rng.choice([32, 64, 128])),
            dropout=float(rng.choice([0.0, 0.2, 0.5])),
            augment=bool(rng.random() < 0.5),
            label_noise=float(rng.choice([0.0, 0.0, 0.1, 0.3])),
            train_fraction=float(rng.choice([0.15, 0.4, 1.0])),
        )
        for i in range(n)
    ]


class FamilyModel(pl.LightningModule):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        if config.arch == "mlp":
            layers.append(nn.Flatten())
            width_in = 64
            for _ in range(config.depth):
                layers += [nn.Linear(width_in, config.width), nn.ReLU(), nn.Dropout(config.dropout)]
                width_in = config.width
            self.features = nn.Sequential(*layers)
            self.head = nn.Linear(width_in, 10)
        else:
            channels_in = 1
            for i in range(config.depth):
                channels = config.width * 2**i
                layers += [
                    nn.Conv2d(channels_in, channels, 3, padding=1),
                    nn.BatchNorm2d(channels),
                    nn.ReLU(),
                ]
                channels_in = channels
            self.features = nn.Sequential(*layers)
            self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(channels_in, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.head(h.mean(dim=(2, 3)) if h.dim() == 4 else h)

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.config.augment:  # random shifts of up to one pixel
            dx, dy = (int(v) for v in torch.randint(-1, 2, (2,)))
            x = torch.roll(x, shifts=(dx, dy), dims=(2, 3))
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(
            self.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay
        )


class Evidence(pl.Callback):
    """Per epoch: training loss, validation loss and test accuracy (evidence only)."""

    def __init__(self, test: TensorDataset) -> None:
        self.test = test
        self.rows: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        x, y = self.test.tensors
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            accuracy = float((pl_module(x).argmax(1) == y).float().mean())
        pl_module.train(was_training)
        metrics = trainer.callback_metrics
        self.rows.append(
            {
                "epoch": trainer.current_epoch,
                "train_loss": float(metrics["train_loss"]),
                "val_loss": float(metrics.get("val_loss", math.nan)),
                "test_accuracy": accuracy,
            }
        )


def splits() -> tuple[TensorDataset, TensorDataset, TensorDataset]:
    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(digits.target)
    idx = np.arange(len(y))
    train, rest = train_test_split(idx, test_size=0.4, stratify=digits.target, random_state=0)
    val, test = train_test_split(
        rest, test_size=25 / 40, stratify=digits.target[rest], random_state=0
    )
    return (
        TensorDataset(x[train], y[train]),
        TensorDataset(x[val], y[val]),
        TensorDataset(x[test], y[test]),
    )


def train_one(config: Config, epochs: int) -> dict:
    train, val, test = splits()
    g = torch.Generator().manual_seed(config.seed)
    n = max(50, int(config.train_fraction * len(train)))
    chosen = torch.randperm(len(train), generator=g)[:n]
    x, y = train.tensors[0][chosen], train.tensors[1][chosen].clone()
    noisy = torch.rand(n, generator=g) < config.label_noise
    y[noisy] = torch.randint(0, 10, (int(noisy.sum()),), generator=g)
    pl.seed_everything(config.seed, verbose=False)
    monitor = TopologyMonitor(
        samples_per_class=60, metrics=("e0", "phdim"), figures_every_n_epochs=None, seed=config.seed
    )
    evidence = Evidence(test)
    with tempfile.TemporaryDirectory() as root:  # the monitor's history file goes there
        trainer = pl.Trainer(
            max_epochs=epochs,
            callbacks=[monitor, evidence],
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
            num_sanity_val_steps=0,
            default_root_dir=root,
        )
        trainer.fit(
            FamilyModel(config),
            DataLoader(TensorDataset(x, y), config.batch_size, shuffle=True),
            DataLoader(val, batch_size=512),
        )
    epochs_out = []
    for record, row in zip(monitor.history, evidence.rows, strict=True):
        features = features_from_record(record, row["train_loss"])
        epochs_out.append(
            {**row, **{k: features.get(k, math.nan) for k in FEATURES + BASELINE_FEATURES}}
        )
    return {"config": asdict(config), "epochs": epochs_out}


def report(runs: list[dict]) -> None:
    finals = [r["epochs"][-1] for r in runs]
    accuracy = np.array([f["test_accuracy"] for f in finals])
    print(
        f"\n{len(runs)} runs, final test accuracy {accuracy.min():.3f} .. {accuracy.max():.3f} "
        f"(mean {accuracy.mean():.3f}, std {accuracy.std():.3f})"
    )

    print("\n1. Correlation with final test accuracy across the family (last hidden block)")
    print(f"   {'feature':14s} {'kind':9s} {'Pearson r':>9s} {'Kendall τ':>9s}")
    for feature in FEATURES + BASELINE_FEATURES:
        values = np.array([f[feature] for f in finals])
        ok = np.isfinite(values)
        kind = "topology" if feature in FEATURES else "baseline"
        print(
            f"   {feature:14s} {kind:9s} {pearson_r(values[ok], accuracy[ok]):9.3f} "
            f"{kendall_tau(values[ok], accuracy[ok]):9.3f}"
        )

    calibration = CalibrationSet()
    for run, final in zip(runs, finals, strict=True):
        features = {k: final[k] for k in FEATURES + BASELINE_FEATURES}
        calibration.add(str(run["config"]["seed"]), final["test_accuracy"], features)
    predictor = GeneralizationPredictor(topology=FEATURES).fit(calibration)
    loo = predictor.score(calibration)["loo_mae"]
    print("\n2. Leave-one-out MAE of the test-accuracy predictor (feature choice inside each fold)")
    for name in ("mean", "topology", "baselines", "both", "chosen"):
        print(f"   {name:10s} {loo[name]:.4f}")
    print(f"   fitted on all runs: {predictor!r}")

    print("\n3. Within-run correlation with test accuracy across epochs (paper: E0_1, r = -0.92)")
    for feature in FEATURES:
        within = np.array(
            [
                pearson_r(
                    [e[feature] for e in r["epochs"]], [e["test_accuracy"] for e in r["epochs"]]
                )
                for r in runs
            ]
        )
        within = within[np.isfinite(within)]
        print(
            f"   {feature:12s} median r {np.median(within):6.3f}, mean r {within.mean():6.3f}, "
            f"negative in {np.mean(within < 0):4.0%} of runs"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--retrain", action="store_true", help="ignore the cache")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    configs = sample_configs(args.runs)
    key = {"configs": [asdict(c) for c in configs], "epochs": args.epochs}
    if not args.retrain and os.path.exists(CACHE):
        with open(CACHE) as f:
            cached = json.load(f)
        if cached["key"] == key:
            print(f"using the cached family in {CACHE}")
            report(cached["runs"])
            return
    torch.set_num_threads(max(1, torch.get_num_threads()))
    start, runs = time.perf_counter(), []
    for i, config in enumerate(configs):
        runs.append(train_one(config, args.epochs))
        final = runs[-1]["epochs"][-1]
        print(
            f"run {i + 1:2d}/{len(configs)} {config.arch} w={config.width} d={config.depth} "
            f"noise={config.label_noise} frac={config.train_fraction}: test acc "
            f"{final['test_accuracy']:.3f}  [{time.perf_counter() - start:.0f} s]",
            flush=True,
        )
    os.makedirs(os.path.dirname(CACHE), exist_ok=True)
    with open(CACHE, "w") as f:
        json.dump({"key": key, "runs": runs}, f)
    report(runs)
    print(f"\ntrained in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

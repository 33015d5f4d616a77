"""Is the between-block SW matrix a fingerprint of the architecture? Specificity and sensitivity.

    .venv/bin/python benchmarks/sw_specificity.py [--retrain] [--figure docs/sw_specificity.png]

The PNNL paper (seed 001) computes, for a trained network, the L×L matrix of sliced-Wasserstein
distances between its blocks' H0 diagrams and reports that it is *specific* to the architecture
(over 100 seeds of ResNet-18 the matrices correlate at ρ ≈ 0.91) and *sensitive* to the input (it
changes under input noise). Measured here on our models:

* three architectures with the same number of blocks (4 hidden blocks + the output, so their
  matrices are comparable): ``cnn`` (4 conv3×3-BN-ReLU blocks, 16-32-32-32 channels, global average
  pooling, linear head), ``cnn_wide`` (the same with 5×5 kernels and 24-48-48-48 channels) and
  ``mlp`` (4 Linear-ReLU blocks of width 128 on the flattened image);
* trained from :data:`SEEDS` seeds each with Adam on digits (1,347 images, 20 epochs) and on the
  Fashion-MNIST subsample (4,000 images, 8 epochs) of ``bench_data.load``, average-pooled to
  14×14 to keep the study within minutes on a CPU;
* each trained model measured with ``measure(metrics=("sw",))`` on a fixed probe of 30 training
  images per class; the matrix is the record's class-averaged ``sw``.

Printed, per data set: the Pearson correlation of the upper triangles between every pair of runs
of one architecture (specificity: high means seeds agree) and between runs of different
architectures (low means the matrix tells architectures apart); and the sensitivity: the
correlation of each model's matrix with Gaussian noise of σ (in units of the standardized input)
added to the probe inputs against its clean matrix, and the mean absolute change of its entries.
Runs are cached in ``benchmarks/.cache/sw_specificity.json`` as each finishes (resumable). About
15 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench_data import load
from topo_monitor import measure

CACHE = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".cache", "sw_specificity.json")
SEEDS = tuple(range(6))
ARCHS = ("cnn", "cnn_wide", "mlp")
EPOCHS = {"digits": 20, "fashion": 8}
NOISE = (0.0, 0.1, 0.3, 1.0)
PER_CLASS = 30


def network(arch: str, side: int) -> nn.Module:
    if arch == "mlp":
        layers: list[nn.Module] = [nn.Flatten()]
        width = side * side
        for _ in range(4):
            layers.append(nn.Sequential(nn.Linear(width, 128), nn.ReLU()))
            width = 128
        return nn.Sequential(*layers, nn.Linear(width, 10))
    kernel, channels = (5, (24, 48, 48, 48)) if arch == "cnn_wide" else (3, (16, 32, 32, 32))
    layers, c_in = [], 1
    for c in channels:
        layers.append(
            nn.Sequential(
                nn.Conv2d(c_in, c, kernel, padding=kernel // 2), nn.BatchNorm2d(c), nn.ReLU()
            )
        )
        c_in = c
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, 10))


def blocks(model: nn.Module) -> list[str]:
    """The four hidden blocks (the model output is added by ``measure``)."""
    return [name for name, m in model.named_children() if isinstance(m, nn.Sequential)]


def train(arch: str, dataset: str, seed: int, data: tuple) -> nn.Module:
    x, y, _, _ = data
    torch.manual_seed(seed)
    model = network(arch, x.shape[-1])
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(EPOCHS[dataset]):
        for batch in torch.randperm(len(y), generator=g).split(64):
            optimizer.zero_grad()
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    return model.eval()


def probe(data: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    x, y, _, _ = data
    chosen = torch.cat([torch.nonzero(y == c).ravel()[:PER_CLASS] for c in range(10)])
    return x[chosen], y[chosen]


def run_all(runs: dict) -> None:
    """Train and measure every run missing from ``runs``, saving the cache after each."""
    for dataset in EPOCHS:
        data = load(dataset)
        if dataset == "fashion":
            data = (F.avg_pool2d(data[0], 2), data[1], F.avg_pool2d(data[2], 2), data[3])
        x_probe, y_probe = probe(data)
        noise = torch.randn(x_probe.shape, generator=torch.Generator().manual_seed(0))
        for arch, seed in itertools.product(ARCHS, SEEDS):
            key = f"{dataset}/{arch}/{seed}"
            if key in runs:
                continue
            start = time.perf_counter()
            model = train(arch, dataset, seed, data)
            with torch.no_grad():
                accuracy = float((model(data[2]).argmax(1) == data[3]).float().mean())
            matrices = {
                str(sigma): measure(
                    model, (x_probe + sigma * noise, y_probe), blocks=blocks(model), metrics=("sw",)
                ).sw
                for sigma in NOISE
            }
            runs[key] = {"test_acc": accuracy, "sw": matrices}
            with open(CACHE, "w") as f:
                json.dump(runs, f)
            print(
                f"  {dataset} {arch} seed {seed}: test acc {accuracy:.3f} "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )


def upper(matrix: list[list[float]]) -> np.ndarray:
    m = np.asarray(matrix, dtype=float)
    return m[np.triu_indices(len(m), k=1)]


def correlation(a: list[list[float]], b: list[list[float]]) -> float:
    return float(np.corrcoef(upper(a), upper(b))[0, 1])


def report(runs: dict) -> dict:
    summary: dict = {}
    for dataset in EPOCHS:
        print(f"\n=== {dataset}")
        clean = {
            (arch, seed): runs[f"{dataset}/{arch}/{seed}"]["sw"]["0.0"]
            for arch in ARCHS
            for seed in SEEDS
        }
        for arch in ARCHS:
            acc = [runs[f"{dataset}/{arch}/{s}"]["test_acc"] for s in SEEDS]
            within = [
                correlation(clean[arch, s], clean[arch, t])
                for s, t in itertools.combinations(SEEDS, 2)
            ]
            summary[dataset, arch] = within
            print(
                f"   {arch:9s} test acc {np.mean(acc):.3f}; seeds vs seeds: ρ median "
                f"{np.median(within):.2f} (range {min(within):.2f} .. {max(within):.2f}, "
                f"{len(within)} pairs)"
            )
        for a, b in itertools.combinations(ARCHS, 2):
            across = [correlation(clean[a, s], clean[b, t]) for s in SEEDS for t in SEEDS]
            summary[dataset, f"{a} vs {b}"] = across
            print(
                f"   {a} vs {b}: ρ median {np.median(across):.2f} "
                f"(range {min(across):.2f} .. {max(across):.2f})"
            )
        print("   sensitivity (input noise σ): ρ with the clean matrix, mean |change| of entries")
        for sigma in NOISE[1:]:
            rho, change = [], []
            for arch, seed in itertools.product(ARCHS, SEEDS):
                noisy = runs[f"{dataset}/{arch}/{seed}"]["sw"][str(sigma)]
                rho.append(correlation(clean[arch, seed], noisy))
                change.append(np.mean(np.abs(upper(noisy) - upper(clean[arch, seed]))))
            summary[dataset, f"noise {sigma}"] = rho
            print(
                f"     σ = {sigma:<4g} ρ median {np.median(rho):.2f}, "
                f"mean |change| {np.mean(change):.3f}"
            )
    return summary


def figure(runs: dict, summary: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6), layout="constrained")
    labels = ["b1", "b2", "b3", "b4", "out"]
    for ax, (arch, seed) in zip(axes[:2], (("cnn", 0), ("cnn", 1)), strict=True):
        m = np.asarray(runs[f"digits/{arch}/{seed}"]["sw"]["0.0"])
        image = ax.imshow(m, cmap="viridis")
        ax.set_xticks(range(5), labels)
        ax.set_yticks(range(5), labels)
        ax.set_title(f"digits, {arch}, seed {seed}: SW between blocks", fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.8)
    ax = axes[2]
    groups = [
        *((f"{arch}\nseeds", arch) for arch in ARCHS),
        *((f"{a}\nvs {b}", f"{a} vs {b}") for a, b in itertools.combinations(ARCHS, 2)),
    ]
    for d, (dataset, color) in enumerate((("digits", "C0"), ("fashion", "C1"))):
        for i, (_, key) in enumerate(groups):
            values = summary[dataset, key]
            ax.scatter(
                np.full(len(values), i + 0.2 * d - 0.1),
                values,
                s=6,
                color=color,
                alpha=0.5,
                label=dataset if i == 0 else None,
            )
    ax.set_xticks(range(len(groups)), [g for g, _ in groups], fontsize=7)
    ax.set_ylabel("ρ between SW matrices")
    ax.set_title("specificity: same architecture vs different", fontsize=9)
    ax.legend(fontsize=8)
    ax = axes[3]
    for dataset, color in (("digits", "C0"), ("fashion", "C1")):
        medians = [1.0] + [np.median(summary[dataset, f"noise {s}"]) for s in NOISE[1:]]
        ax.plot(NOISE, medians, "o-", color=color, label=dataset)
    ax.set_xlabel("input noise σ (standardized units)")
    ax.set_ylabel("median ρ with the clean matrix")
    ax.set_title("sensitivity to input noise", fontsize=9)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    print(f"figure: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--figure", default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)  # small models; the machine has 2 cores
    runs: dict = {}
    if not args.retrain and os.path.exists(CACHE):
        with open(CACHE) as f:
            runs = json.load(f)
    os.makedirs(os.path.dirname(CACHE), exist_ok=True)
    start = time.perf_counter()
    run_all(runs)
    print(f"trained and measured in {time.perf_counter() - start:.0f} s")
    summary = report(runs)
    if args.figure:
        figure(runs, summary, args.figure)


if __name__ == "__main__":
    main()

"""The early-stopping study's data families and their models: two real data sets and four made
here, chosen to differ in what drives a representation's topology (input dimension and kind,
intrinsic structure, number of classes, difficulty).

=============  ======================================================  =======  ========  =======
family         what it is                                              input    classes   train
=============  ======================================================  =======  ========  =======
``digits``     scikit-learn's 8x8 digits                               image    10        1347
``fashion``    Fashion-MNIST, average-pooled to 14x14 (Debian package)  image    10        2000
``signals``    1-D waveforms with random frequency, phase, scale, noise signal   6         1800
``manifold``   Gaussian blobs along a swiss roll, curved into 24-D      vector   8         1600
``teacher``    Gaussian inputs labelled by a random tanh network        vector   5         2000
``sequence``   token strings; the label is the symbol planted 4 times  tokens   7         2000
=============  ======================================================  =======  ========  =======

Each family comes with two architectures (``ARCHS``): an MLP, and the model its input kind calls
for (a CNN for images and signals, a residual MLP with LayerNorm for vectors, a one-layer
transformer for tokens). The made families are drawn once from a fixed seed; a run's seed draws
its initialization, batch order and label noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench_data import load

FAMILIES = ("digits", "fashion", "signals", "manifold", "teacher", "sequence")
KIND = {
    "digits": "image",
    "fashion": "image",
    "signals": "signal",
    "manifold": "vector",
    "teacher": "vector",
    "sequence": "tokens",
}
ARCHS = {"image": ("mlp", "cnn"), "signal": ("mlp", "cnn"), "vector": ("mlp", "resmlp")}
ARCHS["tokens"] = ("mlp", "transformer")
VOCAB, LENGTH = 7, 16


@dataclass(frozen=True)
class Data:
    X: torch.Tensor
    y: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    classes: int


def family(name: str) -> Data:
    """The labelled and test data of a family (inputs standardized; tokens as int64)."""
    if name in ("digits", "fashion"):
        X, y, X_test, y_test = load(name)
        if name == "fashion":
            X, X_test = F.avg_pool2d(X, 2), F.avg_pool2d(X_test, 2)
            keep = np.random.default_rng(7).permutation(len(y))[:2000]
            X, y, X_test, y_test = X[keep], y[keep], X_test[:1000], y_test[:1000]
        return Data(X, y, X_test, y_test, 10)
    seeds = {"signals": 11, "manifold": 12, "teacher": 13, "sequence": 14}
    rng = np.random.default_rng(seeds[name])
    n_train = {"signals": 1800, "manifold": 1600, "teacher": 2000, "sequence": 2000}[name]
    X, y, classes = MAKERS[name](rng, n_train + 1500)
    if X.dtype != np.int64:
        mean, std = X[:n_train].mean(), X[:n_train].std()
        X = ((X - mean) / std).astype(np.float32)
    X, y = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    return Data(X[:n_train], y[:n_train], X[n_train:], y[n_train:], classes)


def signals(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Six waveforms (sine, square, triangle, sawtooth, pulse train, chirp) of length 64, with
    random frequency, phase, amplitude, offset and noise: shape (n, 1, 64)."""
    t = np.linspace(0, 1, 64, endpoint=False)
    y = rng.integers(0, 6, n)
    freq = rng.uniform(2, 6, (n, 1))
    phase = rng.uniform(0, 1, (n, 1))
    u = (freq * t + phase) % 1.0
    waves = np.stack(
        [
            np.sin(2 * np.pi * u),
            np.sign(np.sin(2 * np.pi * u)),
            4 * np.abs(u - 0.5) - 1,
            2 * u - 1,
            (u < 0.2).astype(float) * 2 - 1,
            np.sin(2 * np.pi * (freq * t + 3 * t**2 + phase)),
        ]
    )[y, np.arange(n)]
    X = rng.uniform(0.5, 2, (n, 1)) * waves + rng.normal(0, 0.5, (n, 1))
    X = X + rng.normal(0, 0.4, X.shape)
    return X[:, None, :].astype(np.float32), y, 6


def manifold(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Eight Gaussian blobs along a swiss roll (2 intrinsic dimensions), curved into 24-D by a
    fixed random smooth map, with noise: neighbouring classes overlap along the roll."""
    centres = np.linspace(1.5 * np.pi, 4.5 * np.pi, 8)
    y = rng.integers(0, 8, n)
    s = centres[y] + rng.normal(0, 0.35, n)
    h = rng.uniform(-1, 1, n)
    roll = np.stack([s * np.cos(s), h * 6, s * np.sin(s)], 1) / 6
    W1, W2 = rng.normal(0, 1, (3, 48)), rng.normal(0, 1 / math.sqrt(48), (48, 24))
    X = np.tanh(roll @ W1) @ W2 + 0.3 * roll @ rng.normal(0, 1, (3, 24))
    return (X + rng.normal(0, 0.08, X.shape)).astype(np.float32), y, 8


def teacher(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Gaussian inputs in 32-D labelled by the argmax of a random 2-layer tanh network with 5
    outputs: exactly learnable, with boundaries curved at every scale."""
    X = rng.normal(0, 1, (n, 32))
    W1, W2 = rng.normal(0, 1 / math.sqrt(32), (32, 64)), rng.normal(0, 1, (64, 5))
    return X.astype(np.float32), np.argmax(np.tanh(2 * X @ W1) @ W2, 1), 5


def sequence(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Strings of 16 tokens from 7 symbols, one of them planted 4 times among random others;
    the label is the planted symbol (a count over positions, 7 classes; sometimes another symbol
    is as frequent by chance, so the best accuracy is below 1)."""
    y = rng.integers(0, VOCAB, n)
    X = (y[:, None] + rng.integers(1, VOCAB, (n, LENGTH))) % VOCAB
    planted = np.argsort(rng.random((n, LENGTH)), 1)[:, :4]
    X[np.arange(n)[:, None], planted] = y[:, None]
    return X.astype(np.int64), y, VOCAB


MAKERS = {"signals": signals, "manifold": manifold, "teacher": teacher, "sequence": sequence}


class Residual(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm, self.fc = nn.LayerNorm(width), nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.relu(self.fc(self.norm(x)))


class Tokens(nn.Module):
    """A one-layer transformer encoder on tokens with learned positions, mean-pooled."""

    def __init__(self, classes: int, width: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, width)
        self.position = nn.Parameter(torch.randn(LENGTH, width) * 0.1)
        self.encoder = nn.TransformerEncoderLayer(
            width, 4, 2 * width, dropout=0.0, batch_first=True
        )
        self.pool = nn.Sequential(nn.Linear(width, width), nn.ReLU())
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.embed(x) + self.position)
        return self.head(self.pool(h.mean(1)))


def network(name: str, arch: str, data: Data) -> nn.Module:
    """The family's ``arch``; every model ends in a hidden block and a linear head."""
    shape, k = tuple(data.X.shape[1:]), data.classes
    if arch == "transformer":
        return Tokens(k)
    if arch == "mlp":
        first = (
            [nn.Embedding(VOCAB, 16), nn.Flatten(), nn.Linear(LENGTH * 16, 256)]
            if KIND[name] == "tokens"
            else [nn.Flatten(), nn.Linear(math.prod(shape), 256)]
        )
        return nn.Sequential(*first, nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, k))
    if arch == "resmlp":
        return nn.Sequential(
            nn.Linear(shape[0], 128), Residual(128), Residual(128), Residual(128), nn.Linear(128, k)
        )
    # A CNN: two conv-norm-ReLU-pool stages, in 1-D for signals (kernel 5) or 2-D for images.
    signal = KIND[name] == "signal"
    conv, norm, pool = (
        (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d)
        if signal
        else (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d)
    )
    size = 5 if signal else 3

    def stage(channels_in: int, channels_out: int) -> list[nn.Module]:
        return [
            conv(channels_in, channels_out, size, padding=size // 2),
            norm(channels_out),
            nn.ReLU(),
            pool(2),
        ]

    features = 32 * math.prod(side // 4 for side in shape[1:])
    return nn.Sequential(
        *stage(1, 16),
        *stage(16, 32),
        nn.Flatten(),
        nn.Linear(features, 128),
        nn.ReLU(),
        nn.Linear(128, k),
    )

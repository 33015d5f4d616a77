"""The benchmarks' data, offline (digits, and Fashion-MNIST from the Debian package), and how they
score a model on it.

``apt-get install dataset-fashion-mnist`` puts its IDX files in :data:`FASHION`
(``dpkg -L dataset-fashion-mnist``). The subsamples are fixed (seed 2024): digits keeps 450 random
images for testing and 1347 labelled; Fashion-MNIST 400 training images per class (4,000) and 200
test images per class (2,000).
"""

from __future__ import annotations

import gzip

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

FASHION = "/usr/share/datasets/fashion-mnist"


def read_idx(path: str) -> np.ndarray:
    """An IDX file of unsigned bytes (gzipped or not) as an array of its shape: the format of
    (Fashion-)MNIST."""
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes (magic {data[:4]!r})")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def stratified(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``per_class`` items of each of the 10 classes (no repeats)."""
    return np.sort(
        np.concatenate(
            [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(10)]
        )
    )


def load(dataset: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(labelled inputs, labels, test inputs, test labels), standardized, shaped (n, 1, H, W)."""
    rng = np.random.default_rng(2024)
    if dataset == "digits":
        digits = load_digits()
        X, y = digits.images.astype(np.float32), digits.target
        order = rng.permutation(len(y))
        test, pool = order[:450], order[450:]
        X_pool, y_pool, X_test, y_test = X[pool], y[pool], X[test], y[test]
    else:
        X_all = read_idx(f"{FASHION}/train-images-idx3-ubyte.gz").astype(np.float32)
        y_all = read_idx(f"{FASHION}/train-labels-idx1-ubyte.gz").astype(np.int64)
        X_t = read_idx(f"{FASHION}/t10k-images-idx3-ubyte.gz").astype(np.float32)
        y_t = read_idx(f"{FASHION}/t10k-labels-idx1-ubyte.gz").astype(np.int64)
        pool, test = stratified(y_all, 400, rng), stratified(y_t, 200, rng)
        X_pool, y_pool, X_test, y_test = X_all[pool], y_all[pool], X_t[test], y_t[test]
    mean, std = X_pool.mean(), X_pool.std()

    def tensor(X: np.ndarray) -> torch.Tensor:
        return torch.from_numpy((X - mean) / std).unsqueeze(1)

    return tensor(X_pool), torch.as_tensor(y_pool), tensor(X_test), torch.as_tensor(y_test)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Cross-entropy and accuracy on ``(x, y)`` in eval mode (dropout off), the mode left as it
    was: what the benchmarks record as training loss and test accuracy."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(x)
    model.train(was_training)
    return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())

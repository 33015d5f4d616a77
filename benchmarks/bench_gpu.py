"""H0 against the ``torch.cdist`` floor, and the monitor against a training epoch, on one device.

Two measurements, on ``--device`` (default: ``cuda`` when available, else ``cpu``):

1. H0 of Gaussian float32 clouds (fixed seed) on the device: ``topo_monitor.h0_death_times(X)``
   against ``torch.cdist(X, X)``, the float32 distance matrix alone (the floor below which no dense
   method can go), each the fastest of ``--repeats`` runs after a warm-up, the device synchronised
   around every run. Printed as ``H0/cdist n=... d=...: R.RRx (ours ... ms, cdist ... ms)``.
2. The monitor's cost against training: one training epoch of ResNet-18
   (``torchvision.models.resnet18(num_classes=10)``, SGD, batches of 128) on random CIFAR-shaped
   images (3×32×32), and one ``topo_monitor.measure(model, (x_probe, y_probe))`` of a probe of 10
   classes × 50 images, both on the device. Printed as ``monitor/epoch: R.RRR (...)``.

On CPUs the tree search is the NumPy Prim loop on a float32 matrix and H0 costs little more than
the matrix (``bench_persistence.py`` measures it there against gudhi as well). On GPUs Prim's n - 1
sequential steps are each a few kernel launches: the loop, not the matrix, sets the time, and the
ratio to cdist grows with n.

``--device cpu --quick`` (small clouds, 64 training images, a 10 × 5 probe) runs in well under
30 s: a smoke test of this script (``tests/test_bench_gpu.py``), not a measurement.

Usage::

    .venv/bin/python benchmarks/bench_gpu.py                      # cuda if available
    .venv/bin/python benchmarks/bench_gpu.py --device cpu --quick
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

from topo_monitor import h0_death_times, measure


def synchronise(device: torch.device) -> None:
    """Wait for the device's queued work, so that a wall-clock time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fastest(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` runs of ``fn``, after one warm-up run."""
    fn()
    synchronise(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronise(device)
        best = min(best, time.perf_counter() - start)
    return best


def h0_ratios(device: torch.device, sizes: list[int], dims: list[int], repeats: int) -> None:
    """Print H0's time over cdist's, per (n, d), for float32 clouds on ``device``."""
    rng = np.random.default_rng(0)
    for d in dims:
        for n in sizes:
            X = torch.from_numpy(rng.standard_normal((n, d)).astype(np.float32)).to(device)
            ours = fastest(lambda X=X: h0_death_times(X), device, repeats)
            floor = fastest(lambda X=X: torch.cdist(X, X), device, repeats)
            print(
                f"H0/cdist n={n} d={d}: {ours / floor:.2f}x "
                f"(ours {1e3 * ours:.1f} ms, cdist {1e3 * floor:.1f} ms)",
                flush=True,
            )


def train_epoch(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int
) -> None:
    """One epoch of SGD with cross-entropy over ``images`` in batches of ``batch``."""
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    for start in range(0, len(images), batch):
        optimiser.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(
            model(images[start : start + batch]), labels[start : start + batch]
        )
        loss.backward()
        optimiser.step()


def monitor_cost(device: torch.device, images: int, per_class: int, batch: int) -> None:
    """Print one ``measure`` of a 10 × ``per_class`` probe over one training epoch of ResNet-18."""
    from torchvision.models import resnet18

    generator = torch.Generator().manual_seed(0)
    model = resnet18(num_classes=10).to(device)
    x_train = torch.randn(images, 3, 32, 32, generator=generator).to(device)
    y_train = torch.randint(0, 10, (images,), generator=generator).to(device)
    x_probe = torch.randn(10 * per_class, 3, 32, 32, generator=generator).to(device)
    y_probe = torch.arange(10).repeat_interleave(per_class).to(device)

    train_epoch(model, x_train[:batch], y_train[:batch], batch)  # warm-up: kernels, allocator
    synchronise(device)
    start = time.perf_counter()
    train_epoch(model, x_train, y_train, batch)
    synchronise(device)
    epoch = time.perf_counter() - start

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny --quick probes: PHdim NaN for too few points
        measure(model, (x_probe[:20], y_probe[:20]))  # warm-up
        synchronise(device)
        start = time.perf_counter()
        measure(model, (x_probe, y_probe))
        synchronise(device)
    monitor = time.perf_counter() - start
    print(
        f"monitor/epoch: {monitor / epoch:.3f} (measure of a 10 x {per_class} probe "
        f"{monitor:.2f} s, training epoch of {images} images {epoch:.2f} s)",
        flush=True,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = "cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument("--device", default=default, help=f"torch device (default {default})")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test (< 30 s)")
    parser.add_argument("--sizes", type=int, nargs="+", help="cloud sizes (default 1000 3000)")
    parser.add_argument("--dims", type=int, nargs="+", help="dimensions (default 64 512)")
    parser.add_argument("--repeats", type=int, help="timed runs, fastest kept (default 5)")
    parser.add_argument("--images", type=int, help="training images (default 2000)")
    parser.add_argument("--per-class", type=int, help="probe images per class (default 50)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    quick = {"sizes": [200, 500], "dims": [64], "repeats": 2, "images": 64, "per_class": 5}
    full = {"sizes": [1000, 3000], "dims": [64, 512], "repeats": 5, "images": 2000, "per_class": 50}
    chosen = quick if args.quick else full
    sizes, dims = args.sizes or chosen["sizes"], args.dims or chosen["dims"]
    repeats = args.repeats or chosen["repeats"]
    images = args.images or chosen["images"]
    per_class = args.per_class or chosen["per_class"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"device {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs, 1-min load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    h0_ratios(device, sizes, dims, repeats)
    monitor_cost(device, images, per_class, batch=32 if args.quick else 128)


if __name__ == "__main__":
    main()

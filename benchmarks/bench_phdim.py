"""Accuracy of PHdim against TwoNN and MLE on manifolds of known intrinsic dimension.

What is measured: ``topo_monitor.ph_dimension`` (default sizes, 3 draws per size) against
the TwoNN (Facco et al. 2017) and MLE (Levina & Bickel 2005, Haro et al. 2008) estimators of
scikit-dimension (``skdim.id.TwoNN()`` and ``skdim.id.MLE()`` with their default parameters: TwoNN
fits a line after discarding the 10 % largest ratios, MLE uses 20 neighbours and combines the
pointwise estimates by their harmonic mean). The clouds, in the manner of Table 1 of Magai &
Ayzenberg (2022), are

* the uniform cube [0, 1]^d, and
* the uniform sphere S^d (normalised Gaussians in R^(d+1), intrinsic dimension d),

for d = 2, 4, 8, 16, 24 with n = 2000 points each, embedded isometrically in R^128 by a random
orthonormal basis (fixed seed). The script prints one row per cloud (manifold, true d, the three
estimates, and the R² of the PHdim fit), then the total time spent in each estimator, then the
mean |relative error| of each estimator over all clouds.

Targets: none is enforced. All three estimators are expected to be close at low d and increasingly
low at high d, since from a few thousand points the MST length (PHdim) and the neighbour-distance
ratios (TwoNN, MLE) are still far from their asymptotic regime. Measured with the defaults: mean
|relative error| PHdim 10.7 %, TwoNN 10.1 %, MLE 13.5 % (all within 8 % at d <= 4, 21-31 % low
at d = 24).

Run time: the default (n = 2000, 10 clouds) takes about 10 s on an idle 2-core machine, PHdim
about 0.35 s per cloud and TwoNN and MLE under 0.1 s each. Times are very sensitive to
other processes competing for the cores: one run at a load average of about 5 took 4.5 min, 260 s
of it in PHdim (before PHdim was made 3× faster). ``--n 500`` makes a quick run of a few seconds.

Usage::

    .venv/bin/python benchmarks/bench_phdim.py
    .venv/bin/python benchmarks/bench_phdim.py --n 500 --dims 2 8    # quick run
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import torch

from topo_monitor import ph_dimension

ESTIMATORS = ("PHdim", "TwoNN", "MLE")


def sample_manifold(kind: str, d: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """n uniform points of the d-cube or of the d-sphere, in their own coordinates."""
    if kind == "cube":
        return rng.uniform(0.0, 1.0, size=(n, d))
    if kind == "sphere":
        g = rng.standard_normal((n, d + 1))
        return g / np.linalg.norm(g, axis=1, keepdims=True)
    raise ValueError(f"unknown manifold {kind!r}")


def embed(points: np.ndarray, ambient: int, rng: np.random.Generator) -> np.ndarray:
    """The points mapped isometrically into R^ambient by a random orthonormal basis."""
    k = points.shape[1]
    if k > ambient:
        raise ValueError(f"cannot embed {k} coordinates isometrically in R^{ambient}")
    basis, _ = np.linalg.qr(rng.standard_normal((ambient, k)))  # (ambient, k), orthonormal columns
    return points @ basis.T


def estimate(name: str, X: np.ndarray, seed: int) -> tuple[float, float]:
    """One intrinsic-dimension estimate of the cloud X, with the R² of the fit (NaN if none)."""
    if name == "PHdim":
        res = ph_dimension(torch.from_numpy(X), generator=seed)
        return res.value, res.r2
    import skdim

    if name == "TwoNN":
        return float(skdim.id.TwoNN().fit(X).dimension_), float("nan")
    if name == "MLE":
        return float(skdim.id.MLE().fit(X).dimension_), float("nan")
    raise ValueError(f"unknown estimator {name!r}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="points per cloud")
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 4, 8, 16, 24])
    parser.add_argument("--manifolds", nargs="+", default=["cube", "sphere"])
    parser.add_argument("--ambient", type=int, default=128, help="embedding dimension")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch threads"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    import skdim  # noqa: F401  (fail early, before any work, when scikit-dimension is missing)

    load_before = os.getloadavg()[0]
    rng = np.random.default_rng(args.seed)
    rows: list[tuple[str, int, dict[str, float], float]] = []
    elapsed = dict.fromkeys(ESTIMATORS, 0.0)
    for kind in args.manifolds:
        for d in args.dims:
            X = embed(sample_manifold(kind, d, args.n, rng), args.ambient, rng)
            values: dict[str, float] = {}
            fits: dict[str, float] = {}
            for name in ESTIMATORS:
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # a NaN estimate shows up in the table anyway
                    values[name], fits[name] = estimate(name, X, args.seed)
                elapsed[name] += time.perf_counter() - start
            rows.append((kind, d, values, fits["PHdim"]))

    print(
        f"n = {args.n} points per cloud, embedded in R^{args.ambient}, "
        f"{torch.get_num_threads()} torch threads"
    )
    header = f"{'manifold':<10} {'true d':>6} {'PHdim':>7} {'TwoNN':>7} {'MLE':>7} {'PHdim R²':>9}"
    print(header)
    print("-" * len(header))
    for kind, d, values, r2 in rows:
        est = " ".join(f"{values[name]:>7.2f}" for name in ESTIMATORS)
        print(f"{kind:<10} {d:>6} {est} {r2:>9.4f}")

    print()
    print(
        f"1-min load average: {load_before:.2f} before, {os.getloadavg()[0]:.2f} after "
        f"(on {os.cpu_count()} cores; other work on the machine inflates the times)"
    )
    print()
    print("Elapsed time per estimator (all clouds):")
    for name in ESTIMATORS:
        print(f"  {name:<6} {elapsed[name]:7.2f} s")

    print()
    print("Mean |relative error| per estimator:")
    for name in ESTIMATORS:
        errors = [abs(values[name] - d) / d for _, d, values, _ in rows]
        print(f"  {name:<6} {100 * np.nanmean(errors):6.1f} %")


if __name__ == "__main__":
    main()

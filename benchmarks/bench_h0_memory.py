"""Time and peak memory of H0 (``h0_death_times``) on the dense path and on the points path.

Issue 17: the dense path holds the n×n matrix of squared distances (1.6 GB at n = 20000 in
float32, 10 GB at 50000); the points path (``mst.prim_mst_from_points``, chosen by ``mst_edges``
above ``mst.DENSE_BYTES``) computes each distance row when Prim's algorithm needs it, in O(n·d)
memory. Here both paths are forced, by setting ``mst.DENSE_BYTES``, on Gaussian float32 clouds
(fixed seed) of n = 5000, 20000, 50000 points in d = 64 dimensions, and timed side by side.

Each (path, n) runs in a fresh subprocess, so that peaks do not mix: the peak is the process's
maximum resident set size (``getrusage(RUSAGE_SELF).ru_maxrss``; ``tracemalloc`` does not see
torch's allocations), and "added" is that peak minus the one reached before the measured call
(interpreter, torch, the cloud itself and a small warm-up call). The dense path is skipped where its
matrix alone would exceed ``--budget-gb``. The last column, the total MST length, must agree
between the two paths of one n (they are compared to rtol 1e-6: the output is float32).

Usage::

    .venv/bin/python benchmarks/bench_h0_memory.py                  # about 2 min on 2 cores
    .venv/bin/python benchmarks/bench_h0_memory.py --sizes 5000 20000   # about 40 s
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch

from topo_monitor.tda import mst
from topo_monitor.tda.persistence import h0_death_times

PATHS = {"dense": 2**62, "points": 0}
"""``mst.DENSE_BYTES`` that forces each path."""


def peak_rss_bytes() -> int:
    """Maximum resident set size of this process so far (Linux reports kibibytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(path: str, n: int, d: int, seed: int) -> dict[str, float]:
    """One measured ``h0_death_times`` call, in this process (meant to be a fresh one)."""
    X = torch.from_numpy(np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32))
    mst.DENSE_BYTES = PATHS[path]
    h0_death_times(X[:100])  # warm-up: imports, thread pools, BLAS
    before = peak_rss_bytes()
    start = time.perf_counter()
    deaths = h0_death_times(X)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "peak": peak_rss_bytes(),
        "added": peak_rss_bytes() - before,
        "length": float(deaths.double().sum()),
    }


def run_child(path: str, n: int, d: int, seed: int) -> dict[str, float]:
    """:func:`measure` in a fresh interpreter; its result comes back as JSON on stdout."""
    command = [sys.executable, __file__, "--child", path, "--sizes", str(n), "--dim", str(d)]
    command += ["--seed", str(seed)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000, 50000])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--budget-gb", type=float, default=8.0, help="skip the dense path above this matrix size"
    )
    parser.add_argument("--child", choices=sorted(PATHS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.sizes[0], args.dim, args.seed)))
        return

    print(
        f"H0 of Gaussian float32 clouds, d = {args.dim}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
        f"mst.DENSE_BYTES = {mst.DENSE_BYTES / 2**30:g} GiB"
    )
    header = f"{'n':>6}  {'path':<6}  {'time (s)':>9}  {'peak RSS':>9}  {'added':>9}  MST length"
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        lengths = []
        for path in PATHS:
            matrix_gb = n * n * 4 / 1e9  # float32 squared distances
            if path == "dense" and matrix_gb > args.budget_gb:
                print(f"{n:>6}  {path:<6}  skipped: would need {matrix_gb:.1f} GB")
                continue
            r = run_child(path, n, args.dim, args.seed)
            lengths.append(r["length"])
            print(
                f"{n:>6}  {path:<6}  {r['seconds']:>9.2f}  {r['peak'] / 1e9:>7.2f}GB  "
                f"{r['added'] / 1e9:>7.3f}GB  {r['length']:.6f}",
                flush=True,
            )
        if len(lengths) == 2 and not math.isclose(*lengths, rel_tol=1e-6):
            raise SystemExit(f"n = {n}: the two paths disagree ({lengths})")


if __name__ == "__main__":
    main()

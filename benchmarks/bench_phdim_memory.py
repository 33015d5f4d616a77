"""Peak memory and time of PHdim (``ph_dimension``) on large clouds, each in a fresh process.

Issue 26: ``ph_dimension`` used to hold the dense squared distances of the whole cloud (a
30,000-point cloud, d = 64, float32, peaked at 10.5 GB). It now builds no dense matrix above
``mst.DENSE_BYTES`` (1 GiB): a cloud too large for one has each subsample's tree searched from the
subsample's points (dense while the subsample's matrix fits, distance rows as needed above).

For each n, a fresh interpreter draws a Gaussian float32 cloud (fixed seed, d = ``--dim``), runs a
small warm-up fit (imports, thread pools, BLAS), then the measured ``ph_dimension(X)`` (default
sizes: 10 from n/10 to n, 3 draws each). "peak" is the child's maximum resident set size
(``getrusage(RUSAGE_SELF)`` in the child, which ends right after the call); "children" is what
this process reads from ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` once the child has exited, the
largest of all children so far; "added" is the child's peak minus the one it had reached before
the measured call (interpreter, torch, the cloud, the warm-up). ``--dense-bytes`` sets
``mst.DENSE_BYTES`` in the child, to show the bound at work on smaller clouds.

Target: at most 2.5 GB at n = 30,000, d = 64.

Usage::

    .venv/bin/python benchmarks/bench_phdim_memory.py                 # n = 30,000: a few minutes
    .venv/bin/python benchmarks/bench_phdim_memory.py --sizes 5000 --dense-bytes 16000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch

from topo_monitor import ph_dimension
from topo_monitor.tda import mst

TARGET_GB = 2.5
TARGET_N = 30000


def peak_rss_bytes(who: int = resource.RUSAGE_SELF) -> int:
    """Maximum resident set size (Linux reports kibibytes) of this process or of its children."""
    return resource.getrusage(who).ru_maxrss * 1024


def measure(n: int, d: int, seed: int) -> dict[str, float]:
    """One measured ``ph_dimension`` call, in this process (meant to be a fresh one)."""
    X = torch.from_numpy(np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32))
    ph_dimension(X[:200], generator=seed)  # warm-up
    before = peak_rss_bytes()
    start = time.perf_counter()
    result = ph_dimension(X, generator=seed)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "peak": peak_rss_bytes(),
        "added": peak_rss_bytes() - before,
        "value": result.value,
        "dense_bytes": mst.DENSE_BYTES,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[TARGET_N])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dense-bytes", type=int, help="mst.DENSE_BYTES in the child")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.dense_bytes is not None:
            mst.DENSE_BYTES = args.dense_bytes
        print(json.dumps(measure(args.sizes[0], args.dim, args.seed)))
        return

    print(
        f"PHdim of Gaussian float32 clouds, d = {args.dim}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"1-min load {os.getloadavg()[0]:.2f}"
    )
    header = (
        f"{'n':>7}  {'DENSE_BYTES':>12}  {'time (s)':>9}  {'peak':>9}  {'children':>9}  "
        f"{'added':>9}  PHdim"
    )
    print(header)
    print("-" * len(header))
    for n in sorted(args.sizes):
        command = [sys.executable, __file__, "--child", "--sizes", str(n), "--dim", str(args.dim)]
        command += ["--seed", str(args.seed)]
        if args.dense_bytes is not None:
            command += ["--dense-bytes", str(args.dense_bytes)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        children = peak_rss_bytes(resource.RUSAGE_CHILDREN)
        print(
            f"{n:>7}  {r['dense_bytes']:>12}  {r['seconds']:>9.1f}  {r['peak'] / 1e9:>7.2f}GB  "
            f"{children / 1e9:>7.2f}GB  {r['added'] / 1e9:>7.2f}GB  {r['value']:.2f}",
            flush=True,
        )
        if n == TARGET_N and args.dim == 64:
            verdict = "MET" if r["peak"] <= TARGET_GB * 1e9 else "NOT MET"
            print(f"  target: peak <= {TARGET_GB} GB at n = {TARGET_N}, d = 64: {verdict}")


if __name__ == "__main__":
    main()

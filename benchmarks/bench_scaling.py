"""How the monitor's topology cost grows: probe size, number of blocks, block width, H1 cap.

    .venv/bin/python benchmarks/bench_scaling.py [--repeats 3]

Times :func:`topo_monitor.probing.summarize` — everything the monitor computes after the probe
forward pass (H0, PHdim, the SW matrix and velocity; H1 where asked) — on synthetic clouds: 10
classes of Gaussian points with a class offset, one cloud per block, in float32 as activations
are. The forward pass is left out: it is the model's own cost (one inference pass over the probe),
measured on real models by ``bench_monitor.py``. One factor varies at a time around a base of
500 probe inputs (50 per class), 8 blocks of width 64, H0 only (the H1 sweep: 2,000 inputs, so
that every cap subsamples); the median of ``--repeats`` runs,
each after one warm-up. Printed: one table per factor and the log-log slope (cost ∝ factor^slope)
fitted over its range, so a user can budget a bigger probe or model. About 2 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from topo_monitor.probing.summary import SummaryConfig, summarize

BASE = {"probe": 500, "blocks": 8, "width": 64, "h1_cap": None}
SWEEPS = {
    "probe": (250, 500, 1000, 2000, 4000),
    "blocks": (2, 4, 8, 16, 32),
    "width": (16, 64, 256, 1024, 4096),
    "h1_cap": (25, 50, 100, 200),
}


def clouds(probe: int, blocks: int, width: int, seed: int = 0) -> tuple[dict, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(10).repeat_interleave(probe // 10)
    offsets = torch.randn(10, width, generator=g)
    out = {
        f"block{b}": (offsets[labels] + torch.randn(len(labels), width, generator=g)).float()
        for b in range(blocks)
    }
    return out, labels


def seconds(setting: dict, repeats: int) -> float:
    data, labels = clouds(setting["probe"], setting["blocks"], setting["width"])
    h1 = setting["h1_cap"]
    config = SummaryConfig(homology_dims=(0, 1) if h1 else (0,), h1_max_points=h1 if h1 else 150)
    previous = summarize(data, labels, config)  # warm-up, and the previous record (velocity)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        summarize(data, labels, config, previous=previous)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; base {BASE}")
    for factor, values in SWEEPS.items():
        # The H1 cap subsamples each class's cloud: 200 points per class make every cap bite.
        base = dict(BASE, probe=2000) if factor == "h1_cap" else BASE
        rows = [(v, seconds(dict(base, **{factor: v}), args.repeats)) for v in values]
        x, y = np.log([v for v, _ in rows]), np.log([t for _, t in rows])
        slope = float(np.polyfit(x, y, 1)[0])
        note = " (per class: the cap applies to each class's cloud)" if factor == "h1_cap" else ""
        print(f"\n{factor}{note}: log-log slope {slope:.2f}")
        for value, t in rows:
            print(f"   {value:>6}  {t:8.3f} s")


if __name__ == "__main__":
    main()

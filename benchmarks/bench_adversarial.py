"""Time one full adversarial-topology analysis and split it into attack and topology time.

    python benchmarks/bench_adversarial.py [--inputs 500] [--epochs 8]

The digits CNN of examples/digits.py, 500 training images, FGSM, MI-FGSM and PGD (10 steps) at
four budgets ε (0 is the clean data, computed once), H0 and H1 in input space and every block.
The attack time is torchattacks' own; the topology time covers the hooked forward passes and all
persistence summaries. About a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
from adversarial import EPS, analyse, train_digits_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    model, inputs, labels = train_digits_model(args.epochs)
    start = time.perf_counter()
    table = analyse(model, inputs, labels, args.inputs)
    total = time.perf_counter() - start
    attack, topology = table.timings["attack"], table.timings["topology"]
    print(
        f"\n3 attacks x {len(EPS)} eps {EPS}, {args.inputs} inputs, "
        f"{len({r['block'] for r in table.rows})} clouds per (attack, eps)"
    )
    print(f"{'stage':10s} {'seconds':>8s} {'share':>7s}")
    for name, seconds in (("attacks", attack), ("topology", topology)):
        print(f"{name:10s} {seconds:8.2f} {seconds / total:7.1%}")
    print(f"{'total':10s} {total:8.2f}")


if __name__ == "__main__":
    main()

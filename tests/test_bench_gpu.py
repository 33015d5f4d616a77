"""``benchmarks/bench_gpu.py --device cpu --quick`` runs and prints its ratio lines."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


def test_bench_gpu_quick_on_cpu_prints_the_ratios():
    pytest.importorskip("torchvision")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    h0 = re.findall(r"^H0/cdist n=(\d+) d=(\d+): (\d+\.\d+)x", done.stdout, flags=re.M)
    assert [(int(n), int(d)) for n, d, _ in h0] == [(200, 64), (500, 64)]
    assert all(float(ratio) > 0 for _, _, ratio in h0)
    monitor = re.findall(r"^monitor/epoch: (\d+\.\d+) ", done.stdout, flags=re.M)
    assert len(monitor) == 1 and float(monitor[0]) > 0
    assert done.stdout.startswith("device cpu")

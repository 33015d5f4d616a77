"""Refactoring guard: on the suite's models, measure() gives the records stored before the metric
registry was introduced (tests/data/records_before_registry.json, written by this module's
``python tests/test_record_regression.py --write`` on the code before that change).

Timings differ from run to run and are left out; every other field is compared, numbers to
1e-6 relative (float32 engines may round differently), names and structure exactly.
"""

from __future__ import annotations

import json
import math
import os
import sys

import pytest
import torch
from torch import nn

from helpers import MLP, blobs
from topo_monitor import measure
from topo_monitor.probing.problems import Problem

STORED = os.path.join(os.path.dirname(__file__), "data", "records_before_registry.json")


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU()
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return MLP()


def _images() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    y = torch.arange(3).repeat_interleave(30)
    x = torch.rand(90, 1, 8, 8, generator=g) + y[:, None, None, None] * 0.3
    return x, y


def records() -> dict[str, dict]:
    data = blobs(n_per_class=40)
    probe = (data.tensors[0], data.tensors[1])
    all_groups = ("e0", "phdim", "sw", "functional", "geometry", "mapper")
    out = {}
    first = measure(_mlp(0), probe)
    out["default"] = first
    out["velocity"] = measure(_mlp(1), probe, previous=first)
    out["h1_alpha2"] = measure(_mlp(0), probe, homology_dims=(0, 1), alpha=2.0)
    out["all_groups"] = measure(_mlp(0), probe, metrics=all_groups)
    out["whole_cloud"] = measure(
        _mlp(0), probe, per_class=False, metrics=("e0", "phdim", "sw", "geometry")
    )
    out["minmax"] = measure(_mlp(0), probe, normalize="minmax", metrics=("e0", "phdim"))
    x, y = probe[0].clone(), probe[1]
    x[y == 2] = x[y == 2][0]  # class 2 collapses: per-class problems
    keep = torch.cat([torch.arange(80), torch.arange(80, 90)])  # and has 10 inputs
    out["problems"] = measure(_mlp(0), (x[keep], y[keep]))
    torch.manual_seed(0)
    out["spatial"] = measure(
        SmallCNN(),
        _images(),
        reduction="spatial_random",
        metrics=("e0", "phdim", "sw", "mapper", "geometry"),
    )
    return {name: _comparable(record.to_dict()) for name, record in out.items()}


def _comparable(data: dict) -> dict:
    """Without timings and the fields newer than the stored records; problems (typed since) as
    the stored ``[block, "class N: <metric>: <detail>"]`` pairs, in any order."""
    data = dict(data)
    data.pop("timings", None)
    data.pop("class_counts", None)
    problems = [Problem.from_dict(p) for p in data["problems"]]
    data["problems"] = sorted([p.block, str(p)] for p in problems)
    return data


def _assert_close(found, stored, where: str) -> None:
    if isinstance(stored, dict):
        assert isinstance(found, dict) and sorted(found) == sorted(stored), where
        for key in stored:
            _assert_close(found[key], stored[key], f"{where}.{key}")
    elif isinstance(stored, list):
        assert isinstance(found, list) and len(found) == len(stored), where
        for i, (a, b) in enumerate(zip(found, stored, strict=True)):
            _assert_close(a, b, f"{where}[{i}]")
    elif isinstance(stored, float) and isinstance(found, float):
        assert math.isclose(found, stored, rel_tol=1e-6, abs_tol=1e-9), (where, found, stored)
    else:
        assert found == stored, (where, found, stored)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_records_equal_the_stored_ones():
    with open(STORED) as f:
        stored = json.load(f)
    found = records()
    stored = {name: _comparable(data) for name, data in stored.items()}
    assert sorted(found) == sorted(stored)
    for name in stored:
        _assert_close(found[name], stored[name], name)


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    with open(STORED, "w") as f:
        json.dump(records(), f, indent=1, sort_keys=True)

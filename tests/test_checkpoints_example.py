"""examples/checkpoints.py: the README's "measure saved checkpoints" workflow, end to end."""

import importlib.util
import os
import sys

import numpy as np
import pytest
import torch

from topo_monitor import ProbeSet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_example():
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    try:
        spec = importlib.util.spec_from_file_location(
            "checkpoints_example", os.path.join(ROOT, "examples", "checkpoints.py")
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(os.path.join(ROOT, "examples"))


def test_every_saved_checkpoint_is_measured_on_one_probe(tmp_path, capsys):
    example = load_example()
    folder = tmp_path / "ckpts"
    args = ["--checkpoints", str(folder), "--samples-per-class", "20"]
    rows = example.main([*args, "--epochs", "2"])
    assert [r["epoch"] for r in rows] == [0, 1]
    assert all(np.isfinite([r["E0_1_scaled"], r["PHdim"], r["margin"]]).all() for r in rows)
    assert "epoch=1.ckpt" in capsys.readouterr().out

    # Independent truth for one row: the margin from the loaded checkpoint's own logits.
    probe = ProbeSet.from_dataset(example.digits_datasets()[0], 20, seed=0)
    model = example.DigitsResNet.load_from_checkpoint(
        str(folder / "epoch=1.ckpt"), map_location="cpu"
    )
    model.eval()
    with torch.no_grad():
        logits = model(probe.inputs)
    true = logits[torch.arange(len(logits)), probe.labels]
    others = logits.scatter(1, probe.labels[:, None], -torch.inf).max(dim=1).values
    assert rows[1]["margin"] == pytest.approx(float((true - others).mean()), rel=1e-5)

    # A second call finds the checkpoints and measures them again, identically.
    assert example.main(args) == rows

"""Several TopologyMonitors in one Trainer: a training probe beside a held-out probe.

Each has its own metric names, history file, figure tags and checkpoint state; the callbacks that
read a monitor say which (``monitor_name=``), and an ambiguous choice fails at fit start.
"""

import json
import os

import pytest
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import MLP, blobs, loader, quiet_trainer
from topo_monitor import (
    CalibrationSet,
    PredictedTestAccuracy,
    TopologicalEarlyStopping,
    TopologyMonitor,
    measure,
)


def heldout():
    data = blobs(n_per_class=20, seed=7)
    return data.tensors[0], data.tensors[1]


def test_a_training_and_a_heldout_monitor_log_side_by_side(tmp_path):
    train = TopologyMonitor(samples_per_class=20, metrics=("e0",), figures_every_n_epochs=1)
    held = TopologyMonitor(
        probe=heldout(), name="heldout", metrics=("e0",), figures_every_n_epochs=1
    )
    stopping = TopologicalEarlyStopping(rule="minimum", monitor_name="heldout", patience=50)
    logger = TensorBoardLogger(tmp_path, name="tb")
    torch.manual_seed(0)
    model = MLP()
    trainer = quiet_trainer(max_epochs=2, callbacks=[train, held, stopping], logger=logger)
    trainer.fit(model, loader(blobs()))

    assert (train.prefix, held.prefix) == ("topology", "topology_heldout")
    assert stopping.monitor == "topology_heldout/E0_1_scaled/last_hidden"
    assert train.state_key != held.state_key
    # Each monitor measured its own probe: the held-out record is measure() on that probe.
    expected = measure(model, heldout(), **held.measure_options, epoch=1)
    for metric, values in expected.values.items():
        assert held.history[-1].values[metric] == pytest.approx(values, rel=1e-9)
    assert train.history[-1].values != held.history[-1].values

    events = EventAccumulator(logger.log_dir, size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    for monitor in (train, held):
        for block, value in zip(
            monitor.block_names, monitor.history[-1].values["E0_1"], strict=True
        ):
            scalars = events.Scalars(f"{monitor.prefix}/E0_1/{block}")
            assert [e.step for e in scalars] == [0, 1]
            assert scalars[-1].value == pytest.approx(value, rel=1e-6)
        assert f"{monitor.prefix}_figures/depth_E0_1_scaled" in events.Tags()["images"]
        path = os.path.join(logger.log_dir, f"{monitor.prefix}_history.jsonl")
        lines = [json.loads(line) for line in open(path)]
        assert [line["values"]["E0_1"] for line in lines] == [
            r.values["E0_1"] for r in monitor.history
        ]


def test_unnamed_monitors_get_distinct_names_and_resume_their_own_state(tmp_path):
    def monitors():
        return (
            TopologyMonitor(samples_per_class=20, metrics=("e0",)),
            TopologyMonitor(probe=heldout(), metrics=("e0",)),
        )

    first = monitors()
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer = quiet_trainer(
        max_epochs=1, callbacks=[*first, ckpt], enable_checkpointing=True, logger=False
    )
    trainer.fit(MLP(), loader(blobs()))
    fingerprint = first[1].display_name
    assert len(fingerprint) == 8 and first[1].prefix == f"topology_{fingerprint}"
    assert first[0].prefix == "topology"
    assert f"topology_{fingerprint}/E0_1/output" in trainer.callback_metrics

    second = monitors()
    trainer = quiet_trainer(max_epochs=2, callbacks=list(second), logger=False)
    trainer.fit(MLP(), loader(blobs()), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    for before, after in zip(first, second, strict=True):
        assert [r.to_dict() for r in after.history[:1]] == [r.to_dict() for r in before.history]
        assert [r.epoch for r in after.history] == [0, 1]


def test_ambiguous_or_clashing_monitors_fail_at_fit_start(tmp_path):
    calibration = CalibrationSet()
    for i in range(5):
        calibration.add(f"r{i}", 0.5 + 0.1 * i, {"E0_1": float(i)})

    def fit(*callbacks):
        quiet_trainer(max_epochs=1, callbacks=list(callbacks), logger=False).fit(
            MLP(), loader(blobs())
        )

    two = (
        TopologyMonitor(samples_per_class=20, metrics=("e0",)),
        TopologyMonitor(probe=heldout(), name="heldout", metrics=("e0",)),
    )
    with pytest.raises(
        ValueError, match=r"2 TopologyMonitors \(\['train', 'heldout'\]\).*monitor_name"
    ):
        fit(*two, PredictedTestAccuracy(calibration))
    with pytest.raises(ValueError, match="no TopologyMonitor named 'test'"):
        fit(*two, TopologicalEarlyStopping(monitor_name="test"))
    with pytest.raises(ValueError, match=r"several TopologyMonitors are named \['a'\]"):
        fit(
            TopologyMonitor(samples_per_class=20, name="a", metrics=("e0",)),
            TopologyMonitor(probe=heldout(), name="a", metrics=("phdim",)),
        )
    with pytest.raises(ValueError, match="name must be None or a non-empty string"):
        TopologyMonitor(name="held/out")

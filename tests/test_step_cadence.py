"""Step cadence: TopologyMonitor(every_n_train_steps=N) for step-based training (max_steps inside
one long epoch, gradient accumulation, resuming mid-epoch), and the callbacks that read it."""

import json
import os

import pytest
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import MLP, blobs, loader, quiet_trainer
from topo_monitor import TopologicalEarlyStopping, TopologyMonitor, measure


def data():
    return loader(blobs(n_per_class=100), shuffle=False)  # 19 batches: one long epoch


def test_checks_every_n_optimizer_steps_inside_one_epoch(tmp_path):
    monitor = TopologyMonitor(
        samples_per_class=20, every_n_train_steps=4, metrics=("e0",), figures_every_n_epochs=2
    )
    logger = TensorBoardLogger(tmp_path, name="tb")
    torch.manual_seed(0)
    model = MLP()
    trainer = quiet_trainer(max_steps=12, callbacks=[monitor], logger=logger)
    trainer.fit(model, data())
    assert [(r.epoch, r.step) for r in monitor.history] == [(0, 4), (0, 8), (0, 12)]
    # The last check is the trained model: measure() of it gives the same record.
    last = measure(model, monitor.probe, **monitor.measure_options, epoch=0, step=12)
    for metric, values in last.values.items():
        assert monitor.history[-1].values[metric] == pytest.approx(values, rel=1e-9)

    events = EventAccumulator(logger.log_dir, size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("topology/E0_1/output")] == [4, 8, 12]
    assert [e.step for e in events.Images("topology_figures/depth_E0_1_scaled")] == [8, 12]
    lines = [
        json.loads(line) for line in open(os.path.join(logger.log_dir, "topology_history.jsonl"))
    ]
    assert [(line["epoch"], line["step"]) for line in lines] == [(0, 4), (0, 8), (0, 12)]
    assert trainer.callback_metrics["topology/E0_1/last"] == pytest.approx(
        monitor.history[-1].values["E0_1"][-1]
    )


def test_gradient_accumulation_counts_optimizer_steps_not_batches():
    monitor = TopologyMonitor(samples_per_class=20, every_n_train_steps=2, metrics=("e0",))
    trainer = quiet_trainer(
        max_steps=6, accumulate_grad_batches=2, callbacks=[monitor], logger=False
    )
    trainer.fit(MLP(), data())
    assert [r.step for r in monitor.history] == [2, 4, 6]  # once each, after batches 4, 8, 12


def test_a_run_resumed_mid_epoch_continues_the_same_checks(tmp_path):
    def run(max_steps, ckpt_path=None):
        monitor = TopologyMonitor(samples_per_class=20, every_n_train_steps=4, metrics=("e0",))
        ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=4, save_last=True)
        torch.manual_seed(0)
        model = MLP()
        trainer = quiet_trainer(
            max_steps=max_steps,
            callbacks=[monitor, ckpt],
            logger=False,
            enable_checkpointing=True,
        )
        trainer.fit(model, data(), ckpt_path=ckpt_path)
        return monitor, model

    whole, _ = run(12)
    first, _ = run(8)
    second, _ = run(12, str(tmp_path / "ckpt" / "last.ckpt"))
    assert [r.step for r in second.history] == [4, 8, 12]
    for before, after in zip(first.history, second.history[:2], strict=True):
        assert (after.epoch, after.step, after.values) == (before.epoch, before.step, before.values)
    # The resumed run measures what the uninterrupted one measured at step 12.
    for metric, values in whole.history[-1].values.items():
        assert second.history[-1].values[metric] == pytest.approx(values, rel=1e-6), metric


def test_early_stopping_counts_checks_of_a_step_cadence():
    monitor = TopologyMonitor(samples_per_class=20, every_n_train_steps=3, metrics=("e0",))
    stopping = TopologicalEarlyStopping(rule="convergence", tol=10.0, patience=2)
    trainer = quiet_trainer(max_steps=60, callbacks=[monitor, stopping], logger=False)
    trainer.fit(MLP(), data())
    # Any change is below tol = 1000 %: the rule stops at its second converged check.
    assert [r.step for r in monitor.history] == [3, 6, 9]
    assert trainer.global_step == 9  # stopped mid-epoch, at its third check
    assert all(r.epoch == 0 for r in monitor.history) and stopping.stopping_reason_message


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"every_n_epochs": 2, "every_n_train_steps": 10}, "not both"),
        ({"every_n_train_steps": 0}, "every_n_train_steps must be a positive int"),
    ],
)
def test_one_cadence(options, message):
    with pytest.raises(ValueError, match=message):
        TopologyMonitor(**options)


def test_predicted_accuracy_follows_a_step_cadence():
    from topo_monitor import CalibrationSet, PredictedTestAccuracy

    calibration = CalibrationSet()
    for i, margin in enumerate(range(-2, 14, 2)):
        calibration.add(f"r{i}", 0.5 + 0.03 * margin + 0.002 * (-1) ** i, {"margin": float(margin)})
    monitor = TopologyMonitor(samples_per_class=20, every_n_train_steps=5, metrics=("e0",))
    predicted = PredictedTestAccuracy(calibration)
    trainer = quiet_trainer(max_steps=10, callbacks=[predicted, monitor], logger=False)
    trainer.fit(MLP(), data())
    assert [(h["epoch"], h["step"]) for h in predicted.history] == [(0, 5), (0, 10)]
    expected, _ = predicted.predictor.predict({"margin": monitor.history[-1].extras["margin"]})
    assert predicted.history[-1]["topology/predicted_test_acc"] == pytest.approx(
        min(max(expected, 0.0), 1.0), rel=1e-6
    )

"""TopologicalEarlyStopping in a real Trainer, driven by scripted metric sequences."""

import math

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

from helpers import MLP, blobs, loader, quiet_trainer
from topo_monitor import PlateauRule, TopologicalEarlyStopping, TopologyMonitor, TopologyRecord


class ScriptedMonitor(TopologyMonitor):
    """A TopologyMonitor whose last hidden E0_1 follows a given sequence, one value per epoch."""

    def __init__(self, sequence, **kwargs):
        super().__init__(samples_per_class=5, metrics=("e0",), **kwargs)
        self.sequence = sequence

    def measure(self, model, epoch=None, step=None):
        value = self.sequence[epoch]
        return TopologyRecord(
            epoch=epoch,
            step=step,
            blocks=["hidden", "output"],
            depths=[0.5, 1.0],
            values={"E0_1": [value, 1.0], "E0_1_scaled": [value, 1.0]},
        )


def fit(sequence, stopper, max_epochs=None, monitor_kwargs=None, order="monitor-first", **kw):
    monitor = ScriptedMonitor(sequence, **(monitor_kwargs or {}))
    callbacks = [monitor, stopper] if order == "monitor-first" else [stopper, monitor]
    trainer = quiet_trainer(
        max_epochs=max_epochs or len(sequence), callbacks=callbacks, logger=False, **kw
    )
    trainer.fit(MLP(), loader(blobs()))
    return trainer


def test_plateau_stops_after_patience_and_keeps_best_epoch(tmp_path):
    stopper = TopologicalEarlyStopping(patience=3)
    trainer = fit([10, 8, 7, 7.0, 7.0, 7.0, 6, 5, 4, 3], stopper, default_root_dir=tmp_path)
    assert stopper.stopped_epoch == 5 and trainer.current_epoch == 6
    assert stopper.best_epoch == 2
    assert "did not improve" in stopper.stopping_reason_message


def test_rebound_stops_at_once_whatever_the_callback_order(tmp_path):
    stopper = TopologicalEarlyStopping(patience=5, rebound=0.25)
    fit([10, 8, 6, 9, 5, 4, 3], stopper, order="stopper-first", default_root_dir=tmp_path)
    assert stopper.stopped_epoch == 3
    assert stopper.best_epoch == 2
    assert stopper.stopping_reason_message.startswith("Rebound")


def test_noisy_decrease_does_not_stop(tmp_path):
    noisy = [10, 9.5, 9.7, 9.0, 9.2, 8.5, 8.7, 8.0, 8.1, 7.6]
    stopper = TopologicalEarlyStopping(patience=3, rebound=0.25)
    trainer = fit(noisy, stopper, default_root_dir=tmp_path)
    assert stopper.stopped_epoch == 0 and trainer.current_epoch == len(noisy)
    assert stopper.best_epoch == 9


def test_relative_min_delta(tmp_path):
    slow = [10, 9.95, 9.9, 9.85, 9.8, 9.75]  # 0.5 % per epoch: below a 1 % min_delta
    stopper = TopologicalEarlyStopping(patience=2, min_delta=0.01, min_delta_mode="rel")
    fit(slow, stopper, default_root_dir=tmp_path)
    assert stopper.stopped_epoch == 2 and stopper.best_epoch == 0


def test_only_monitored_epochs_count(tmp_path):
    # Monitoring every 2nd epoch: epochs 1, 3, 5, 7; patience 2 stops at epoch 5.
    sequence = [math.nan, 5, math.nan, 6, math.nan, 6, math.nan, 1]
    stopper = TopologicalEarlyStopping(patience=2, rebound=None)
    fit(sequence, stopper, monitor_kwargs={"every_n_epochs": 2}, default_root_dir=tmp_path)
    assert stopper.stopped_epoch == 5 and stopper.best_epoch == 1


def test_resume_keeps_wait_count_and_best_epoch(tmp_path):
    sequence = [10, 8, 9, 9, 9, 9]
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    first = TopologicalEarlyStopping(patience=3, rebound=None)
    monitor = ScriptedMonitor(sequence)
    trainer = quiet_trainer(
        max_epochs=3,
        callbacks=[monitor, first, checkpoint],
        logger=False,
        enable_checkpointing=True,
        default_root_dir=tmp_path,
    )
    trainer.fit(MLP(), loader(blobs()))
    assert first.wait_count == 1 and first.best_epoch == 1

    second = TopologicalEarlyStopping(patience=3, rebound=None)
    trainer = quiet_trainer(
        max_epochs=6,
        callbacks=[ScriptedMonitor(sequence), second],
        logger=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(MLP(), loader(blobs()), ckpt_path=str(tmp_path / "last.ckpt"))
    assert second.best_epoch == 1
    assert second.stopped_epoch == 4  # waits at epochs 2, 3, 4: patience 3 counted across resume


def test_misconfiguration_fails_at_fit_start(tmp_path):
    trainer = quiet_trainer(
        callbacks=[TopologicalEarlyStopping()], logger=False, default_root_dir=tmp_path
    )
    with pytest.raises(ValueError, match="needs a TopologyMonitor"):
        trainer.fit(MLP(), loader(blobs()))
    trainer = quiet_trainer(
        callbacks=[
            TopologyMonitor(metrics=("e0",)),
            TopologicalEarlyStopping("topology/PHdim/last"),
        ],
        logger=False,
        default_root_dir=tmp_path,
    )
    with pytest.raises(ValueError, match="no TopologyMonitor computes 'PHdim'"):
        trainer.fit(MLP(), loader(blobs()))
    with pytest.raises(ValueError, match="topology/<metric>/<block>"):
        TopologicalEarlyStopping("val_loss")
    with pytest.raises(ValueError, match="min_delta_mode"):
        TopologicalEarlyStopping(min_delta_mode="pct")


class ValidationLoss(MLP):
    """The MLP with a validation loss, for Lightning's own EarlyStopping."""

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.cross_entropy(self(x), y))


@pytest.mark.parametrize("patience", [1, 2])
def test_plateau_rule_stops_where_lightnings_early_stopping_stops(tmp_path, patience):
    # A high learning rate and label noise make the validation loss go up and down.
    data = blobs(seed=1)
    labels = data.tensors[1].clone()
    labels[::4] = (labels[::4] + 1) % 3
    noisy = torch.utils.data.TensorDataset(data.tensors[0], labels)
    val = blobs(n_per_class=20, seed=2)
    recorded = []

    class Record(pl.Callback):
        def on_validation_end(self, trainer, module):
            if not trainer.sanity_checking:
                recorded.append(trainer.callback_metrics["val_loss"].item())

    pl.seed_everything(0)
    stopper = EarlyStopping("val_loss", patience=patience)
    trainer = quiet_trainer(
        max_epochs=30,
        callbacks=[Record(), stopper],
        logger=False,
        default_root_dir=tmp_path,
        num_sanity_val_steps=0,
    )
    trainer.fit(ValidationLoss(), loader(noisy), loader(val, shuffle=False))
    assert stopper.stopped_epoch > 0, "the check needs a run that Lightning stops"
    float32 = [torch.tensor(v).item() for v in recorded]
    assert PlateauRule(patience=patience).replay(float32) == stopper.stopped_epoch


def test_plateau_rule_replays_checks_at_given_epochs():
    rule = PlateauRule(patience=2, rebound=0.5)
    assert rule.replay([5.0, 4.0, 4.5, 4.2], epochs=[1, 3, 5, 7]) == 7
    assert rule.best_epoch == 3 and rule.wait_count == 2
    assert rule.replay([5.0, 4.0, 7.0], epochs=[0, 1, 2]) == 2  # rebound: 7 > 4 * 1.5
    assert PlateauRule(mode="max").replay([1.0, 2.0, 3.0]) is None
    assert PlateauRule().replay([1.0, math.nan]) == 1
    assert PlateauRule(check_finite=False).replay([1.0, math.nan]) is None
    with pytest.raises(ValueError, match='mode must be "min" or "max"'):
        PlateauRule(mode="down")

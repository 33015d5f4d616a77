"""TopologicalEarlyStopping in a real Trainer, driven by scripted metric sequences."""

import math

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

from helpers import MLP, blobs, loader, quiet_trainer
from topo_monitor import (
    AllRule,
    AnyRule,
    ConvergenceRule,
    PlateauRule,
    TopologicalEarlyStopping,
    TopologyMonitor,
    TopologyRecord,
    VelocityRule,
)
from topo_monitor.callbacks.early_stopping import make_rule


class ScriptedMonitor(TopologyMonitor):
    """A TopologyMonitor whose last hidden block's metrics follow a given sequence, one value
    per epoch (every metric the same value)."""

    def __init__(self, sequence, **kwargs):
        kwargs.setdefault("figures_every_n_epochs", None)
        super().__init__(samples_per_class=5, metrics=("e0", "sw"), **kwargs)
        self.sequence = sequence

    def measure(self, model, epoch=None, step=None, previous=None):
        value = self.sequence[epoch]
        if value is None:
            raise RuntimeError("scripted failure")
        metrics = ("E0_1", "E0_1_scaled", "H0_velocity")
        return TopologyRecord(
            epoch=epoch,
            step=step,
            blocks=["hidden", "output"],
            depths=[0.5, 1.0],
            values={metric: [value, 1.0] for metric in metrics},
        )


def fit(
    sequence,
    stopper,
    max_epochs=None,
    monitor_kwargs=None,
    order="monitor-first",
    model=None,
    **kw,
):
    """Train ``model`` (an MLP by default) beside a ScriptedMonitor and ``stopper``."""
    monitor = ScriptedMonitor(sequence, **(monitor_kwargs or {}))
    callbacks = [monitor, stopper] if order == "monitor-first" else [stopper, monitor]
    trainer = quiet_trainer(
        max_epochs=max_epochs or len(sequence), callbacks=callbacks, logger=False, **kw
    )
    trainer.fit(model or MLP(), loader(blobs()))
    return trainer


def test_plateau_stops_after_patience_and_keeps_best_epoch(tmp_path):
    stopper = TopologicalEarlyStopping(rule="plateau", patience=3)
    trainer = fit([10, 8, 7, 7.0, 7.0, 7.0, 6, 5, 4, 3], stopper, default_root_dir=tmp_path)
    assert stopper.stopped_epoch == 5 and trainer.current_epoch == 6
    assert stopper.rule.best_epoch == 2
    assert "did not improve" in stopper.stopping_reason_message


def test_rebound_stops_at_once_whatever_the_callback_order(tmp_path):
    stopper = TopologicalEarlyStopping(rule="plateau", patience=5, rebound=0.25)
    fit([10, 8, 6, 9, 5, 4, 3], stopper, order="stopper-first", default_root_dir=tmp_path)
    assert stopper.stopped_epoch == 3
    assert stopper.rule.best_epoch == 2
    assert stopper.stopping_reason_message.startswith("Rebound")


def test_noisy_decrease_does_not_stop(tmp_path):
    noisy = [10, 9.5, 9.7, 9.0, 9.2, 8.5, 8.7, 8.0, 8.1, 7.6]
    stopper = TopologicalEarlyStopping(rule="plateau", patience=3, rebound=0.25)
    trainer = fit(noisy, stopper, default_root_dir=tmp_path)
    assert stopper.stopped_epoch == 0 and trainer.current_epoch == len(noisy)
    assert stopper.rule.best_epoch == 9


def test_relative_min_delta(tmp_path):
    slow = [10, 9.95, 9.9, 9.85, 9.8, 9.75]  # 0.5 % per epoch: below a 1 % min_delta
    stopper = TopologicalEarlyStopping(
        rule="plateau", patience=2, min_delta=0.01, min_delta_mode="rel"
    )
    fit(slow, stopper, default_root_dir=tmp_path)
    assert stopper.stopped_epoch == 2 and stopper.rule.best_epoch == 0


def test_only_monitored_epochs_count(tmp_path):
    # Monitoring every 2nd epoch: epochs 1, 3, 5, 7; patience 2 stops at epoch 5.
    sequence = [math.nan, 5, math.nan, 6, math.nan, 6, math.nan, 1]
    stopper = TopologicalEarlyStopping(rule="plateau", patience=2, rebound=None)
    fit(sequence, stopper, monitor_kwargs={"every_n_epochs": 2}, default_root_dir=tmp_path)
    assert stopper.stopped_epoch == 5 and stopper.rule.best_epoch == 1


def test_resume_keeps_wait_count_and_best_epoch(tmp_path):
    sequence = [10, 8, 9, 9, 9, 9]
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    first = TopologicalEarlyStopping(rule="plateau", patience=3, rebound=None)
    monitor = ScriptedMonitor(sequence)
    trainer = quiet_trainer(
        max_epochs=3,
        callbacks=[monitor, first, checkpoint],
        logger=False,
        enable_checkpointing=True,
        default_root_dir=tmp_path,
    )
    trainer.fit(MLP(), loader(blobs()))
    assert first.wait_count == 1 and first.rule.best_epoch == 1

    second = TopologicalEarlyStopping(rule="plateau", patience=3, rebound=None)
    trainer = quiet_trainer(
        max_epochs=6,
        callbacks=[ScriptedMonitor(sequence), second],
        logger=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(MLP(), loader(blobs()), ckpt_path=str(tmp_path / "last.ckpt"))
    assert second.rule.best_epoch == 1
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
    with pytest.raises(ValueError, match="its TopologyMonitor does not compute 'PHdim'"):
        trainer.fit(MLP(), loader(blobs()))
    with pytest.raises(ValueError, match="are not TopologyMonitor keys"):
        TopologicalEarlyStopping("topology/E0_1/a/b")
    with pytest.raises(ValueError, match="min_delta_mode"):
        TopologicalEarlyStopping(rule="plateau", min_delta_mode="pct")
    with pytest.raises(
        ValueError, match=r"rule must be one of \['convergence', 'functional', 'loss', 'minimum'"
    ):
        TopologicalEarlyStopping(rule="patience")
    with pytest.raises(ValueError, match=r"takes the options \['tol', 'patience'\]"):
        TopologicalEarlyStopping(rule="convergence", rebound=0.25)  # a plateau option
    with pytest.raises(ValueError, match="carries its own"):
        TopologicalEarlyStopping(rule=VelocityRule(), patience=2)
    with pytest.raises(ValueError, match="object needs the metric it reads"):
        TopologicalEarlyStopping(rule=VelocityRule())


def test_minimum_rule_stops_when_scale_free_complexity_turns_up(tmp_path):
    # Falls while classes separate, then rises (memorization under label noise): stop
    # `patience` epochs after the minimum; a rule object with its metric does the same.
    series = [60.0, 57.0, 56.0, 56.5, 58.0, 60.0, 62.0, 64.0]
    for stopper, stop in (
        (TopologicalEarlyStopping(rule="minimum"), 7),  # patience 5
        (TopologicalEarlyStopping(rule="minimum", patience=3), 5),
        (
            TopologicalEarlyStopping(
                "topology/E0_1_scaled/last_hidden", PlateauRule(patience=3, rebound=None)
            ),
            5,
        ),
    ):
        fit(series, stopper, default_root_dir=tmp_path)
        assert stopper.stopped_epoch == stop and stopper.rule.best_epoch == 2


def test_a_block_the_monitor_will_not_record_is_an_error_at_fit_start(tmp_path):
    def fit_with(stopper, blocks="auto"):
        monitor = TopologyMonitor(blocks=blocks, metrics=("e0",), figures_every_n_epochs=None)
        trainer = quiet_trainer(
            callbacks=[monitor, stopper], logger=False, default_root_dir=tmp_path
        )
        trainer.fit(MLP(), loader(blobs()))
        return trainer

    with pytest.raises(
        ValueError, match=r"needs the block 'net.9'.*\['net.2', 'net.5', 'output'\]"
    ):
        fit_with(TopologicalEarlyStopping("topology/E0_1_scaled/net.9"))
    # A monitor of the output alone has no last hidden block: said before any epoch.
    with pytest.raises(ValueError, match=r"needs the block 'last_hidden'.*\['output'\]"):
        fit_with(TopologicalEarlyStopping(rule="minimum"), blocks=lambda module: [])
    trainer = fit_with(TopologicalEarlyStopping("topology/E0_1_scaled/net.5"))
    assert trainer.current_epoch == 2


def test_default_rule_stops_when_the_training_loss_stops_falling(tmp_path):
    # The default (chosen by benchmarks/early_stopping.py) reads the epoch-mean train_loss: a
    # relative fall of under 5 % for 3 checks stops, whatever the topology does.
    stopper = TopologicalEarlyStopping()
    assert stopper.monitor == "train_loss"
    assert isinstance(stopper.rule, PlateauRule) and stopper.rule.patience == 3
    loss = [2.0, 1.0, 0.6, 0.5, 0.495, 0.49, 0.485, 0.40, 0.30, 0.2]
    e0 = [60.0, 50.0, 45.0, 44.0, 44.5, 45.0, 46.0, 45.5, 47.0, 48.0]
    trainer = fit(e0, stopper, model=ScriptedLoss(loss), default_root_dir=tmp_path)
    # best 0.5 at epoch 3; 0.495, 0.49, 0.485 are within 5 % of it: stop at epoch 6
    assert stopper.stopped_epoch == 6 and trainer.current_epoch == 7
    assert stopper.rule.best_epoch == 3 and "train_loss did not improve" in (
        stopper.stopping_reason_message
    )
    assert make_rule()[0].replay(loss) == 6

    # Still falling by more than 5 % at least every third check: no stop.
    falling = [2.0, 1.8, 1.79, 1.6, 1.59, 1.58, 1.45, 1.44, 1.3, 1.29]
    stopper = TopologicalEarlyStopping()
    trainer = fit(e0, stopper, model=ScriptedLoss(falling), default_root_dir=tmp_path)
    assert stopper.stopped_epoch == 0 and trainer.current_epoch == len(falling)


def test_the_default_says_how_to_log_the_training_loss(tmp_path):
    # helpers.MLP logs "train_loss" per step: present. A model that logs none is told how.
    stopper = TopologicalEarlyStopping()
    with pytest.raises(ValueError, match=r"\['train_loss'\], not logged.*on_epoch=True"):
        fit(
            [1.0] * 3,
            stopper,
            model=ScriptedLoss([1.0] * 3, name="loss"),
            default_root_dir=tmp_path,
        )


@pytest.mark.parametrize(
    ("name", "stop"), [("settled", 7), ("turn", 5), ("trend", None), ("loss", 5)]
)
def test_named_composite_rules_in_a_trainer_match_their_replay(tmp_path, name, stop):
    loss = [1.0, 0.5, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]
    e0 = [10.0, 12.0, 14.0, 16.0, 18.0, 18.1, 18.1, 18.1, 18.1, 18.1]
    stopper = TopologicalEarlyStopping(rule=name)
    fit(e0, stopper, model=ScriptedLoss(loss), default_root_dir=tmp_path)
    rule, keys = make_rule(name)
    series = {"train_loss": loss, "topology/E0_1_scaled/last_hidden": e0}
    values = (
        series[keys]
        if isinstance(keys, str)
        else list(zip(*(series[k] for k in keys), strict=True))
    )
    assert rule.replay(values) == stop
    assert stopper.stopped_epoch == (stop or 0)


def test_convergence_rule_stops_when_the_metric_is_still_either_way(tmp_path):
    converging = [40.0, 30.0, 24.0, 21.0, 20.6, 20.4, 20.5, 20.3, 20.2, 20.2, 20.1, 20.0]
    stopper = TopologicalEarlyStopping(rule="convergence")
    fit(converging, stopper, default_root_dir=tmp_path)
    assert stopper.stopped_epoch == 6  # within 2 % at epochs 4, 5, 6
    assert "changed by at most 2.0%" in stopper.stopping_reason_message
    changing = [40.0, 38.0, 36.5, 38.0, 36.0, 34.0, 35.5, 33.5, 32.0, 33.5, 32.0, 30.5]
    stopper = TopologicalEarlyStopping(rule="convergence")
    fit(changing, stopper, default_root_dir=tmp_path)
    assert stopper.stopped_epoch == 0


def test_velocity_rule_in_a_trainer_and_across_resume(tmp_path):
    # H0_velocity is NaN at the first monitored epoch (no previous diagrams): skipped.
    speeds = [math.nan, 2.0, 3.0, 1.0, 0.5, 0.4, 0.5, 0.2]
    stopper = TopologicalEarlyStopping(rule="velocity", fraction=0.2, patience=2)
    assert stopper.monitor == "topology/H0_velocity/last_hidden"
    fit(speeds, stopper, default_root_dir=tmp_path)
    assert stopper.stopped_epoch == 5  # 0.5 and 0.4 are at most 20 % of the peak 3.0
    assert VelocityRule(fraction=0.2, patience=2).replay(speeds) == 5

    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    first = TopologicalEarlyStopping(rule="velocity", fraction=0.2, patience=2)
    trainer = quiet_trainer(
        max_epochs=5,
        callbacks=[ScriptedMonitor(speeds), first, checkpoint],
        logger=False,
        enable_checkpointing=True,
        default_root_dir=tmp_path,
    )
    trainer.fit(MLP(), loader(blobs()))
    assert first.rule.peak == 3.0 and first.wait_count == 1
    second = TopologicalEarlyStopping(rule="velocity", fraction=0.2, patience=2)
    trainer = quiet_trainer(
        max_epochs=8,
        callbacks=[ScriptedMonitor(speeds), second],
        logger=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(MLP(), loader(blobs()), ckpt_path=str(tmp_path / "last.ckpt"))
    assert second.stopped_epoch == 5


def test_an_epoch_that_failed_to_be_monitored_is_skipped_not_fatal(tmp_path):
    # Epoch 3 cannot be measured: the monitor warns, the rule skips it, training goes on.
    series = [40.0, 30.0, 30.1, None, 30.2, 30.3, 30.2, 30.4, 29.0]
    stopper = TopologicalEarlyStopping(rule="minimum")
    with pytest.warns(UserWarning, match="epoch 3 was not monitored: RuntimeError"):
        trainer = fit(series, stopper, default_root_dir=tmp_path)
    assert stopper.stopped_epoch == 7 and trainer.current_epoch == 8  # no new minimum: 2, 4-7


def test_convergence_and_velocity_rules_on_series():
    rule = ConvergenceRule(tol=0.02, patience=3)
    assert rule.replay([1.0, 0.5, 0.45, 0.449, 0.4485, 0.448, 0.4478]) == 5
    # Either direction counts; a NaN (not measured) neither counts nor breaks the streak.
    assert rule.replay([1.0, 1.01, math.nan, 1.02, 1.03, 2.0]) == 4
    assert rule.replay([1.0, 1.1, 1.0, 1.1, 1.0]) is None
    assert rule.replay([0.0, 0.0, 0.0, 0.0]) is None  # a relative change of 0 is undefined
    state = rule.state_dict()
    other = ConvergenceRule(tol=0.02, patience=3)
    other.load_state_dict(state)
    assert other.state_dict() == state

    rule = VelocityRule(fraction=0.5, patience=1)
    assert rule.replay([4.0, 3.0, 2.5, 1.0]) == 3
    assert rule.peak == 4.0
    assert rule.replay([1.0, 2.0, 4.0, 8.0]) is None  # still accelerating
    with pytest.raises(ValueError, match=r"fraction must be a number in \(0, 1\)"):
        VelocityRule(fraction=1.5)
    with pytest.raises(ValueError, match="tol must be a positive number"):
        ConvergenceRule(tol=0)


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


def test_a_per_network_value_of_the_functional_graph_can_be_monitored(tmp_path):
    stopper = TopologicalEarlyStopping(
        "topology/functional_peak_density_H1", PlateauRule(patience=1, mode="max")
    )
    monitor = TopologyMonitor(
        samples_per_class=20,
        metrics=("functional",),
        functional_max_neurons=12,
        figures_every_n_epochs=None,
    )
    named = TopologicalEarlyStopping(rule="functional", patience=1)
    assert named.monitor == "topology/functional_midlife_H1"
    trainer = quiet_trainer(
        max_epochs=3, callbacks=[monitor, stopper, named], logger=False, default_root_dir=tmp_path
    )
    trainer.fit(MLP(), loader(blobs()))
    for rule, key in ((stopper, "peak_density"), (named, "midlife")):
        series = [r.network[f"functional_{key}_H1"] for r in monitor.history]
        replayed = type(rule.rule)(patience=1, mode=rule.rule.mode).replay(series)
        assert replayed == (rule.stopped_epoch or None)
    with pytest.raises(ValueError, match="available per-network values: \\[\\]"):
        fit([1.0, 2.0], TopologicalEarlyStopping("topology/functional_bars_H1", rule="minimum"))


class ScriptedLoss(MLP):
    """Logs a scripted training loss, one value per epoch, as an epoch mean (the usual
    ``self.log("train_loss", loss, on_epoch=True)``), beside its real loss."""

    def __init__(self, losses, name="train_loss"):
        super().__init__()
        self.losses, self.name = losses, name

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self(x), y)
        scripted = torch.tensor(self.losses[self.current_epoch]) + 0 * loss.detach()
        self.log(self.name, scripted, on_step=False, on_epoch=True)
        return loss


def test_a_composite_rule_reads_the_training_loss_beside_the_topology(tmp_path):
    # The loss plateaus at epoch 4, the topology is still (within 1 %) only at epoch 6: an
    # AllRule stops at 6, as it does replayed on the same series; an AnyRule at 4.
    loss = [1.0, 0.5, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]
    e0 = [10.0, 12.0, 14.0, 16.0, 18.0, 18.1, 18.1, 18.1, 18.1, 18.1]
    keys = ("train_loss", "topology/E0_1_scaled/last_hidden")
    for composite, stop in ((AllRule, 6), (AnyRule, 4)):
        rule = composite(PlateauRule(patience=2), ConvergenceRule(tol=0.01, patience=2))
        stopper = TopologicalEarlyStopping(keys, rule)
        trainer = fit(e0, stopper, model=ScriptedLoss(loss), default_root_dir=tmp_path)
        replayed = composite(PlateauRule(patience=2), ConvergenceRule(tol=0.01, patience=2))
        assert replayed.replay(list(zip(loss, e0, strict=True))) == stop
        assert stopper.stopped_epoch == stop and trainer.current_epoch == stop + 1
        assert "train_loss" in stopper.stopping_reason_message


def test_a_composite_rule_names_what_is_not_logged(tmp_path):
    rule = AllRule(PlateauRule(patience=2), ConvergenceRule(tol=0.01, patience=2))
    stopper = TopologicalEarlyStopping(("loss", "topology/E0_1_scaled/last_hidden"), rule)
    with pytest.raises(ValueError, match=r"\['loss'\], not logged.*self.log\('loss', loss"):
        fit([1.0] * 3, stopper, model=ScriptedLoss([1.0] * 3), default_root_dir=tmp_path)
    with pytest.raises(ValueError, match="reads 2 series: monitor must be a sequence of 2 keys"):
        TopologicalEarlyStopping("topology/E0_1_scaled/last_hidden", rule)
    with pytest.raises(ValueError, match="reads 1 series: monitor must be one key"):
        TopologicalEarlyStopping(("train_loss", "topology/E0_1/last"), PlateauRule())
    with pytest.raises(ValueError, match=r"\['topology'\] are not TopologyMonitor keys"):
        TopologicalEarlyStopping(("train_loss", "topology"), rule)

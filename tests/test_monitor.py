"""TopologyMonitor inside real Trainer.fit runs: event files, history, state, robustness."""

import glob
import json
import math
import os
import warnings

import gudhi
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from helpers import MLP, blobs, loader, quiet_trainer
from topo_monitor import SummaryConfig, TopologyMonitor


def gudhi_e0(points: np.ndarray) -> float:
    tree = gudhi.RipsComplex(points=points.astype(np.float64)).create_simplex_tree(max_dimension=1)
    tree.compute_persistence(min_persistence=-1)
    deaths = tree.persistence_intervals_in_dimension(0)[:, 1]
    return float(deaths[np.isfinite(deaths)].sum())


def read_events(log_dir: str) -> EventAccumulator:
    acc = EventAccumulator(log_dir, size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_tensorboard_scalars_match_independent_gudhi_computation(tmp_path):
    pl.seed_everything(0)
    data = blobs()
    monitor = TopologyMonitor(samples_per_class=30, seed=1)
    logger = TensorBoardLogger(tmp_path, name="run")
    trainer = quiet_trainer(max_epochs=2, callbacks=[monitor], logger=logger)
    model = MLP()
    trainer.fit(model, loader(data))

    assert monitor.block_names == ["net.2", "net.5", "output"]
    events = read_events(logger.log_dir)
    tags = events.Tags()
    for block in monitor.block_names:
        for metric in ("E0_1", "E0_1_scaled", "E0_mean_lifespan", "PHdim", "PHdim_r2"):
            steps = [e.step for e in events.Scalars(f"topology/{metric}/{block}")]
            assert steps == [0, 1], (metric, block)
    assert {"topology_figures/depth_E0_1_scaled", "topology_figures/depth_PHdim"} <= set(
        tags["images"]
    )
    assert "topology_figures/depth_E0_1" not in tags["images"]  # raw: blocks' scales differ
    assert "topology_figures/sw_heatmap" in tags["images"]
    assert "custom_scalars__config__" in tags["tensors"]

    # Independent truth: hook the trained model ourselves, reduce, and ask gudhi.
    probe = monitor.probe
    captured = {}
    hooks = [
        model.net[i].register_forward_hook(lambda m, a, out, i=i: captured.__setitem__(i, out))
        for i in (2, 5)
    ]
    model.eval()
    with torch.no_grad():
        captured["output"] = model(probe.inputs)
    for h in hooks:
        h.remove()
    labels = probe.labels.numpy()
    for block, key in (("net.2", 2), ("net.5", 5), ("output", "output")):
        cloud = captured[key].numpy()
        expected = np.mean([gudhi_e0(cloud[labels == c]) for c in np.unique(labels)])
        logged = events.Scalars(f"topology/E0_1/{block}")[-1].value
        assert logged == pytest.approx(expected, rel=1e-5)
    assert trainer.callback_metrics["topology/E0_1/last"].item() == pytest.approx(
        monitor.history[-1].values["E0_1"][-1]
    )
    assert "topology/E0_1/last_hidden" in trainer.callback_metrics

    # The machine-readable history holds every value.
    lines = [
        json.loads(line) for line in open(os.path.join(logger.log_dir, "topology_history.jsonl"))
    ]
    assert [r["epoch"] for r in lines] == [0, 1]
    assert lines[-1]["values"]["E0_1"] == pytest.approx(monitor.history[-1].values["E0_1"])
    assert np.array(lines[-1]["sw"]).shape == (3, 3)


def _weights_after_fit(with_monitor: bool, tmp_path) -> dict[str, torch.Tensor]:
    pl.seed_everything(123)
    model = MLP()
    callbacks = (
        [
            TopologyMonitor(
                samples_per_class=20,
                homology_dims=(0, 1),
                metrics=("e0", "phdim", "sw", "functional"),
            )
        ]
        if with_monitor
        else []
    )
    trainer = quiet_trainer(
        max_epochs=3, callbacks=callbacks, logger=False, default_root_dir=tmp_path
    )
    trainer.fit(model, loader(blobs()))
    assert model.training is True
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_monitoring_never_changes_training(tmp_path):
    plain = _weights_after_fit(False, tmp_path)
    monitored = _weights_after_fit(True, tmp_path)
    assert plain.keys() == monitored.keys()
    for key in plain:
        assert torch.equal(plain[key], monitored[key]), key  # bitwise, BN statistics included


class NaNBranch(MLP):
    """A side branch that emits NaN; the loss never sees it."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = nn.Linear(8, 4)

    def forward(self, x):
        self.broken(x * math.nan)
        return self.net(x)


def test_block_emitting_nan_warns_and_training_goes_on(tmp_path):
    monitor = TopologyMonitor(samples_per_class=20, blocks=["broken", "net.2"])
    trainer = quiet_trainer(
        max_epochs=2, callbacks=[monitor], logger=False, default_root_dir=tmp_path
    )
    with pytest.warns(
        UserWarning, match=r"epoch 1, activations hold NaN .* in 1 block\(s\) \('broken'\)"
    ):
        trainer.fit(NaNBranch(), loader(blobs()))
    assert trainer.current_epoch == 2
    record = monitor.history[-1]
    assert record.blocks == ["broken", "net.2", "output"]
    assert math.isnan(record.values["E0_1"][0])
    assert all(math.isfinite(v) for v in record.values["E0_1"][1:])


class TupleAndInplace(pl.LightningModule):
    """A block returning (tensor, extra) and a layer whose output a ReLU(inplace) overwrites."""

    class Pair(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(8, 6)

        def forward(self, x):
            return self.lin(x), "extra"

    def __init__(self) -> None:
        super().__init__()
        self.pair = self.Pair()
        self.pre = nn.Linear(6, 6)
        self.act = nn.ReLU(inplace=True)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        h, _ = self.pair(x)
        return self.head(self.act(self.pre(h)))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_tuple_outputs_and_inplace_relu_give_the_right_values(tmp_path):
    model = TupleAndInplace()
    monitor = TopologyMonitor(samples_per_class=20, blocks=["pair", "pre"], metrics=("e0",))
    trainer = quiet_trainer(
        max_epochs=1, callbacks=[monitor], logger=False, default_root_dir=tmp_path
    )
    trainer.fit(model, loader(blobs()))
    x, labels = monitor.probe.inputs, monitor.probe.labels.numpy()
    with torch.no_grad():
        pair = model.pair.lin(x).numpy()
        pre = model.pre(model.pair.lin(x)).numpy()  # before the in-place ReLU
    assert (pre < 0).any(), "the check needs negative pre-activations"
    record = monitor.history[-1]
    for i, cloud in enumerate((pair, pre)):
        expected = np.mean([gudhi_e0(cloud[labels == c]) for c in np.unique(labels)])
        assert record.values["E0_1"][i] == pytest.approx(expected, rel=1e-5)


def test_without_logger_history_and_callback_metrics_still_work(tmp_path):
    monitor = TopologyMonitor(samples_per_class=20, metrics=("e0",), every_n_epochs=2)
    trainer = quiet_trainer(
        max_epochs=4, callbacks=[monitor], logger=False, default_root_dir=tmp_path
    )
    trainer.fit(MLP(), loader(blobs()))
    assert [r.epoch for r in monitor.history] == [1, 3]
    assert "topology/E0_1_scaled/last" in trainer.callback_metrics
    lines = open(tmp_path / "topology_history.jsonl").read().splitlines()
    assert len(lines) == 2


def test_resume_from_checkpoint_continues_history(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    logger = TensorBoardLogger(tmp_path, name="resume")
    first = TopologyMonitor(samples_per_class=20, metrics=("e0", "sw"))
    trainer = quiet_trainer(
        max_epochs=2, callbacks=[first, ckpt], logger=logger, enable_checkpointing=True
    )
    trainer.fit(MLP(), loader(blobs()))

    second = TopologyMonitor(samples_per_class=20, metrics=("e0", "sw"))
    logger2 = TensorBoardLogger(tmp_path, name="resume")
    trainer = quiet_trainer(max_epochs=4, callbacks=[second], logger=logger2)
    trainer.fit(MLP(), loader(blobs()), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert [r.epoch for r in second.history] == [0, 1, 2, 3]
    assert second.history[1].values == first.history[1].values
    lines = open(os.path.join(logger2.log_dir, "topology_history.jsonl")).read().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1, 2, 3]


def test_unknown_block_fails_at_fit_start(tmp_path):
    trainer = quiet_trainer(
        callbacks=[TopologyMonitor(blocks=["nope"])], logger=False, default_root_dir=tmp_path
    )
    with pytest.raises(ValueError, match=r"unknown block name\(s\) \['nope'\]"):
        trainer.fit(MLP(), loader(blobs()))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"reduction": "max"}, "reduction must be one of"),
        ({"samples_per_class": 0}, "samples_per_class"),
        ({"every_n_epochs": 1.5}, "every_n_epochs"),
        ({"metrics": ("e0", "betti")}, "metrics must be"),
        ({"homology_dims": (2,)}, "homology_dims"),
        ({"normalize": "zscore"}, "normalize"),
        ({"blocks": "all"}, "blocks must be"),
        ({"probe": [1, 2]}, "probe must be"),
    ],
)
def test_bad_arguments_say_what_is_allowed(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TopologyMonitor(**kwargs)


def test_one_configuration_object_or_its_fields_as_keywords():
    config = SummaryConfig(metrics=("e0",), alpha=2.0)
    assert TopologyMonitor(config).config == config
    assert TopologyMonitor(metrics=("e0",), alpha=2.0).config == config
    assert TopologyMonitor(config).metric_names == [
        "E0_2",
        "E0_2_scaled",
        "E0_mean_lifespan",
        "beta0",
    ]
    with pytest.raises(TypeError, match=r"give config= or summary options \['alpha'\], not both"):
        TopologyMonitor(config, alpha=1.0)
    # A misspelt option names what there is: the summary options and the callback's own.
    with pytest.raises(
        TypeError, match=r"\['homology_dim'\]: the summary options are \[.*'homology_dims'"
    ):
        TopologyMonitor(homology_dim=(0, 1))
    with pytest.raises(TypeError, match=r"its own options are \[.*'every_n_epochs'"):
        TopologyMonitor(every_n_epoch=2)
    with pytest.raises(ValueError, match="config must be a SummaryConfig"):
        TopologyMonitor({"metrics": ("e0",)})


def test_figures_every_n_epochs_and_after_the_last(tmp_path):
    logger = TensorBoardLogger(tmp_path, name="fig")
    monitor = TopologyMonitor(samples_per_class=20, metrics=("e0", "sw"), figures_every_n_epochs=2)
    trainer = quiet_trainer(max_epochs=3, logger=logger, callbacks=[monitor])
    trainer.fit(MLP(), loader(blobs()))
    assert glob.glob(os.path.join(logger.log_dir, "events.out.tfevents.*"))
    events = read_events(logger.log_dir)
    assert [e.step for e in events.Images("topology_figures/depth_E0_1_scaled")] == [1, 2]
    assert [e.step for e in events.Images("topology_figures/sw_heatmap")] == [1, 2]
    assert "topology_figures/depth_E0_mean_lifespan" not in events.Tags()["images"]


def test_classes_of_different_sizes_are_all_measured():
    # A given probe with classes of 50, 40 and 25 inputs: every class of every block gets its
    # E0 (= gudhi) and a PHdim fit, though their subsample sizes differ.
    data = blobs(n_per_class=60)
    keep = torch.cat([torch.arange(0, 50), torch.arange(60, 100), torch.arange(120, 145)])
    x, y = data.tensors[0][keep], data.tensors[1][keep]
    monitor = TopologyMonitor(probe=(x, y), metrics=("e0", "phdim"))
    model = MLP()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no block may be reported as a problem
        record = monitor.measure(model)
    assert [int((monitor.probe.labels == c).sum()) for c in range(3)] == [50, 40, 25]
    assert np.isfinite(record.per_class["PHdim"]).all()
    model.eval()
    with torch.no_grad():
        output = model(monitor.probe.inputs).numpy()
    labels = monitor.probe.labels.numpy()
    expected = [gudhi_e0(output[labels == c]) for c in range(3)]
    np.testing.assert_allclose(record.per_class["E0_1"][-1], expected, rtol=1e-5)


def test_state_keys_tell_monitors_apart_and_each_resumes_its_own_history(tmp_path):
    def monitors():
        return (
            TopologyMonitor(samples_per_class=20, metrics=("e0",), blocks=["net.2"]),
            TopologyMonitor(samples_per_class=20, metrics=("e0",), blocks=["net.5"]),
            TopologyMonitor(samples_per_class=20, metrics=("phdim",), blocks=["net.5"]),
        )

    keys = [m.state_key for m in monitors()]
    assert len(set(keys)) == 3
    assert monitors()[0].state_key == keys[0]  # stable across instances: resumable

    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    first = monitors()
    trainer = quiet_trainer(
        max_epochs=2,
        callbacks=[*first, ckpt],
        logger=False,
        enable_checkpointing=True,
        default_root_dir=tmp_path,
    )
    trainer.fit(MLP(), loader(blobs()))
    second = monitors()
    trainer = quiet_trainer(
        max_epochs=3, callbacks=list(second), logger=False, default_root_dir=tmp_path
    )
    trainer.fit(MLP(), loader(blobs()), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    for before, after in zip(first, second, strict=True):
        assert [r.epoch for r in after.history] == [0, 1, 2]
        assert [r.to_dict() for r in after.history[:2]] == [r.to_dict() for r in before.history]
    assert second[0].block_names == ["net.2", "output"]
    assert second[1].block_names == ["net.5", "output"]
    assert "PHdim" in second[2].history[0].values

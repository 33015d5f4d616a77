"""measure(): the one model -> record function, the same record the callback logs."""

import math
import subprocess
import sys

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from sklearn.datasets import load_digits
from torch.utils.data import TensorDataset

from helpers import MLP, blobs, loader, quiet_trainer
from topo_monitor import (
    AdversarialTopologyMonitor,
    ProbeSet,
    SummaryConfig,
    TopologyMonitor,
    TopologyRecord,
    adversarial_topology,
    measure,
    read_history,
)
from topo_monitor.probing.baselines import mean_margin


def comparable(record: TopologyRecord) -> dict:
    """Everything but the wall-clock timings and the velocity (it needs the previous epoch)."""
    out = record.to_dict()
    out.pop("timings")
    for values in (out["values"], out["per_class"]):
        values.pop("H0_velocity", None)
    return out


def test_measure_gives_exactly_the_record_the_callback_logged(tmp_path):
    pl.seed_everything(0)
    monitor = TopologyMonitor(samples_per_class=25, seed=3, homology_dims=(0, 1))
    trainer = quiet_trainer(
        max_epochs=2, callbacks=[monitor], logger=False, default_root_dir=tmp_path
    )
    model = MLP()
    trainer.fit(model, loader(blobs()))
    logged = monitor.history[-1]

    offline = measure(
        model, monitor.probe, **monitor.measure_options, epoch=logged.epoch, step=logged.step
    )
    assert comparable(offline) == comparable(logged)
    # The same with the options spelled out as a user would, and from the history file.
    spelled = measure(
        model,
        (monitor.probe.inputs, monitor.probe.labels),
        seed=3,
        homology_dims=(0, 1),
        epoch=logged.epoch,
        step=logged.step,
    )
    assert comparable(spelled) == comparable(logged)
    from_file = read_history(tmp_path / "topology_history.jsonl")[-1]
    assert comparable(from_file) == comparable(logged)
    # Baselines, filled by measure itself, against a direct computation.
    model.eval()
    with torch.no_grad():
        logits = model(monitor.probe.inputs)
    assert offline.extras["margin"] == pytest.approx(mean_margin(logits, monitor.probe.labels))
    norm = math.sqrt(sum(float((p.double() ** 2).sum()) for p in model.parameters()))
    assert offline.extras["param_norm"] == pytest.approx(norm, rel=1e-12)
    assert {"forward", "reduction", "h0", "phdim", "sw", "h1"} <= set(offline.timings)


def gudhi_scale_free_h0(X: np.ndarray) -> np.ndarray:
    """The finite H0 bars of a Rips filtration (gudhi), divided by the RMS radius (NumPy)."""
    import gudhi

    tree = gudhi.RipsComplex(points=X).create_simplex_tree(max_dimension=1)
    tree.compute_persistence()
    bars = tree.persistence_intervals_in_dimension(0)
    bars = bars[np.isfinite(bars[:, 1])]
    return bars / np.sqrt(((X - X.mean(axis=0)) ** 2).sum(axis=1).mean())


def test_velocity_is_the_sw_distance_between_consecutive_epochs_diagrams(tmp_path):
    from gudhi.representations import SlicedWassersteinDistance

    snapshots = []

    class Snapshot(pl.Callback):
        def on_train_epoch_end(self, trainer, module):
            snapshots.append({k: v.clone() for k, v in module.state_dict().items()})

    pl.seed_everything(0)
    monitor = TopologyMonitor(samples_per_class=20, metrics=("e0", "sw"))
    trainer = quiet_trainer(
        max_epochs=2, callbacks=[monitor, Snapshot()], logger=False, default_root_dir=tmp_path
    )
    model = MLP()
    trainer.fit(model, loader(blobs()))
    first, second = monitor.history
    assert all(math.isnan(v) for v in first.values["H0_velocity"])  # nothing to compare with
    assert first.diagrams is None and second.diagrams is not None  # only the newest kept

    # Offline, epoch by epoch, gives the logged velocity exactly.
    records = []
    for state in snapshots:
        model.load_state_dict(state)
        previous = records[-1] if records else None
        records.append(measure(model, monitor.probe, **monitor.measure_options, previous=previous))
    assert records[1].values["H0_velocity"] == second.values["H0_velocity"]

    # Independently: gudhi's Rips diagrams of each class cloud, scaled, gudhi's SW, averaged.
    sw = SlicedWassersteinDistance(num_directions=50)
    clouds = []
    for state in snapshots:
        model.load_state_dict(state)
        model.eval()
        with torch.no_grad():
            clouds.append(model.net[:3](monitor.probe.inputs).double().numpy())  # block "net.2"
    labels = monitor.probe.labels.numpy()
    expected = np.mean(
        [
            sw(
                gudhi_scale_free_h0(clouds[0][labels == c]),
                gudhi_scale_free_h0(clouds[1][labels == c]),
            )
            for c in np.unique(labels)
        ]
    )
    assert second.blocks[0] == "net.2"
    assert second.values["H0_velocity"][0] == pytest.approx(expected, rel=1e-6)


def test_measure_draws_the_probe_from_a_dataset_as_the_callback_does():
    digits = load_digits()
    data = TensorDataset(
        torch.tensor(digits.data[:400], dtype=torch.float32), torch.tensor(digits.target[:400])
    )
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    drawn = measure(model, data, samples_per_class=20, seed=5, metrics=("e0",))
    probe = ProbeSet.from_dataset(data, 20, seed=5)
    given = measure(model, probe, seed=5, metrics=("e0",))
    assert comparable(drawn) == comparable(given)
    assert drawn.blocks == ["1", "output"] and drawn.epoch is None and drawn.step is None
    assert drawn.classes == list(range(10))


def test_measure_leaves_model_and_random_streams_as_they_were():
    model = torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.Dropout(0.5), torch.nn.ReLU(), torch.nn.Linear(16, 3)
    )
    model.train()
    model[1].eval()  # a user's frozen part keeps its own mode
    data = blobs()
    torch.manual_seed(11)
    before = torch.get_rng_state()
    np_before = np.random.get_state()[1].copy()  # noqa: NPY002
    with torch.enable_grad():
        measure(model, data.tensors, metrics=("e0", "phdim"))
        assert torch.is_grad_enabled()
    assert torch.equal(torch.get_rng_state(), before)
    assert np.array_equal(np.random.get_state()[1], np_before)  # noqa: NPY002
    assert model.training and not model[1].training and model[0].training
    assert all(not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"homology_dims": (2,)}, r"homology_dims must be \(0,\) or \(0, 1\)"),
        ({"metrics": ("e0", "betti")}, "metrics must be a non-empty subset"),
        ({"alpha": -1.0}, "alpha must be a positive finite number"),
        ({"sw_directions": 1}, "sw_directions must be an int >= 2"),
        ({"normalize": "zscore"}, 'normalize must be None or "minmax"'),
        ({"reduction": "max"}, "reduction must be one of"),
        ({"batch_size": 0}, "batch_size must be a positive int"),
    ],
)
def test_every_entry_point_rejects_the_same_bad_options(options, message):
    model = torch.nn.Sequential(torch.nn.Linear(8, 3))
    with pytest.raises(ValueError, match=message):
        measure(model, blobs().tensors, **options)
    with pytest.raises(ValueError, match=message):
        TopologyMonitor(**options)
    summary_only = {k: v for k, v in options.items() if k in ("homology_dims",)}
    if summary_only:  # what the adversarial analysis accepted before and silently ignored
        images = torch.rand(20, 1, 4, 4)
        with pytest.raises(ValueError, match=message):
            adversarial_topology(torch.nn.Flatten(), images, torch.arange(20) % 2, **summary_only)
        with pytest.raises(ValueError, match=message):
            AdversarialTopologyMonitor(**summary_only)


def test_alpha_may_be_a_numpy_scalar_or_a_0d_tensor():
    for alpha in (np.float32(2), torch.tensor(2.0), 2):
        assert SummaryConfig(alpha=alpha).alpha == 2.0
        assert TopologyMonitor(alpha=alpha).metric_names[0] == "E0_2"


def test_config_and_summary_options_are_exclusive():
    model = torch.nn.Sequential(torch.nn.Linear(8, 3))
    with pytest.raises(TypeError, match="not both"):
        measure(model, blobs().tensors, config=SummaryConfig(), metrics=("e0",))
    with pytest.raises(ValueError, match="probe must be"):
        measure(model, [1, 2, 3])


def test_record_without_epoch_round_trips_through_json():
    record = TopologyRecord(
        blocks=["a", "output"], depths=[0.5, 1.0], values={"E0_1": [math.nan, 2.0]}
    )
    back = TopologyRecord.from_dict(record.to_dict())
    assert back.epoch is None and back.step is None and back.sw is None
    assert math.isnan(back.values["E0_1"][0]) and back.values["E0_1"][1] == 2.0


def test_import_loads_no_heavy_optional_library():
    code = (
        "import sys, topo_monitor\n"
        "heavy = ['gudhi', 'matplotlib', 'torchattacks', 'mlflow', 'pytorch_lightning', "
        "'lightning']\n"
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_callbacks_check_a_given_probe_at_construction():
    for callback in (TopologyMonitor, AdversarialTopologyMonitor):
        with pytest.raises(ValueError, match="probe must be"):
            callback(probe=[1, 2])  # the adversarial monitor used to ignore it and draw its own
        given = callback(probe=blobs().tensors).probe
        assert isinstance(given, ProbeSet) and len(given) == 120

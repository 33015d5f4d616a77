"""Scalars and figures reach every Lightning logger: TensorBoard, CSV, MLflow, W&B, several at once.

Each test reads the logger's own files back with the logger's own reader.
"""

import csv
import glob
import json
import os
import struct
import time
import warnings

import pytest
from matplotlib.image import imread
from pytorch_lightning.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger, WandbLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import MLP, blobs, loader, quiet_trainer
from topo_monitor import TopologyMonitor

FIGURE_TAGS = {
    "topology_figures/depth_E0_1_scaled",
    "topology_figures/depth_PHdim",
    "topology_figures/sw_heatmap",
}


def fit(loggers, tmp_path, epochs=2):
    monitor = TopologyMonitor(samples_per_class=20, figures_every_n_epochs=1)
    trainer = quiet_trainer(
        max_epochs=epochs, callbacks=[monitor], logger=loggers, default_root_dir=tmp_path
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(MLP(), loader(blobs()))
    figure_warnings = [w for w in caught if "no logger takes figures" in str(w.message)]
    return monitor, figure_warnings


def expected_scalars(monitor):
    """Per epoch, {tag: value} of every finite value the monitor recorded."""
    return {
        r.epoch: {
            f"topology/{metric}/{block}": value
            for metric, values in r.values.items()
            for block, value in zip(r.blocks, values, strict=True)
            if value == value
        }
        for r in monitor.history
    }


def assert_same(found, expected, rel=1e-12):
    """The same epochs and tags, the same values."""
    assert sorted(found) == sorted(expected)
    for epoch, values in expected.items():
        assert found[epoch] == pytest.approx(values, rel=rel), epoch


def csv_scalars(log_dir):
    rows = list(csv.DictReader(open(os.path.join(log_dir, "metrics.csv"))))
    out = {}
    for row in rows:
        for key, value in row.items():
            if key.startswith("topology/") and value != "":
                out.setdefault(int(row["step"]), {})[key] = float(value)
    return out


@pytest.fixture
def mlflow_logger(tmp_path, monkeypatch):
    """An MLFlowLogger on a local file store (no server): ``(logger, tracking URI)``. mlflow is a
    dev dependency: a missing or broken install fails here rather than skipping."""
    import mlflow  # noqa: F401

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow 3 prefers a database
    uri = f"file:{tmp_path / 'mlruns'}"
    return MLFlowLogger(experiment_name="topo", tracking_uri=uri), uri


def mlflow_client(uri):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def mlflow_scalars(client, run_id):
    out = {}
    for key in client.get_run(run_id).data.metrics:
        if key.startswith("topology/"):
            for m in client.get_metric_history(run_id, key):
                out.setdefault(m.step, {})[key] = m.value
    return out


def mlflow_figures(client, run_id):
    """The PNG artifacts of every figure, as ``tag -> [file names]``."""
    found = {}
    for tag in FIGURE_TAGS:
        files = [os.path.basename(a.path) for a in client.list_artifacts(run_id, tag)]
        found[tag] = sorted(files)
    return found


def test_csv_logger_gets_every_scalar_and_figures_as_png_files_with_one_warning(tmp_path):
    logger = CSVLogger(tmp_path, name="csv")
    monitor, figure_warnings = fit(logger, tmp_path)
    assert_same(csv_scalars(logger.log_dir), expected_scalars(monitor))
    assert len(figure_warnings) == 1
    assert os.path.join(logger.log_dir, "topology_figures") in str(figure_warnings[0].message)
    for tag in FIGURE_TAGS:
        folder = os.path.join(logger.log_dir, *tag.split("/"))
        assert sorted(os.listdir(folder)) == ["epoch_0000.png", "epoch_0001.png"]
        image = imread(os.path.join(folder, "epoch_0001.png"))
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert os.path.exists(os.path.join(logger.log_dir, "topology_history.jsonl"))


def test_mlflow_logger_gets_every_scalar_and_every_figure(tmp_path, mlflow_logger):
    logger, uri = mlflow_logger
    monitor, figure_warnings = fit(logger, tmp_path)
    client, run_id = mlflow_client(uri), logger.run_id
    assert_same(mlflow_scalars(client, run_id), expected_scalars(monitor))
    assert mlflow_figures(client, run_id) == {
        tag: ["epoch_0000.png", "epoch_0001.png"] for tag in FIGURE_TAGS
    }
    assert figure_warnings == []


def test_several_loggers_at_once_each_get_everything_they_can_take(tmp_path, mlflow_logger):
    tensorboard = TensorBoardLogger(tmp_path, name="tb")
    csv_logger = CSVLogger(tmp_path, name="csv")
    mlflow, uri = mlflow_logger
    monitor, figure_warnings = fit([tensorboard, csv_logger, mlflow], tmp_path)
    expected = expected_scalars(monitor)

    events = EventAccumulator(tensorboard.log_dir, size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    from_tensorboard = {}
    for tag in events.Tags()["scalars"]:
        if tag.startswith("topology/"):
            for event in events.Scalars(tag):
                from_tensorboard.setdefault(event.step, {})[tag] = event.value
    assert_same(from_tensorboard, expected, rel=1e-6)  # float32 event values
    assert FIGURE_TAGS <= set(events.Tags()["images"])
    assert [e.step for e in events.Images("topology_figures/depth_PHdim")] == [0, 1]

    assert_same(csv_scalars(csv_logger.log_dir), expected)
    client, run_id = mlflow_client(uri), mlflow.run_id
    assert_same(mlflow_scalars(client, run_id), expected)
    assert all(len(files) == 2 for files in mlflow_figures(client, run_id).values())
    # Two loggers took the figures: no PNG files and no warning for the CSV logger.
    assert figure_warnings == []
    assert not os.path.exists(os.path.join(csv_logger.log_dir, "topology_figures"))


def wandb_history(save_dir, timeout=60.0):
    """The history rows of the one offline W&B run under ``save_dir``, read from its ``.wandb``
    file: W&B's LevelDB-style log (a 7-byte header, then 32 KiB blocks of records, each a 7-byte
    header — CRC, length, type: 1 full, 2 first, 3 middle, 4 last — and a protobuf ``Record``
    split across blocks). wandb >= 0.20 no longer ships a reader of its own. W&B's core process
    may still be writing when ``finish()`` returns (seen on a loaded machine): the file is read
    until its closing ``exit`` record is there."""
    from wandb.proto import wandb_internal_pb2

    (path,) = glob.glob(os.path.join(save_dir, "wandb", "offline-run-*", "run-*.wandb"))
    deadline = time.monotonic() + timeout
    while True:
        records = _wandb_records(open(path, "rb").read(), wandb_internal_pb2.Record)
        kinds = [record.WhichOneof("record_type") for record in records]
        if "exit" in kinds or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert "exit" in kinds, f"the W&B run file {path} was not closed within {timeout} s"
    rows = [
        {
            item.key or "/".join(item.nested_key): json.loads(item.value_json)
            for item in record.history.item
        }
        for record, kind in zip(records, kinds, strict=True)
        if kind == "history"
    ]
    return path, rows


def _wandb_records(data, record_type):
    assert data[:4] == b":W&B"
    block, header = 32768, 7
    records, parts, i = [], b"", header
    while i + header <= len(data):
        left = block - i % block
        _, length, kind = struct.unpack("<IHB", data[i : i + header])
        if left < header or (length == 0 and kind == 0):  # padding to the next block
            i += left
            continue
        if i + header + length > len(data):  # a record still being written
            break
        parts += data[i + header : i + header + length]
        i += header + length
        if kind in (1, 4):
            record = record_type()
            record.ParseFromString(parts)
            records.append(record)
            parts = b""
    return records


def test_wandb_offline_logger_gets_every_scalar_and_every_figure(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    for variable in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(variable, str(tmp_path / "wandb-home"))  # nothing shared with others
    logger = WandbLogger(offline=True, save_dir=str(tmp_path), project="topo")
    monitor, figure_warnings = fit(logger, tmp_path)
    logger.experiment.finish()
    path, rows = wandb_history(tmp_path)

    scalars = {}
    for row in rows:
        for key, value in row.items():
            if key.startswith("topology/"):
                scalars.setdefault(row["trainer/global_step"], {})[key] = value
    assert_same(scalars, expected_scalars(monitor))

    run_files = os.path.join(os.path.dirname(path), "files")
    for tag in FIGURE_TAGS:
        logged = [row for row in rows if f"{tag}/filenames" in row]
        assert [row["trainer/global_step"] for row in logged] == [0, 1], tag
        (name,) = logged[-1][f"{tag}/filenames"]
        image = imread(os.path.join(run_files, name))
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert figure_warnings == []


def test_scalar_keys_are_built_and_read_in_one_place():
    from topo_monitor import TopologyRecord
    from topo_monitor.reporting.keys import record_scalars, scalar_key, split_key

    record = TopologyRecord(
        blocks=["a", "b", "output"],
        depths=[1 / 3, 2 / 3, 1.0],
        values={"E0_1": [1.0, float("nan"), 3.0]},
        network={"functional_life_H1": 0.5},
    )
    scalars = record_scalars(record, aliases=True)
    assert scalars["topology/E0_1/a"] == 1.0 and scalars["topology/E0_1/last"] == 3.0
    assert scalars["topology/E0_1/last_hidden"] != scalars["topology/E0_1/last_hidden"]  # NaN kept
    assert scalars["topology/functional_life_H1"] == 0.5
    assert set(record_scalars(record)) == set(scalars) - {
        "topology/E0_1/last",
        "topology/E0_1/last_hidden",
    }
    assert split_key(scalar_key("E0_1", "last_hidden")) == ("topology", "E0_1", "last_hidden")
    assert split_key(scalar_key("functional_life_H1")) == ("topology", "functional_life_H1", None)
    assert split_key("topology_heldout/PHdim/a") == ("topology_heldout", "PHdim", "a")
    for bad in ("E0_1/a", "topology/", "topology/E0_1/a/b", "metrics/E0_1/a", None):
        assert split_key(bad) is None

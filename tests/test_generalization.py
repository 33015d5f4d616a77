"""GeneralizationPredictor, calibration files and the PredictedTestAccuracy callback."""

import json
import math

import numpy as np
import pytest
from pytorch_lightning.callbacks import ModelCheckpoint
from scipy import stats

from helpers import MLP, blobs, loader, quiet_trainer
from topo_monitor import PredictedTestAccuracy, TopologyMonitor
from topo_monitor.analysis.baselines import mean_margin
from topo_monitor.analysis.generalization import (
    CalibrationSet,
    GeneralizationPredictor,
    features_from_record,
    kendall_tau,
    pearson_r,
)


def synthetic(n=30, relation="topology", seed=0):
    """Test accuracy linear in E0_1 (or in train_loss) plus small noise; the rest is noise."""
    rng = np.random.default_rng(seed)
    calibration = CalibrationSet()
    for i in range(n):
        e0 = rng.uniform(50, 150)
        loss = rng.uniform(0.01, 0.5)
        driver = e0 / 100 if relation == "topology" else loss * 2
        accuracy = float(np.clip(0.98 - 0.3 * driver + rng.normal(0, 0.005), 0, 1))
        features = {
            "E0_1": e0,
            "PHdim": rng.uniform(3, 9),
            "train_loss": loss,
            "margin": rng.uniform(1, 5),
        }
        calibration.add(f"run-{i}", accuracy, features, width=int(rng.integers(8, 64)))
    return calibration


def test_predictor_finds_the_topological_relation():
    calibration = synthetic(relation="topology")
    predictor = GeneralizationPredictor().fit(calibration)
    assert predictor.group == "topology" and predictor.chosen == ("E0_1",)
    accuracy, std = predictor.predict({"E0_1": 100.0})
    assert accuracy == pytest.approx(0.98 - 0.3, abs=0.01)
    assert 0.003 < std < 0.01
    score = predictor.score(calibration)
    assert score["correlations"]["E0_1"]["pearson_r"] < -0.99
    assert score["correlations"]["E0_1"]["kendall_tau"] < -0.9
    assert abs(score["correlations"]["PHdim"]["pearson_r"]) < 0.5
    loo = score["loo_mae"]
    assert loo["topology"] < 0.01 < loo["baselines"]
    assert loo["topology"] < loo["mean"] / 5
    assert loo["chosen"] == pytest.approx(loo["topology"], rel=0.2)


def test_predictor_says_when_a_baseline_is_better():
    calibration = synthetic(relation="baseline")
    predictor = GeneralizationPredictor().fit(calibration)
    assert predictor.group == "baselines" and predictor.chosen == ("train_loss",)
    loo = predictor.score(calibration)["loo_mae"]
    assert loo["baselines"] < loo["topology"]
    assert "baselines: train_loss" in repr(predictor)


def test_correlations_match_scipy(rng):
    x = rng.normal(size=40)
    y = np.round(x + rng.normal(size=40), 1)  # ties on purpose
    assert pearson_r(x, y) == pytest.approx(stats.pearsonr(x, y)[0])
    assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y)[0])


def test_calibration_file_round_trip(tmp_path):
    calibration = synthetic(n=6)
    calibration.runs[0].features["E1_1"] = math.nan
    path = tmp_path / "calibration.jsonl"
    calibration.save(path)
    assert json.loads(path.read_text().splitlines()[0])["features"]["E1_1"] is None
    loaded = CalibrationSet.load(path)
    assert [r.run_id for r in loaded.runs] == [r.run_id for r in calibration.runs]
    assert loaded.runs[1] == calibration.runs[1]
    assert math.isnan(loaded.runs[0].features["E1_1"])


def test_clear_errors_on_bad_calibration(tmp_path):
    with pytest.raises(ValueError, match="at least 4 calibration runs"):
        GeneralizationPredictor().fit(CalibrationSet())
    calibration = synthetic(n=5)
    with pytest.raises(ValueError, match="already in the calibration set"):
        calibration.add("run-0", 0.5, {"E0_1": 1.0})
    with pytest.raises(ValueError, match=r"test_accuracy must be in \[0, 1\]"):
        calibration.add("run-x", 93.0, {"E0_1": 1.0})
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"run_id": "a", "features": {"E0_1": 1}}\n')
    with pytest.raises(ValueError, match="line 1: not a calibration record"):
        CalibrationSet.load(bad)
    with pytest.raises(ValueError, match="none of the features"):
        GeneralizationPredictor(topology=("E9",), baselines=()).fit(calibration)
    with pytest.raises(RuntimeError, match="fit"):
        GeneralizationPredictor().predict({"E0_1": 1.0})
    predictor = GeneralizationPredictor().fit(synthetic())
    with pytest.raises(ValueError, match="needs finite values"):
        predictor.predict({"PHdim": 3.0})


def test_mean_margin_closed_form():
    logits = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 5.0]])
    assert mean_margin(logits, np.array([0, 1])) == pytest.approx(((3 - 1) + (2 - 5)) / 2)
    assert math.isnan(mean_margin(logits[:, :1], np.array([0, 1])))


def test_callback_logs_the_prediction_without_test_data(tmp_path):
    monitor = TopologyMonitor(samples_per_class=20, metrics=("e0",))
    first = quiet_trainer(
        max_epochs=1, callbacks=[monitor], logger=False, default_root_dir=tmp_path
    )
    first.fit(MLP(), loader(blobs()))
    live = features_from_record(monitor.history[-1])
    assert set(live) >= {"E0_1", "E0_1_scaled", "margin", "param_norm"}
    # A calibration in which accuracy falls with E0_1 around this run's value.
    calibration = CalibrationSet()
    for i, factor in enumerate(np.linspace(0.5, 1.5, 8)):
        calibration.add(
            f"r{i}", float(0.99 - 0.2 * factor + 0.001 * (-1) ** i), {"E0_1": live["E0_1"] * factor}
        )
    path = tmp_path / "calibration.jsonl"
    calibration.save(path)

    predicted = PredictedTestAccuracy(path)
    monitor = TopologyMonitor(samples_per_class=20, metrics=("e0",))
    trainer = quiet_trainer(
        max_epochs=2, callbacks=[predicted, monitor], logger=False, default_root_dir=tmp_path
    )
    trainer.fit(MLP(), loader(blobs()))
    assert [h["epoch"] for h in predicted.history] == [0, 1]
    expected, std = predicted.predictor.predict(features_from_record(monitor.history[-1]))
    logged = trainer.callback_metrics["topology/predicted_test_acc"].item()
    assert logged == pytest.approx(expected, rel=1e-6)
    assert 0.5 < logged < 1.0 and std > 0


def test_prediction_reads_its_calibration_at_fit_and_resumes_its_history(tmp_path):
    path = tmp_path / "calibration.jsonl"
    predicted = PredictedTestAccuracy(path)  # the file does not exist yet: read in setup
    assert predicted.predictor is None
    calibration = CalibrationSet()
    for i, margin in enumerate(np.linspace(-1.0, 3.0, 8)):
        calibration.add(f"r{i}", float(0.6 + 0.1 * margin + 0.002 * (-1) ** i), {"margin": margin})
    calibration.save(path)

    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer = quiet_trainer(
        max_epochs=2,
        callbacks=[TopologyMonitor(samples_per_class=20, metrics=("e0",)), predicted, ckpt],
        logger=False,
        enable_checkpointing=True,
        default_root_dir=tmp_path,
    )
    trainer.fit(MLP(), loader(blobs()))
    assert predicted.predictor.chosen == ("margin",)
    assert [h["epoch"] for h in predicted.history] == [0, 1]

    resumed = PredictedTestAccuracy(path)
    monitor = TopologyMonitor(samples_per_class=20, metrics=("e0",))
    trainer = quiet_trainer(
        max_epochs=3, callbacks=[monitor, resumed], logger=False, default_root_dir=tmp_path
    )
    trainer.fit(MLP(), loader(blobs()), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert resumed.history[:2] == predicted.history
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2]
    expected, _ = resumed.predictor.predict(features_from_record(monitor.history[-1]))
    assert resumed.history[-1]["topology/predicted_test_acc"] == pytest.approx(expected)


def test_prediction_on_a_missing_block_is_skipped_not_a_crash(tmp_path):
    calibration = CalibrationSet()
    for i in range(6):
        calibration.add(f"r{i}", 0.5 + 0.05 * i + 0.001 * (-1) ** i, {"E0_1": float(i)})
    predicted = PredictedTestAccuracy(calibration, block="no.such.block")
    trainer = quiet_trainer(
        max_epochs=1,
        callbacks=[TopologyMonitor(samples_per_class=20, metrics=("e0",)), predicted],
        logger=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(MLP(), loader(blobs()))
    assert predicted.history == [] and trainer.current_epoch == 1

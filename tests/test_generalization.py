"""GeneralizationPredictor, calibration files and the PredictedTestAccuracy callback."""

import csv
import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from scipy import stats

from helpers import MLP, blobs, loader, quiet_trainer
from topo_monitor import PredictedTestAccuracy, TopologyMonitor
from topo_monitor.analysis.generalization import (
    CalibrationSet,
    GeneralizationPredictor,
    RunRecord,
    features_from_record,
)
from topo_monitor.analysis.statistics import kendall_tau, paired_bootstrap, pearson_r
from topo_monitor.probing.baselines import mean_margin
from topo_monitor.probing.record import TopologyRecord


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


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_callback_logs_the_prediction_without_test_data(tmp_path, alpha):
    # With alpha = 2 the features are E0_2...: the predictor must find them (it once looked
    # for E0_1 only, and silently had no E feature).
    e0 = f"E0_{alpha:g}"
    monitor = TopologyMonitor(samples_per_class=20, metrics=("e0",), alpha=alpha)
    first = quiet_trainer(
        max_epochs=1, callbacks=[monitor], logger=False, default_root_dir=tmp_path
    )
    first.fit(MLP(), loader(blobs()))
    live = features_from_record(monitor.history[-1])
    assert set(live) >= {e0, f"{e0}_scaled", "margin", "param_norm"}
    # A calibration in which accuracy falls with E0_1 around this run's value.
    calibration = CalibrationSet()
    for i, factor in enumerate(np.linspace(0.5, 1.5, 8)):
        calibration.add(
            f"r{i}", float(0.99 - 0.2 * factor + 0.001 * (-1) ** i), {e0: live[e0] * factor}
        )
    path = tmp_path / "calibration.jsonl"
    calibration.save(path)

    predicted = PredictedTestAccuracy(path)
    monitor = TopologyMonitor(samples_per_class=20, metrics=("e0",), alpha=alpha)
    trainer = quiet_trainer(
        max_epochs=2, callbacks=[predicted, monitor], logger=False, default_root_dir=tmp_path
    )
    trainer.fit(MLP(), loader(blobs()))
    assert e0 in predicted.predictor.topology and list(predicted.predictor.chosen) == [e0]
    assert [h["epoch"] for h in predicted.history] == [0, 1]
    expected, std = predicted.predictor.predict(features_from_record(monitor.history[-1]))
    logged = trainer.callback_metrics["topology/predicted_test_acc"].item()
    assert logged == pytest.approx(expected, rel=1e-6)
    assert 0.5 < logged < 1.0 and std > 0
    value = features_from_record(monitor.history[-1])[e0]
    inside = 0.5 * live[e0] <= value <= 1.5 * live[e0]
    flag = trainer.callback_metrics["topology/predicted_test_acc_extrapolating"].item()
    assert flag == (0.0 if inside else 1.0)


def test_prediction_reads_its_calibration_at_fit_and_resumes_its_history(tmp_path):
    path = tmp_path / "calibration.jsonl"
    predicted = PredictedTestAccuracy(path)  # the file does not exist yet: read in setup
    assert predicted.predictor is None
    calibration = CalibrationSet()
    for i, margin in enumerate(np.linspace(-1.0, 15.0, 8)):
        calibration.add(f"r{i}", float(0.5 + 0.03 * margin + 0.002 * (-1) ** i), {"margin": margin})
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
    features = features_from_record(monitor.history[-1])
    assert -1.0 < features["margin"] < 15.0, "the test needs a margin inside the calibration"
    expected, _ = resumed.predictor.predict(features)
    assert 0 < expected < 1
    assert resumed.history[-1]["topology/predicted_test_acc"] == pytest.approx(expected)
    assert resumed.history[-1]["topology/predicted_test_acc_extrapolating"] == 0.0


def calibration_in(feature, values, slope=-0.4):
    """Eight runs whose accuracy falls linearly (plus tiny noise) over ``values`` of a feature."""
    calibration = CalibrationSet()
    for i, value in enumerate(np.linspace(*values, 8)):
        fraction = (value - values[0]) / (values[1] - values[0])
        accuracy = 0.9 + slope * fraction + 0.001 * (-1) ** i
        calibration.add(f"r{i}", float(accuracy), {feature: float(value)})
    return calibration


def fit_with(predicted, tmp_path, epochs=2, logger=False, **monitor_options):
    """Fit an MLP with a monitor and ``predicted``: (trainer, monitor, warning messages)."""
    monitor = TopologyMonitor(
        samples_per_class=20, metrics=("e0",), figures_every_n_epochs=None, **monitor_options
    )
    trainer = quiet_trainer(
        max_epochs=epochs, callbacks=[monitor, predicted], logger=logger, default_root_dir=tmp_path
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(MLP(), loader(blobs()))
    return trainer, monitor, [str(w.message) for w in caught]


def test_a_missing_block_is_an_error_at_fit_start(tmp_path):
    calibration = calibration_in("E0_1", (0.0, 5.0))
    with pytest.raises(ValueError, match=r"block='no.such.block'.*records the blocks \['net.2', "):
        fit_with(PredictedTestAccuracy(calibration, block="no.such.block"), tmp_path)
    # A monitor that hooks no module records the output alone: block -2 cannot exist.
    with pytest.raises(ValueError, match=r"block=-2.*records the blocks \['output'\]"):
        fit_with(PredictedTestAccuracy(calibration), tmp_path, blocks=lambda module: [])
    record = TopologyRecord(blocks=["output"], depths=[1.0], values={"E0_1": [1.0]})
    with pytest.raises(ValueError, match="model output only"):
        features_from_record(record)


def test_a_block_missing_from_the_records_warns_once_and_never_crashes(tmp_path):
    calibration = calibration_in("E0_1", (0.0, 5.0))
    predicted = PredictedTestAccuracy(calibration, block=7)  # 3 blocks: net.2, net.5, output
    trainer, monitor, caught = fit_with(predicted, tmp_path, epochs=3)
    assert monitor.block_names == ["net.2", "net.5", "output"]
    assert predicted.history == [] and trainer.current_epoch == 3
    assert "topology/predicted_test_acc" not in trainer.callback_metrics
    missing = [w for w in caught if "no block 7" in w]
    assert len(missing) == 1 and "['net.2', 'net.5', 'output']" in missing[0]


def test_an_unlogged_training_loss_warns_once_and_never_crashes(tmp_path):
    calibration = calibration_in("train_loss", (0.05, 1.5))
    predicted = PredictedTestAccuracy(calibration, loss_key="loss")  # MLP logs "train_loss"
    trainer, _, caught = fit_with(predicted, tmp_path, epochs=3)
    assert predicted.predictor.chosen == ("train_loss",)
    assert predicted.history == [] and trainer.current_epoch == 3
    missing = [w for w in caught if "no metric 'loss' is logged" in w]
    assert len(missing) == 1 and "epoch 0" in missing[0]


def test_only_features_the_monitor_records_are_candidates(tmp_path):
    # PHdim predicts exactly, the margin loosely; a monitor measuring E0 only has no PHdim.
    calibration = CalibrationSet()
    for i, phdim in enumerate(np.linspace(3.0, 9.0, 8)):
        calibration.add(
            f"r{i}", float(1.0 - 0.05 * phdim), {"PHdim": phdim, "margin": 1.0 + (i % 3) + i}
        )
    assert GeneralizationPredictor().fit(calibration).chosen == ("PHdim",)
    predicted = PredictedTestAccuracy(calibration)
    fit_with(predicted, tmp_path, epochs=1)
    assert predicted.predictor.chosen == ("margin",)
    assert [h["epoch"] for h in predicted.history] == [0]

    only_phdim = CalibrationSet()
    for i, phdim in enumerate(np.linspace(3.0, 9.0, 8)):
        only_phdim.add(f"r{i}", float(1.0 - 0.05 * phdim), {"PHdim": phdim})
    with pytest.raises(ValueError, match=r"cannot fit.*records \['E0_1', 'E0_1_scaled'\]"):
        fit_with(PredictedTestAccuracy(only_phdim), tmp_path)


def test_a_calibration_on_another_scale_is_clipped_and_flagged_once(tmp_path):
    # Calibration runs whose E0_1 is 100 times this run's (another model, another scale): the
    # linear fit, extrapolated far below its range, says 0.9 + 0.4 * 0.495 ≈ 1.1.
    first = TopologyMonitor(samples_per_class=20, metrics=("e0",), figures_every_n_epochs=None)
    quiet_trainer(max_epochs=1, callbacks=[first], logger=False, default_root_dir=tmp_path).fit(
        MLP(), loader(blobs())
    )
    live = features_from_record(first.history[-1])["E0_1"]
    calibration = calibration_in("E0_1", (50 * live, 150 * live))
    path = tmp_path / "calibration.jsonl"
    calibration.save(path)

    predicted = PredictedTestAccuracy(path)
    logger = CSVLogger(tmp_path, name="csv")
    trainer, monitor, caught = fit_with(predicted, tmp_path, epochs=3, logger=logger)
    low, high = 50 * live, 150 * live
    assert predicted.predictor.feature_range_ == {"E0_1": pytest.approx((low, high))}
    assert [h["epoch"] for h in predicted.history] == [0, 1, 2]
    for h, record in zip(predicted.history, monitor.history, strict=True):
        coef = predicted.predictor.coef_
        assert coef[0] + coef[1] * features_from_record(record)["E0_1"] > 1.0
        assert h["topology/predicted_test_acc"] == 1.0
        assert h["topology/predicted_test_acc_extrapolating"] == 1.0
    assert trainer.callback_metrics["topology/predicted_test_acc_extrapolating"].item() == 1.0
    flagged = [w for w in caught if "extrapolates" in w]
    assert len(flagged) == 1, flagged
    assert f"E0_1 = {features_from_record(monitor.history[0])['E0_1']:.6g}" in flagged[0]
    assert f"outside [{low:.6g}, {high:.6g}]" in flagged[0]
    with open(Path(logger.log_dir) / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("topology/predicted_test_acc")]
    assert [float(r["topology/predicted_test_acc"]) for r in rows] == [1.0, 1.0, 1.0]
    assert [float(r["topology/predicted_test_acc_extrapolating"]) for r in rows] == [1.0] * 3


def test_predictions_are_clipped_and_the_calibration_range_kept():
    calibration = synthetic(relation="topology")  # accuracy = 0.98 - 0.003 E0_1, E0_1 in 50..150
    predictor = GeneralizationPredictor().fit(calibration)
    values = [r.features["E0_1"] for r in calibration.runs]
    assert predictor.feature_range_ == {"E0_1": (min(values), max(values))}
    assert predictor.predict({"E0_1": 1000.0})[0] == 0.0  # the line says 0.98 - 3 = -2.02
    assert predictor.predict({"E0_1": -100.0})[0] == 1.0  # and 0.98 + 0.3 = 1.28
    assert predictor.outside_range({"E0_1": 1000.0}) == ["E0_1"]
    assert predictor.outside_range({"E0_1": min(values)}) == []
    accuracy, _ = predictor.predict({"E0_1": 100.0})
    assert accuracy == pytest.approx(0.98 - 0.3, abs=0.01)


def test_add_rejects_what_it_cannot_store():
    calibration = CalibrationSet()
    with pytest.raises(ValueError, match="features must be a mapping of feature names to numbers"):
        calibration.add("r0", 0.9, None)
    with pytest.raises(ValueError, match="feature 'E0_1' must be a real number"):
        calibration.add("r0", 0.9, {"E0_1": "12"})
    with pytest.raises(ValueError, match=r"test_accuracy must be in \[0, 1\]"):
        calibration.add("r0", math.nan, {"E0_1": 1.0})
    with pytest.raises(ValueError, match="run_id must be a non-empty str"):
        calibration.add(3, 0.9, {"E0_1": 1.0})
    assert len(calibration) == 0
    run = calibration.add("r0", torch.tensor(0.75), {"E0_1": np.float32(2.5)}, width=8)
    assert run == RunRecord("r0", 0.75, {"E0_1": 2.5}, {"width": 8})


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"run_id": "b", "test_accuracy": 93.0, "features": {"E0_1": 1}}', r"\[0, 1\]"),
        ('{"run_id": "a", "test_accuracy": 0.5, "features": {"E0_1": 1}}', "already in"),
        ('{"run_id": "b", "test_accuracy": 0.5, "features": null}', "features must be a mapping"),
        ('{"run_id": "b", "test_accuracy": "high", "features": {}}', "real number"),
    ],
)
def test_load_applies_the_checks_of_add(tmp_path, line, message):
    path = tmp_path / "calibration.jsonl"
    path.write_text('{"run_id": "a", "test_accuracy": 0.5, "features": {"E0_1": 1}}\n' + line)
    name = re.escape(str(path))
    with pytest.raises(ValueError, match=rf"{name}, line 2, run '[ab]': .*{message}"):
        CalibrationSet.load(path)


@pytest.mark.parametrize("argument", ["topology", "baselines"])
def test_one_name_where_a_sequence_of_names_is_expected_is_an_error(argument):
    with pytest.raises(ValueError, match=rf"not one string: write {argument}=\('E0_1',\)"):
        GeneralizationPredictor(**{argument: "E0_1"})
    with pytest.raises(ValueError, match=f"{argument} must hold names"):
        GeneralizationPredictor(**{argument: ("E0_1", 3)})
    with pytest.raises(ValueError, match="not one string"):
        synthetic(n=5).matrix("E0_1")
    assert GeneralizationPredictor(**{argument: ["E0_1"]}).fit(synthetic()).chosen == ("E0_1",)


def test_the_functional_graph_summaries_are_features_the_predictor_can_choose(tmp_path):
    record = TopologyRecord(
        blocks=["h", "output"],
        depths=[0.5, 1.0],
        values={"E0_1": [2.0, 1.0]},
        network={"functional_midlife_H1": 0.6, "functional_neurons": 12.0},
    )
    features = features_from_record(record)
    assert features["functional_midlife_H1"] == 0.6 and features["E0_1"] == 2.0
    assert "functional_neurons" not in features  # a graph size, not a summary

    calibration = CalibrationSet()
    for i, midlife in enumerate(np.linspace(0.4, 0.8, 8)):
        calibration.add(f"r{i}", float(1.2 - midlife), {"functional_midlife_H1": midlife})
    predicted = PredictedTestAccuracy(calibration)
    monitor = TopologyMonitor(
        samples_per_class=20,
        metrics=("e0", "functional"),
        functional_max_neurons=30,
        figures_every_n_epochs=None,
    )
    trainer = quiet_trainer(
        max_epochs=1, callbacks=[monitor, predicted], logger=False, default_root_dir=tmp_path
    )
    pl.seed_everything(0)  # whatever ran before: the same run, whose graph has H1 bars
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(MLP(), loader(blobs()))
    assert predicted.predictor.chosen == ("functional_midlife_H1",)
    midlife = monitor.history[-1].network["functional_midlife_H1"]
    expected = float(np.clip(1.2 - midlife, 0.0, 1.0))
    assert predicted.history[0]["topology/predicted_test_acc"] == pytest.approx(expected, abs=1e-9)


def test_score_counts_every_run_for_every_feature():
    # A feature that is perfect where it exists but missing on the four hardest runs must not
    # be scored on the eight easy ones only: the missing runs are predicted by the mean of the
    # others (what a user would get) and counted.
    accuracy = np.array([0.90, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.40, 0.45, 0.50, 0.99])
    missing = [8, 9, 10, 11]
    calibration = CalibrationSet()
    for i, a in enumerate(accuracy):
        calibration.add(f"run{i}", a, {"E0_1": math.nan if i in missing else 2 * a - 1})
    score = GeneralizationPredictor(topology=("E0_1",), baselines=()).score(calibration)
    assert score["coverage"] == {"E0_1": pytest.approx(8 / 12)}
    expected = sum(abs(accuracy[i] - np.delete(accuracy, i).mean()) for i in missing) / 12
    assert score["loo_mae"]["topology"] == pytest.approx(expected, abs=1e-9)
    assert score["loo_mae"]["mean"] == pytest.approx(
        np.mean([abs(a - np.delete(accuracy, i).mean()) for i, a in enumerate(accuracy)])
    )


def test_loo_errors_are_per_run_and_average_to_the_mae():
    calibration = synthetic(relation="topology")
    score = GeneralizationPredictor().score(calibration)
    for group, mae in score["loo_mae"].items():
        errors = score["loo_errors"][group]
        assert errors.shape == (len(calibration),)
        assert errors.mean() == pytest.approx(mae)


def test_paired_bootstrap_interval_against_the_normal_approximation(rng):
    # Independent truth: for n = 400 paired differences the percentile bootstrap interval of
    # their mean is close to the normal one, mean ± 1.96 sd / sqrt(n).
    a = rng.uniform(0, 1, 400)
    b = a + rng.normal(0.05, 0.2, 400)
    difference, low, high = paired_bootstrap(a, b, n_resamples=20_000)
    gains = b - a
    half = 1.96 * gains.std(ddof=1) / np.sqrt(len(gains))
    assert difference == pytest.approx(gains.mean())
    assert low == pytest.approx(gains.mean() - half, abs=0.15 * half)
    assert high == pytest.approx(gains.mean() + half, abs=0.15 * half)
    # Pairing matters: the same errors shifted by a constant give a zero-width interval.
    assert paired_bootstrap(a, a + 0.01) == pytest.approx((0.01, 0.01, 0.01))
    # And the order says which is better: A better than B means a positive difference.
    assert paired_bootstrap(b, a)[0] == pytest.approx(-difference)
    with pytest.raises(ValueError, match="paired"):
        paired_bootstrap(a, b[:-1])
    with pytest.raises(ValueError, match="level"):
        paired_bootstrap(a, b, level=95)


def test_a_cluster_bootstrap_does_not_count_a_repeated_run_twice(rng):
    # Every run twice (two seeds that agree exactly): as groups, the interval is the one of the
    # runs counted once; counted as independent runs it would be narrower, by about sqrt(2).
    a = rng.uniform(0, 1, 200)
    b = a + rng.normal(0.05, 0.2, 200)
    once = paired_bootstrap(a, b)
    twice = np.repeat(a, 2), np.repeat(b, 2)
    grouped = paired_bootstrap(*twice, groups=np.repeat(np.arange(200), 2))
    assert grouped == pytest.approx(once)
    _, low, high = paired_bootstrap(*twice)
    assert (high - low) == pytest.approx((once[2] - once[1]) / np.sqrt(2), rel=0.1)

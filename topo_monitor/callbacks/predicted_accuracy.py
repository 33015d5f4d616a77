"""PredictedTestAccuracy: log a test-set-free prediction of test accuracy every monitored epoch."""

from __future__ import annotations

import math
import os
from typing import Any

import torch

from topo_monitor._lightning import CALLBACK_BASES, pl, rank_zero_info, rank_zero_warn
from topo_monitor.analysis.generalization import (
    CalibrationSet,
    GeneralizationPredictor,
    features_from_record,
)
from topo_monitor.callbacks.monitor import TopologyMonitor
from topo_monitor.probing.metrics import is_topology_feature, topology_features
from topo_monitor.reporting.keys import scalar_key
from topo_monitor.reporting.loggers import log_metrics

__all__ = ["PredictedTestAccuracy"]

PREDICTED = scalar_key("predicted_test_acc")


class PredictedTestAccuracy(*CALLBACK_BASES):
    """Predict this run's test accuracy from its training data, calibrated on earlier runs.

    With a calibration file of finished runs (see :class:`~topo_monitor.CalibrationSet`), a
    :class:`~topo_monitor.GeneralizationPredictor` is fitted at the start of ``fit``, choosing
    among the topological features the :class:`TopologyMonitor` records and the baselines. After
    every epoch the monitor measures, the features of that epoch give
    ``topology/predicted_test_acc`` (clipped to [0, 1]), ``topology/predicted_test_acc_std`` and
    ``topology/predicted_test_acc_extrapolating`` (1.0 when a feature lies outside the range of
    the calibration runs, where the linear fit extrapolates; else 0.0), logged with
    ``step = epoch`` and put in ``trainer.callback_metrics``. No test data is touched.

    A block the monitor does not record is an error at fit start where that is certain; an epoch
    without a prediction (a block or a feature missing from the record, the training loss not
    logged) and the first extrapolating epoch each give one warning per ``fit``, not one per
    epoch. The training run itself is never stopped.

    Parameters
    ----------
    calibration : str, path or CalibrationSet
        Read (a path) and fitted in ``setup``, so a file written after this callback was built,
        or updated between two ``fit`` calls, is the one used.
    loss_key : str, default "train_loss"
        The ``callback_metrics`` key of the training loss (a baseline feature), if logged.
    block : int or str, default -2
        The block whose topology is used (-2: the last hidden one).
    monitor_name : str, optional
        Which TopologyMonitor it reads when the trainer has several (their ``display_name``);
        needed then, an error at fit start otherwise.

    Attributes
    ----------
    predictor : GeneralizationPredictor or None
        Fitted in ``setup``.
    history : list of dict
        ``epoch`` and the three logged values of every prediction; kept in checkpoints.
    """

    def __init__(
        self,
        calibration: str | os.PathLike | CalibrationSet,
        loss_key: str = "train_loss",
        block: int | str = -2,
        monitor_name: str | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(calibration, (str, os.PathLike, CalibrationSet)):
            raise ValueError(
                "calibration must be a path to a calibration file or a CalibrationSet, "
                f"got {type(calibration).__name__}"
            )
        if not isinstance(block, (int, str)) or isinstance(block, bool):
            raise ValueError(f"block must be a block index or name, got {block!r}")
        self.calibration = calibration
        self.loss_key = loss_key
        self.block = block
        self.monitor_name = monitor_name
        self.predictor: GeneralizationPredictor | None = None
        self.history: list[dict[str, Any]] = []
        self._topology: TopologyMonitor | None = None
        self._warned: set[str] = set()

    @property
    def state_key(self) -> str:
        return self._generate_state_key(block=self.block, loss_key=self.loss_key)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._topology = TopologyMonitor.select(
            trainer,
            "PredictedTestAccuracy",
            "it predicts from that monitor's records",
            self.monitor_name,
        )
        self._warned = set()
        self._topology.require_block(
            pl_module, self.block, f"PredictedTestAccuracy(block={self.block!r})"
        )
        calibration = self.calibration
        if not isinstance(calibration, CalibrationSet):
            calibration = CalibrationSet.load(calibration)
        recorded = topology_features(self._topology.config)
        try:
            self.predictor = GeneralizationPredictor(topology=recorded).fit(calibration)
        except ValueError as err:
            raise ValueError(
                f"PredictedTestAccuracy cannot fit its predictor: {err} (of the topological "
                f"features, the TopologyMonitor records {recorded})"
            ) from err
        unrecorded = {
            f for r in calibration.runs for f in r.features if is_topology_feature(f)
        } - set(recorded)
        note = (
            f" ({sorted(unrecorded)}, in the calibration runs, are not candidates: the "
            "TopologyMonitor does not record them)"
            if unrecorded
            else ""
        )
        rank_zero_info(f"PredictedTestAccuracy uses {self.predictor!r}{note}")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._topology.by_steps:
            self._predict_now(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any, **kwargs: Any
    ) -> None:
        if self._topology is not None and self._topology.by_steps:
            self._predict_now(trainer, pl_module)

    def _predict_now(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch, moment = trainer.current_epoch, self._topology.moment(trainer)
        if not self._topology.fresh(trainer, pl_module):
            return
        prediction = (math.nan, math.nan, math.nan)
        if trainer.is_global_zero:
            prediction = self._predict(trainer, epoch)
        prediction = trainer.strategy.broadcast(prediction, src=0)
        if not math.isfinite(prediction[0]):
            return
        values = {
            PREDICTED: prediction[0],
            scalar_key("predicted_test_acc_std"): prediction[1],
            scalar_key("predicted_test_acc_extrapolating"): prediction[2],
        }
        for key, value in values.items():
            trainer.callback_metrics[key] = torch.tensor(value)
        if trainer.is_global_zero:
            self.history.append({"epoch": epoch, "step": trainer.global_step, **values})
            log_metrics(trainer.loggers, values, step=moment)

    def _predict(self, trainer: pl.Trainer, epoch: int) -> tuple[float, float, float]:
        """The prediction of this epoch, its σ and 1.0 if it extrapolates (else 0.0); NaNs if
        there is none, with one warning per cause and ``fit``."""
        loss = trainer.callback_metrics.get(self.loss_key)
        try:
            if loss is None and "train_loss" in self.predictor.chosen:
                raise ValueError(
                    f"the predictor uses the training loss, and no metric {self.loss_key!r} "
                    f"is logged: log it in training_step (self.log({self.loss_key!r}, loss)) "
                    "or pass loss_key=<the name it is logged under>"
                )
            features = features_from_record(
                self._topology.history[-1], None if loss is None else float(loss), self.block
            )
            accuracy, std = self.predictor.predict(features)
        except ValueError as err:
            self._warn_once(
                str(err),
                f"PredictedTestAccuracy: no prediction from epoch {epoch} "
                f"(nor at later epochs, while this lasts): {err}",
            )
            return math.nan, math.nan, math.nan
        outside = self.predictor.outside_range(features)
        if outside:
            ranges = "; ".join(
                f"{f} = {features[f]:.6g}, outside [{low:.6g}, {high:.6g}]"
                for f in outside
                for low, high in [self.predictor.feature_range_[f]]
            )
            self._warn_once(
                "extrapolating",
                f"PredictedTestAccuracy, epoch {epoch}: {ranges}, the range of the calibration "
                f"runs: the prediction extrapolates and is clipped to [0, 1], and "
                f"{PREDICTED}_extrapolating is 1 at such epochs. Calibrate on runs like this "
                "one (the same kind of model and data, the same monitor settings).",
            )
        return accuracy, std, float(bool(outside))

    def _warn_once(self, cause: str, message: str) -> None:
        if cause not in self._warned:
            self._warned.add(cause)
            rank_zero_warn(message)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))

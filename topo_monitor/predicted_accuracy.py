"""PredictedTestAccuracy: log a test-set-free prediction of test accuracy every monitored epoch."""

from __future__ import annotations

import math
import os
from typing import Any

import torch

from topo_monitor._lightning import CALLBACK_BASES, pl, rank_zero_info
from topo_monitor.generalization import (
    CalibrationSet,
    GeneralizationPredictor,
    features_from_record,
)
from topo_monitor.monitor import TopologyMonitor

__all__ = ["PredictedTestAccuracy"]


class PredictedTestAccuracy(*CALLBACK_BASES):
    """Predict this run's test accuracy from its training data, calibrated on earlier runs.

    With a calibration file of finished runs (see :class:`~topo_monitor.generalization.
    CalibrationSet`), a :class:`~topo_monitor.generalization.GeneralizationPredictor` is fitted at
    the start of ``fit``; after every epoch the :class:`TopologyMonitor` computes, the features of
    that epoch give ``topology/predicted_test_acc`` and ``topology/predicted_test_acc_std``, logged
    with ``step = epoch`` and put in ``trainer.callback_metrics``. No test data is touched.

    Parameters
    ----------
    calibration : str, path or CalibrationSet
    loss_key : str, default "train_loss"
        The ``callback_metrics`` key of the training loss (a baseline feature), if logged.
    block : int or str, default -2
        The block whose topology is used (-2: the last hidden one).
    """

    def __init__(
        self,
        calibration: str | os.PathLike | CalibrationSet,
        loss_key: str = "train_loss",
        block: int | str = -2,
    ) -> None:
        super().__init__()
        self.calibration = (
            calibration
            if isinstance(calibration, CalibrationSet)
            else CalibrationSet.load(calibration)
        )
        self.loss_key = loss_key
        self.block = block
        self.predictor = GeneralizationPredictor().fit(self.calibration)
        self._topology: TopologyMonitor | None = None
        self.history: list[dict[str, Any]] = []

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._topology = next(
            (c for c in trainer.callbacks if isinstance(c, TopologyMonitor)), None
        )
        if self._topology is None:
            raise ValueError("PredictedTestAccuracy needs a TopologyMonitor among the callbacks")
        rank_zero_info(f"PredictedTestAccuracy uses {self.predictor!r}")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._topology.update(trainer, pl_module):
            return
        prediction = (math.nan, math.nan)
        record = self._topology.history[-1] if self._topology.history else None
        if trainer.is_global_zero and record is not None and record.epoch == trainer.current_epoch:
            loss = trainer.callback_metrics.get(self.loss_key)
            features = features_from_record(
                record, None if loss is None else float(loss), self.block
            )
            try:
                prediction = self.predictor.predict(features)
            except ValueError as err:
                rank_zero_info(f"PredictedTestAccuracy, epoch {record.epoch}: {err}")
        prediction = trainer.strategy.broadcast(prediction, src=0)
        if not math.isfinite(prediction[0]):
            return
        values = {
            "topology/predicted_test_acc": prediction[0],
            "topology/predicted_test_acc_std": prediction[1],
        }
        for key, value in values.items():
            trainer.callback_metrics[key] = torch.tensor(value)
        if trainer.is_global_zero:
            self.history.append({"epoch": trainer.current_epoch, **values})
            for logger in trainer.loggers:
                logger.log_metrics(values, step=trainer.current_epoch)

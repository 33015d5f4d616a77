"""PredictedTestAccuracy: log a test-set-free prediction of test accuracy every monitored epoch."""

from __future__ import annotations

import math
import os
from typing import Any

import torch

from topo_monitor._lightning import CALLBACK_BASES, pl, rank_zero_info
from topo_monitor.analysis.generalization import (
    CalibrationSet,
    GeneralizationPredictor,
    features_from_record,
)
from topo_monitor.callbacks.monitor import TopologyMonitor
from topo_monitor.reporting.loggers import log_metrics

__all__ = ["PredictedTestAccuracy"]


class PredictedTestAccuracy(*CALLBACK_BASES):
    """Predict this run's test accuracy from its training data, calibrated on earlier runs.

    With a calibration file of finished runs (see :class:`~topo_monitor.CalibrationSet`), a
    :class:`~topo_monitor.GeneralizationPredictor` is fitted at the start of ``fit``; after every
    epoch the :class:`TopologyMonitor` computes, the features of that epoch give
    ``topology/predicted_test_acc`` and ``topology/predicted_test_acc_std``, logged with
    ``step = epoch`` and put in ``trainer.callback_metrics``. No test data is touched.

    Parameters
    ----------
    calibration : str, path or CalibrationSet
        Read (a path) and fitted in ``setup``, so a file written after this callback was built,
        or updated between two ``fit`` calls, is the one used.
    loss_key : str, default "train_loss"
        The ``callback_metrics`` key of the training loss (a baseline feature), if logged.
    block : int or str, default -2
        The block whose topology is used (-2: the last hidden one).

    Attributes
    ----------
    predictor : GeneralizationPredictor or None
        Fitted in ``setup``.
    history : list of dict
        ``epoch`` and the two logged values of every prediction; kept in checkpoints.
    """

    def __init__(
        self,
        calibration: str | os.PathLike | CalibrationSet,
        loss_key: str = "train_loss",
        block: int | str = -2,
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
        self.predictor: GeneralizationPredictor | None = None
        self.history: list[dict[str, Any]] = []
        self._topology: TopologyMonitor | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(block=self.block, loss_key=self.loss_key)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._topology = TopologyMonitor.among(
            trainer, "PredictedTestAccuracy", "it predicts from that monitor's records"
        )[0]
        calibration = self.calibration
        if not isinstance(calibration, CalibrationSet):
            calibration = CalibrationSet.load(calibration)
        self.predictor = GeneralizationPredictor().fit(calibration)
        rank_zero_info(f"PredictedTestAccuracy uses {self.predictor!r}")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if not self._topology.update(trainer, pl_module) or self._topology.measured_epoch != epoch:
            return
        prediction = (math.nan, math.nan)
        if trainer.is_global_zero:
            loss = trainer.callback_metrics.get(self.loss_key)
            try:
                features = features_from_record(
                    self._topology.history[-1], None if loss is None else float(loss), self.block
                )
                prediction = self.predictor.predict(features)
            except (ValueError, IndexError) as err:
                rank_zero_info(f"PredictedTestAccuracy, epoch {epoch}: no prediction: {err}")
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
            self.history.append({"epoch": epoch, **values})
            log_metrics(trainer.loggers, values, step=epoch)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))

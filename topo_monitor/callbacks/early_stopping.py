"""TopologicalEarlyStopping: stop when a topology metric stops improving, or rebounds."""

from __future__ import annotations

from typing import Any

import torch

from topo_monitor._lightning import CALLBACK_BASES, pl, rank_zero_info
from topo_monitor.analysis.stopping import PlateauRule
from topo_monitor.callbacks.monitor import TopologyMonitor

__all__ = ["TopologicalEarlyStopping"]


class TopologicalEarlyStopping(*CALLBACK_BASES):
    """Early stopping on a metric a :class:`TopologyMonitor` computes, with plateau and rebound
    rules (:class:`~topo_monitor.analysis.stopping.PlateauRule`).

    During training the topological complexity of the last representations falls as classes
    separate (Magai & Ayzenberg 2022; Ballester et al. 2023); training stops when it stops
    falling for ``patience`` monitored epochs (plateau), or when it rises again by more than
    ``rebound`` above its best (rebound). Needs a :class:`TopologyMonitor` among the callbacks,
    and checks only the epochs that monitor computes (``every_n_epochs``), whatever the order of
    the callbacks. Works with the ``pytorch_lightning`` and the ``lightning.pytorch`` Trainer.

    Parameters
    ----------
    monitor : str, default "topology/E0_1/last_hidden"
        A metric the TopologyMonitor logs: ``topology/<metric>/<block>``, with block ``last``
        (the model output), ``last_hidden`` (the block before it) or a block name.
    min_delta : float, default 0.0
        Smallest change that counts as an improvement.
    min_delta_mode : {"abs", "rel"}, default "abs"
        ``rel``: ``min_delta`` is a fraction of the best value so far.
    patience : int, default 3
        Monitored epochs without improvement before stopping.
    rebound : float or None, default 0.25
        Stop when the metric is worse than its best by more than this fraction of the best
        (``None``: never).
    mode : {"min", "max"}, default "min"
    verbose : bool, default True
        Log why training stopped.
    strict : bool, default True
        Fail when the monitored metric is not logged on a monitored epoch (else skip the check).
    check_finite : bool, default True
        Stop when the metric becomes NaN or infinite.

    Attributes
    ----------
    best_score, best_epoch, wait_count
        The rule's state. Weights are not restored: pair this with
        ``ModelCheckpoint(monitor=<same metric>)`` to keep the best model.
    stopped_epoch : int
        The epoch training stopped at (0 if it did not).
    stopping_reason_message : str or None
        Why it stopped (also logged).
    """

    def __init__(
        self,
        monitor: str = "topology/E0_1/last_hidden",
        min_delta: float = 0.0,
        min_delta_mode: str = "abs",
        patience: int = 3,
        rebound: float | None = 0.25,
        mode: str = "min",
        verbose: bool = True,
        strict: bool = True,
        check_finite: bool = True,
    ) -> None:
        super().__init__()
        if (
            not isinstance(monitor, str)
            or monitor.count("/") < 2
            or not monitor.startswith("topology/")
        ):
            raise ValueError(
                f"monitor must be a TopologyMonitor metric 'topology/<metric>/<block>', "
                f"e.g. 'topology/E0_1/last_hidden', got {monitor!r}"
            )
        self.rule = PlateauRule(
            patience=patience,
            min_delta=min_delta,
            min_delta_mode=min_delta_mode,
            rebound=rebound,
            mode=mode,
            check_finite=check_finite,
        )
        self.monitor = monitor
        self.mode = mode
        self.verbose = verbose
        self.strict = strict
        self.stopped_epoch = 0
        self.stopping_reason_message: str | None = None
        self._topology: TopologyMonitor | None = None

    @property
    def best_score(self) -> torch.Tensor:
        return torch.tensor(self.rule.best_score)

    @property
    def best_epoch(self) -> int | None:
        return self.rule.best_epoch

    @property
    def wait_count(self) -> int:
        return self.rule.wait_count

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, mode=self.mode)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        monitors = TopologyMonitor.among(
            trainer, "TopologicalEarlyStopping", "it stops on the metrics that monitor computes"
        )
        metric = self.monitor.split("/")[1]
        self._topology = next((m for m in monitors if metric in m.metric_names), None)
        if self._topology is None:
            available = sorted({name for m in monitors for name in m.metric_names})
            raise ValueError(
                f"TopologicalEarlyStopping monitors {self.monitor!r}, but no TopologyMonitor "
                f"computes {metric!r}; available metrics: {available}"
            )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if self._topology is None or not self._topology.update(trainer, pl_module):
            return  # not a monitored epoch: nothing new to judge
        if self._topology.measured_epoch != epoch:
            return  # monitoring failed this epoch (it warned): no new value to judge
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            if not self.strict:
                return
            raise ValueError(
                f"TopologicalEarlyStopping monitors {self.monitor!r}, which is not logged; the "
                f"blocks are {self._topology.block_names} (or use 'last' / 'last_hidden')"
            )
        reason = self.rule.update(float(value), epoch, self.monitor)
        should_stop = trainer.strategy.reduce_boolean_decision(reason is not None, all=False)
        trainer.should_stop = trainer.should_stop or should_stop
        if should_stop:
            self.stopped_epoch = epoch
            self.stopping_reason_message = reason
            if self.verbose:
                rank_zero_info(
                    f"TopologicalEarlyStopping stopped at epoch {epoch} (best epoch "
                    f"{self.best_epoch}): {reason}"
                )

    def state_dict(self) -> dict[str, Any]:
        return {**self.rule.state_dict(), "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rule.load_state_dict(state_dict)
        self.stopped_epoch = state_dict.get("stopped_epoch", 0)

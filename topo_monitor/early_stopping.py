"""TopologicalEarlyStopping: stop when the topology of the final representation stops falling."""

from __future__ import annotations

import importlib
import math
from typing import Any

import torch

from topo_monitor._lightning import pl, rank_zero_info
from topo_monitor.monitor import TopologyMonitor

__all__ = ["TopologicalEarlyStopping"]

_EarlyStopping = pl.callbacks.EarlyStopping
# Lightning >= 2.5 records why it stopped; older releases have no such enum.
EarlyStoppingReason = getattr(
    importlib.import_module(pl.__name__ + ".callbacks.early_stopping"), "EarlyStoppingReason", None
)


class TopologicalEarlyStopping(_EarlyStopping):
    """Lightning's ``EarlyStopping`` on a topology metric, with plateau and rebound rules.

    During training the topological complexity of the last representations falls as classes
    separate (Magai & Ayzenberg 2022; Ballester et al. 2023); training stops when it stops
    falling for ``patience`` monitored epochs (plateau), or when it rises again by more than
    ``rebound`` above its best (rebound). Needs a :class:`TopologyMonitor` among the callbacks,
    and checks only the epochs that monitor computes (``every_n_epochs``), whatever the order of
    the callbacks.

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
    verbose, strict, check_finite : as ``EarlyStopping``.

    Attributes
    ----------
    best_epoch : int or None
        The epoch of the best value. Weights are not restored: pair this with
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
        if (
            not isinstance(monitor, str)
            or monitor.count("/") < 2
            or not monitor.startswith("topology/")
        ):
            raise ValueError(
                f"monitor must be a TopologyMonitor metric 'topology/<metric>/<block>', "
                f"e.g. 'topology/E0_1/last_hidden', got {monitor!r}"
            )
        if min_delta_mode not in ("abs", "rel"):
            raise ValueError(f'min_delta_mode must be "abs" or "rel", got {min_delta_mode!r}')
        if not (isinstance(min_delta, (int, float)) and min_delta >= 0):
            raise ValueError(f"min_delta must be a non-negative number, got {min_delta!r}")
        if not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be a positive int, got {patience!r}")
        if rebound is not None and not (isinstance(rebound, (int, float)) and rebound > 0):
            raise ValueError(f"rebound must be a positive number or None, got {rebound!r}")
        super().__init__(
            monitor=monitor,
            min_delta=min_delta,
            patience=patience,
            mode=mode,
            verbose=verbose,
            strict=strict,
            check_finite=check_finite,
            check_on_train_epoch_end=True,
        )
        self.relative = min_delta_mode == "rel"
        self.min_delta_given = float(min_delta)
        self.rebound = rebound
        self.best_epoch: int | None = None
        self._topology: TopologyMonitor | None = None
        self._epoch = 0

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, mode=self.mode)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        monitors = [c for c in trainer.callbacks if isinstance(c, TopologyMonitor)]
        if not monitors:
            raise ValueError(
                "TopologicalEarlyStopping needs a TopologyMonitor in Trainer(callbacks=[...]): "
                "it stops on the metrics that monitor computes"
            )
        metric = self.monitor.split("/")[1]
        self._topology = next((m for m in monitors if metric in m.metric_names), None)
        if self._topology is None:
            available = sorted({name for m in monitors for name in m.metric_names})
            raise ValueError(
                f"TopologicalEarlyStopping monitors {self.monitor!r}, but no TopologyMonitor "
                f"computes {metric!r}; available metrics: {available}"
            )

    def _run_early_stopping_check(self, trainer: pl.Trainer) -> None:
        if self._topology is None or not self._topology.update(trainer, trainer.lightning_module):
            return  # not a monitored epoch: nothing new to judge
        if self.monitor not in trainer.callback_metrics and self._topology.history:
            blocks = self._topology.history[-1].blocks
            raise ValueError(
                f"TopologicalEarlyStopping monitors {self.monitor!r}, which is not logged; the "
                f"blocks are {blocks} (or use 'last' / 'last_hidden')"
            )
        self._epoch = trainer.current_epoch
        super()._run_early_stopping_check(trainer)
        if trainer.should_stop and self.stopped_epoch == trainer.current_epoch:
            rank_zero_info(
                f"TopologicalEarlyStopping stopped at epoch {self.stopped_epoch} (best epoch "
                f"{self.best_epoch}): {self.stopping_reason_message}"
            )

    def _evaluate_stopping_criteria(self, current: torch.Tensor) -> tuple[bool, str | None]:
        best = float(self.best_score)
        sign = 1.0 if self.mode == "min" else -1.0
        if self.relative and math.isfinite(best):
            self.min_delta = -sign * self.min_delta_given * abs(best)
        if (
            self.rebound is not None
            and math.isfinite(best)
            and bool(torch.isfinite(current))
            and sign * (float(current) - best) > self.rebound * abs(best)
        ):
            if EarlyStoppingReason is not None:
                self.stopping_reason = EarlyStoppingReason.DIVERGENCE_THRESHOLD
            return True, (
                f"Rebound: {self.monitor} = {float(current):.4g} is more than "
                f"{self.rebound:.0%} worse than its best {best:.4g} (epoch {self.best_epoch})."
            )
        should_stop, reason = super()._evaluate_stopping_criteria(current)
        if self.wait_count == 0 and not should_stop:
            self.best_epoch = self._epoch
        return should_stop, reason

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.best_epoch = state_dict.get("best_epoch")

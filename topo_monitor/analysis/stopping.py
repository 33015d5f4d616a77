"""Stopping rules on a series of checks: pure, so a callback and a study replaying recorded runs
make exactly the same decisions."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from topo_monitor._validation import check, is_positive_int

__all__ = ["PlateauRule"]


class PlateauRule:
    """Stop when a metric has not improved for ``patience`` checks, or rebounds past its best.

    Improvement is Lightning's ``EarlyStopping``'s: better than the best so far by more than
    ``min_delta`` (``mode="min"``: ``value < best - min_delta``). With ``rebound=None`` and an
    absolute ``min_delta`` the rule stops at the same check as ``EarlyStopping`` does.

    Parameters
    ----------
    patience : int
        Checks without improvement before stopping.
    min_delta : float
        Smallest change that counts as an improvement.
    min_delta_mode : {"abs", "rel"}
        ``"rel"``: ``min_delta`` is a fraction of the best value so far.
    rebound : float or None
        Stop at once when the value is worse than its best by more than this fraction of the
        best (``None``: never).
    mode : {"min", "max"}
    check_finite : bool
        Stop when the value is NaN or infinite.

    Attributes
    ----------
    best_score : float
    best_epoch : int or None
        The epoch of the best value.
    wait_count : int
        Checks since the last improvement.
    """

    def __init__(
        self,
        patience: int = 3,
        min_delta: float = 0.0,
        min_delta_mode: str = "abs",
        rebound: float | None = None,
        mode: str = "min",
        check_finite: bool = True,
    ) -> None:
        check(is_positive_int(patience), f"patience must be a positive int, got {patience!r}")
        check(
            isinstance(min_delta, (int, float)) and min_delta >= 0,
            f"min_delta must be a non-negative number, got {min_delta!r}",
        )
        check(
            min_delta_mode in ("abs", "rel"),
            f'min_delta_mode must be "abs" or "rel", got {min_delta_mode!r}',
        )
        check(
            rebound is None or (isinstance(rebound, (int, float)) and rebound > 0),
            f"rebound must be a positive number or None, got {rebound!r}",
        )
        check(mode in ("min", "max"), f'mode must be "min" or "max", got {mode!r}')
        self.patience = patience
        self.min_delta = float(min_delta)
        self.min_delta_mode = min_delta_mode
        self.rebound = rebound
        self.mode = mode
        self.check_finite = check_finite
        self.reset()

    def reset(self) -> None:
        self.best_score = math.inf if self.mode == "min" else -math.inf
        self.best_epoch: int | None = None
        self.wait_count = 0

    def update(self, value: float, epoch: int, name: str = "metric") -> str | None:
        """Take the value of one check; return why to stop now, or None to go on."""
        sign = 1.0 if self.mode == "min" else -1.0
        best = self.best_score
        if not math.isfinite(value):
            if self.check_finite:
                return f"{name} = {value} is not finite; its best was {best:.4g}."
            return None
        if (
            self.rebound is not None
            and math.isfinite(best)
            and sign * (value - best) > self.rebound * abs(best)
        ):
            return (
                f"Rebound: {name} = {value:.4g} is more than {self.rebound:.0%} worse than "
                f"its best {best:.4g} (epoch {self.best_epoch})."
            )
        delta = self.min_delta
        if self.min_delta_mode == "rel" and math.isfinite(best):
            delta *= abs(best)
        if sign * (best - value) > delta:
            self.best_score, self.best_epoch, self.wait_count = value, epoch, 0
            return None
        self.wait_count += 1
        if self.wait_count >= self.patience:
            return (
                f"{name} did not improve in the last {self.wait_count} checks; "
                f"best {best:.4g} at epoch {self.best_epoch}."
            )
        return None

    def replay(self, values: Iterable[float], epochs: Iterable[int] | None = None) -> int | None:
        """The epoch at which the rule stops on a recorded series (None: never), from scratch.

        ``epochs`` defaults to 0, 1, 2, ...: the checks' epochs when not every epoch is checked.
        """
        self.reset()
        values = list(values)
        for epoch, value in zip(epochs or range(len(values)), values, strict=True):
            if self.update(float(value), epoch) is not None:
                return epoch
        return None

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "wait_count": self.wait_count,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_score = float(state["best_score"])
        self.best_epoch = state.get("best_epoch")
        self.wait_count = int(state["wait_count"])

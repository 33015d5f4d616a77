"""Stopping rules on a series of checks: pure, so a callback and a study replaying recorded runs
make exactly the same decisions.

Every rule takes one value per check (:meth:`StoppingRule.update`) and says when to stop; each
keeps Lightning's ``EarlyStopping`` notion of patience (checks in a row that satisfy the rule) and
its state round-trips through ``state_dict`` for resuming.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from topo_monitor._validation import check, is_positive_int

__all__ = [
    "AllRule",
    "AnyRule",
    "ConvergenceRule",
    "PlateauRule",
    "StoppingRule",
    "TrendRule",
    "VelocityRule",
]


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class StoppingRule(ABC):
    """A stopping decision from one value per check.

    Attributes
    ----------
    patience : int
    wait_count : int
        Checks in a row that satisfied the rule (that did not improve, for :class:`PlateauRule`).
    """

    patience: int
    wait_count: int

    @abstractmethod
    def reset(self) -> None:
        """Forget every check (a new run)."""

    @abstractmethod
    def update(self, value: float, epoch: int, name: str = "metric") -> str | None:
        """Take the value of one check; return why to stop now, or None to go on."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]: ...

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def replay(self, values: Iterable[float], epochs: Iterable[int] | None = None) -> int | None:
        """The epoch at which the rule stops on a recorded series (None: never), from scratch.

        ``epochs`` defaults to 0, 1, 2, ...: the checks' epochs when not every epoch is checked.
        """
        self.reset()
        values = list(values)
        for epoch, value in zip(epochs or range(len(values)), values, strict=True):
            if self.update(value if isinstance(value, Sequence) else float(value), epoch):
                return epoch
        return None


def _patience(patience: int, ratio: float, best_check: int) -> int:
    """Checks without improvement to wait: ``patience``, or ``ratio`` times the checks it took to
    reach the best value if that is more (a time-scale-free patience: a run that improved until
    its 40th check waits 20 more at ratio 0.5, one that settled at its 4th waits ``patience``)."""
    return max(patience, math.ceil(ratio * best_check))


def _check_patience_ratio(patience_ratio: object) -> None:
    check(
        _is_number(patience_ratio) and patience_ratio >= 0,
        f"patience_ratio must be a non-negative number, got {patience_ratio!r}",
    )


class PlateauRule(StoppingRule):
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
    patience_ratio : float
        Wait at least this many times the checks it took to reach the best value (0: a fixed
        ``patience``, as Lightning's ``EarlyStopping``).

    Attributes
    ----------
    best_score : float
    best_epoch : int or None
        The epoch of the best value.
    best_check : int
        How many checks it took to reach it (1 for the first).
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
        patience_ratio: float = 0.0,
    ) -> None:
        check(is_positive_int(patience), f"patience must be a positive int, got {patience!r}")
        _check_patience_ratio(patience_ratio)
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
        self.patience_ratio = float(patience_ratio)
        self.reset()

    def reset(self) -> None:
        self.best_score = math.inf if self.mode == "min" else -math.inf
        self.best_epoch: int | None = None
        self.best_check = self.checks = 0
        self.wait_count = 0

    def update(self, value: float, epoch: int, name: str = "metric") -> str | None:
        """Take the value of one check; return why to stop now, or None to go on."""
        sign = 1.0 if self.mode == "min" else -1.0
        best = self.best_score
        self.checks += 1
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
            self.best_check = self.checks
            return None
        self.wait_count += 1
        if self.wait_count >= _patience(self.patience, self.patience_ratio, self.best_check):
            return (
                f"{name} did not improve in the last {self.wait_count} checks; "
                f"best {best:.4g} at epoch {self.best_epoch}."
            )
        return None

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "best_check": self.best_check,
            "checks": self.checks,
            "wait_count": self.wait_count,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_score = float(state["best_score"])
        self.best_epoch = state.get("best_epoch")
        self.best_check = int(state.get("best_check", 0))
        self.checks = int(state.get("checks", 0))
        self.wait_count = int(state["wait_count"])


class ConvergenceRule(StoppingRule):
    """Stop when a metric has stopped moving: its relative change between consecutive checks
    stayed at most ``tol`` for ``patience`` checks in a row, in either direction.

    For a scale-free metric of a representation (``E0_1_scaled``, ``PHdim``) this says the
    representation's shape has converged, whether its complexity was falling or rising; unlike
    :class:`PlateauRule` it needs no direction of improvement.

    Parameters
    ----------
    tol : float
        Largest relative change ``|v_t - v_{t-1}| / |v_{t-1}|`` that counts as still.
    patience : int
        Still checks in a row before stopping.

    Attributes
    ----------
    previous : float
        The last finite value (NaN before the first).
    wait_count : int
        Still checks in a row so far. A NaN value (not measured) neither counts nor breaks it.
    """

    def __init__(self, tol: float = 0.02, patience: int = 3) -> None:
        check(_is_number(tol) and tol > 0, f"tol must be a positive number, got {tol!r}")
        check(is_positive_int(patience), f"patience must be a positive int, got {patience!r}")
        self.tol = float(tol)
        self.patience = patience
        self.reset()

    def reset(self) -> None:
        self.previous = math.nan
        self.wait_count = 0

    def update(self, value: float, epoch: int, name: str = "metric") -> str | None:
        if not math.isfinite(value):
            return None
        previous, self.previous = self.previous, value
        if not math.isfinite(previous):
            return None
        change = abs(value - previous) / abs(previous) if previous != 0 else math.inf
        self.wait_count = self.wait_count + 1 if change <= self.tol else 0
        if self.wait_count >= self.patience:
            return (
                f"{name} changed by at most {self.tol:.1%} per check for the last "
                f"{self.wait_count} checks (now {value:.4g})."
            )
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"previous": self.previous, "wait_count": self.wait_count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.previous = float(state["previous"])
        self.wait_count = int(state["wait_count"])


class VelocityRule(StoppingRule):
    """Stop when a speed has fallen below a fraction of its running peak for ``patience`` checks.

    Meant for ``H0_velocity``, the sliced-Wasserstein distance a block's scale-free H0 diagrams
    moved since the previous check: large while the representation reorganizes, small once its
    topology has settled.

    Parameters
    ----------
    fraction : float in (0, 1)
        Slow means at most ``fraction`` times the largest speed seen so far.
    patience : int
        Slow checks in a row before stopping.

    Attributes
    ----------
    peak : float
        The largest value so far (0 before the first).
    wait_count : int
        Slow checks in a row so far. A NaN value (no previous measurement) is skipped.
    """

    def __init__(self, fraction: float = 0.2, patience: int = 3) -> None:
        check(
            _is_number(fraction) and 0 < fraction < 1,
            f"fraction must be a number in (0, 1), got {fraction!r}",
        )
        check(is_positive_int(patience), f"patience must be a positive int, got {patience!r}")
        self.fraction = float(fraction)
        self.patience = patience
        self.reset()

    def reset(self) -> None:
        self.peak = 0.0
        self.wait_count = 0

    def update(self, value: float, epoch: int, name: str = "metric") -> str | None:
        if not math.isfinite(value):
            return None
        self.peak = max(self.peak, value)
        self.wait_count = self.wait_count + 1 if value <= self.fraction * self.peak else 0
        if self.wait_count >= self.patience:
            return (
                f"{name} stayed at most {self.fraction:.0%} of its peak {self.peak:.4g} for the "
                f"last {self.wait_count} checks (now {value:.4g})."
            )
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"peak": self.peak, "wait_count": self.wait_count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.peak = float(state["peak"])
        self.wait_count = int(state["wait_count"])


class TrendRule(StoppingRule):
    """Stop when a metric stops moving the way it moved while the network learned.

    The direction is not assumed: it is the sign of the change over the first ``warmup`` checks,
    when the training loss falls fastest (the scale-free H0 complexity of a block falls there on
    some data and rises on other). From then on the rule is :class:`PlateauRule` in that
    direction: a value further along it than the best so far (by more than ``min_delta`` of the
    best) is an improvement, and ``patience`` checks without one stop, whether the metric settled
    or turned back.

    Parameters
    ----------
    warmup : int
        Checks whose change sets the direction (the rule cannot stop before the next one).
    patience : int
        Checks without improvement before stopping.
    patience_ratio : float
        Wait at least this many times the checks it took to reach the best value.
    min_delta : float
        Smallest relative change (a fraction of the best value) that counts as an improvement.

    Attributes
    ----------
    direction : int
        +1 (rising), -1 (falling), 0 while it is not yet known.
    best_score : float
    best_epoch : int or None
    best_check : int
        How many checks it took to reach the best value.
    wait_count : int
        Checks since the last improvement. A NaN value (not measured) is skipped.
    """

    def __init__(
        self,
        warmup: int = 3,
        patience: int = 5,
        patience_ratio: float = 0.0,
        min_delta: float = 0.0,
    ) -> None:
        check(is_positive_int(warmup), f"warmup must be a positive int, got {warmup!r}")
        check(is_positive_int(patience), f"patience must be a positive int, got {patience!r}")
        _check_patience_ratio(patience_ratio)
        check(
            _is_number(min_delta) and min_delta >= 0,
            f"min_delta must be a non-negative number, got {min_delta!r}",
        )
        self.warmup, self.patience = warmup, patience
        self.patience_ratio, self.min_delta = float(patience_ratio), float(min_delta)
        self.reset()

    def reset(self) -> None:
        self.direction = 0
        self.first = math.nan
        self.best_score = math.nan
        self.best_epoch: int | None = None
        self.best_check = self.checks = self.wait_count = 0

    def update(self, value: float, epoch: int, name: str = "metric") -> str | None:
        if not math.isfinite(value):
            return None
        self.checks += 1
        if self.checks == 1:
            self.first = value
        improved = self.best_epoch is None or (
            self.direction * (value - self.best_score) > self.min_delta * abs(self.best_score)
            if self.direction
            else self._warming_up(value)
        )
        if improved:
            self.best_score, self.best_epoch, self.best_check = value, epoch, self.checks
            self.wait_count = 0
            return None
        self.wait_count += 1
        if self.direction and self.wait_count >= _patience(
            self.patience, self.patience_ratio, self.best_check
        ):
            way = "rising" if self.direction > 0 else "falling"
            return (
                f"{name} ({way} while the network learned) has not moved further in the last "
                f"{self.wait_count} checks; furthest {self.best_score:.4g} at epoch "
                f"{self.best_epoch}."
            )
        return None

    def _warming_up(self, value: float) -> bool:
        """During the warm-up: whether ``value`` is the furthest yet from the first, in the
        direction of the change so far (the direction, once the warm-up ends)."""
        way = 1 if value > self.first else -1
        if self.checks > self.warmup:
            self.direction = way
        return way * (value - self.best_score) > 0 or self.best_score == self.first

    def state_dict(self) -> dict[str, Any]:
        return {
            "direction": self.direction,
            "first": self.first,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "best_check": self.best_check,
            "checks": self.checks,
            "wait_count": self.wait_count,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.direction, self.first = int(state["direction"]), float(state["first"])
        self.best_score, self.best_epoch = float(state["best_score"]), state["best_epoch"]
        self.best_check, self.checks = int(state["best_check"]), int(state["checks"])
        self.wait_count = int(state["wait_count"])


class _Composite(StoppingRule):
    """Several rules, each reading its own series: one value per rule at every check.

    A subclass says how the rules' answers combine (:meth:`decide`) and which of their
    ``wait_count`` it reports (``waits``: ``min`` or ``max``)."""

    waits: Callable[[Iterable[int]], int]

    def __init__(self, *rules: StoppingRule) -> None:
        check(
            len(rules) >= 2 and all(isinstance(r, StoppingRule) for r in rules),
            f"{type(self).__name__} takes two or more StoppingRule objects, got {rules!r}",
        )
        self.rules = rules

    @property
    def patience(self) -> int:  # type: ignore[override]
        return max(rule.patience for rule in self.rules)

    @property
    def wait_count(self) -> int:  # type: ignore[override]
        return type(self).waits(rule.wait_count for rule in self.rules)

    def reset(self) -> None:
        for rule in self.rules:
            rule.reset()

    def update(  # type: ignore[override]
        self, value: Sequence[float], epoch: int, name: str | Sequence[str] = "metric"
    ) -> str | None:
        """Take one value per rule, in order; ``name`` may be a sequence of their names."""
        check(
            len(value) == len(self.rules),
            f"{type(self).__name__} of {len(self.rules)} rules takes one value per rule, "
            f"got {len(value)}",
        )
        names = [f"metric {i}" for i in range(len(self.rules))] if isinstance(name, str) else name
        return self.decide(
            [
                rule.update(float(v), epoch, n)
                for rule, v, n in zip(self.rules, value, names, strict=True)
            ]
        )

    @abstractmethod
    def decide(self, reasons: list[str | None]) -> str | None:
        """Why to stop, from each rule's answer at this check (None: go on)."""

    def state_dict(self) -> dict[str, Any]:
        return {"rules": [rule.state_dict() for rule in self.rules]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for rule, own in zip(self.rules, state["rules"], strict=True):
            rule.load_state_dict(own)


class AllRule(_Composite):
    """Stop when every rule says stop at the same check: e.g. the training loss has plateaued
    *and* the topology has settled (the topology vetoes a loss-plateau stop while it still moves).

    ``update`` takes one value per rule, in order; ``name`` may be a sequence of their names.

    Attributes
    ----------
    wait_count : int
        The smallest ``wait_count`` of the rules.
    """

    waits = min

    def decide(self, reasons: list[str | None]) -> str | None:
        return " and ".join(reasons) if all(reasons) else None  # type: ignore[arg-type]


class AnyRule(_Composite):
    """Stop when any rule says stop: e.g. a loss plateau, or the topology turning.

    ``update`` takes one value per rule, in order; ``name`` may be a sequence of their names.

    Attributes
    ----------
    wait_count : int
        The largest ``wait_count`` of the rules.
    """

    waits = max

    def decide(self, reasons: list[str | None]) -> str | None:
        return next((reason for reason in reasons if reason), None)

"""Predicting test accuracy from training data alone (Magai & Ayzenberg 2022, §4.2).

Across a family of trained models, topological features of the last hidden representation of
*training* data (E^0_1 per class, averaged) correlate with test accuracy in the paper (Pearson
r = -0.90 over 50 ResNets). Whether they do for *your* models is an empirical question, so a
:class:`CalibrationSet` of finished runs also carries cheap test-free baselines (final training
loss, output margin, parameter norm), and :class:`GeneralizationPredictor` reports what topology
adds over them, with leave-one-out errors computed honestly (feature choice inside every fold).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from topo_monitor.probing.record import TopologyRecord

__all__ = [
    "BASELINE_FEATURES",
    "TOPOLOGY_FEATURES",
    "CalibrationSet",
    "GeneralizationPredictor",
    "RunRecord",
    "features_from_record",
    "kendall_tau",
    "pearson_r",
]

TOPOLOGY_FEATURES = ("E0_1", "E0_1_scaled", "PHdim", "E1_1", "E1_1_scaled")
BASELINE_FEATURES = ("train_loss", "margin", "param_norm")


@dataclass
class RunRecord:
    """One finished run: its test accuracy and test-free features of its final epoch."""

    run_id: str
    test_accuracy: float
    features: dict[str, float]
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class CalibrationSet:
    """Finished runs, stored as one JSON object per line so that users can append to it."""

    runs: list[RunRecord] = field(default_factory=list)

    def add(
        self,
        run_id: str,
        test_accuracy: float,
        features: Mapping[str, float],
        **metadata: Any,
    ) -> RunRecord:
        if not 0 <= test_accuracy <= 1:
            raise ValueError(f"test_accuracy must be in [0, 1], got {test_accuracy!r}")
        if any(r.run_id == run_id for r in self.runs):
            raise ValueError(f"run {run_id!r} is already in the calibration set")
        record = RunRecord(
            run_id, float(test_accuracy), {k: float(v) for k, v in features.items()}, dict(metadata)
        )
        self.runs.append(record)
        return record

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w") as f:
            for run in self.runs:
                f.write(json.dumps(_nan_to_null(asdict(run))) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> CalibrationSet:
        runs = []
        with open(path) as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                    features = {
                        k: math.nan if v is None else float(v) for k, v in data["features"].items()
                    }
                    runs.append(
                        RunRecord(
                            str(data["run_id"]),
                            float(data["test_accuracy"]),
                            features,
                            data.get("metadata", {}),
                        )
                    )
                except (KeyError, TypeError, ValueError) as err:
                    raise ValueError(
                        f"{path}, line {number}: not a calibration record ({err})"
                    ) from err
        return cls(runs)

    def __len__(self) -> int:
        return len(self.runs)

    def matrix(self, features: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Features (n, k) and test accuracies (n,) of the runs that have all the features."""
        rows = [
            r
            for r in self.runs
            if all(math.isfinite(r.features.get(f, math.nan)) for f in features)
        ]
        X = np.array([[r.features[f] for f in features] for r in rows], dtype=float)
        return X.reshape(len(rows), len(features)), np.array([r.test_accuracy for r in rows])


def _nan_to_null(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_null(v) for k, v in obj.items()}
    return obj


def features_from_record(
    record: TopologyRecord, train_loss: float | None = None, block: int | str = -2
) -> dict[str, float]:
    """Test-free features of one monitored epoch, for a calibration record or a prediction.

    The topological features of ``block`` (default: the last hidden one, index -2; the model
    output is -1), the baselines the monitor measured (``margin``, ``param_norm``) and, if given,
    the final training loss. Typical use after ``trainer.fit``::

        calibration.add("run-7", test_accuracy, features_from_record(
            monitor.history[-1], trainer.callback_metrics["train_loss"].item()))
    """
    index = record.blocks.index(block) if isinstance(block, str) else block
    features = {
        name: float(values[index])
        for name, values in record.values.items()
        if name in TOPOLOGY_FEATURES
    }
    features.update(record.extras)
    if train_loss is not None:
        features["train_loss"] = float(train_loss)
    return features


def pearson_r(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x, float) - np.mean(x), np.asarray(y, float) - np.mean(y)
    denominator = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / denominator if denominator > 0 else math.nan


def kendall_tau(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's τ-b (ties accounted for), O(n²)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    dx = np.sign(x[:, None] - x[None, :])
    dy = np.sign(y[:, None] - y[None, :])
    upper = np.triu_indices(len(x), k=1)
    concordance = float(np.sum((dx * dy)[upper]))
    pairs_x, pairs_y = float(np.sum(dx[upper] != 0)), float(np.sum(dy[upper] != 0))
    return concordance / math.sqrt(pairs_x * pairs_y) if pairs_x and pairs_y else math.nan


def _ols(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares coefficients (intercept first) and (XᵀX)⁻¹ for the prediction variance."""
    A = np.column_stack([np.ones(len(X)), X])
    gram_inv = np.linalg.pinv(A.T @ A)
    return gram_inv @ A.T @ y, gram_inv


def _loo_errors(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Absolute leave-one-out errors of a linear fit (exact, via the hat matrix)."""
    A = np.column_stack([np.ones(len(X)), X])
    hat = A @ np.linalg.pinv(A.T @ A) @ A.T
    residuals = y - hat @ y
    leverage = np.clip(np.diag(hat), None, 1 - 1e-12)
    return np.abs(residuals / (1 - leverage))


class GeneralizationPredictor:
    """Linear prediction of test accuracy from test-free features of training data.

    ``fit`` tries every single feature and every (topology, baseline) pair of the candidates,
    and keeps the set with the smallest leave-one-out mean absolute error; ``chosen`` and
    ``group`` ("topology", "baselines" or "both") say which. ``score`` reports the errors
    honestly: the choice of features is redone inside every leave-one-out fold.

    Parameters
    ----------
    topology : sequence of str
        Candidate topological features (names in the calibration records).
    baselines : sequence of str
        Candidate test-free baselines.
    """

    def __repr__(self) -> str:
        chosen = "unfitted" if self.chosen is None else f"{self.group}: {', '.join(self.chosen)}"
        return f"GeneralizationPredictor({chosen})"

    def __init__(
        self,
        topology: Sequence[str] = TOPOLOGY_FEATURES,
        baselines: Sequence[str] = BASELINE_FEATURES,
    ) -> None:
        self.topology = tuple(topology)
        self.baselines = tuple(baselines)
        self.chosen: tuple[str, ...] | None = None
        self.group: str | None = None

    def _candidates(
        self, calibration: CalibrationSet, groups: Iterable[str]
    ) -> list[tuple[str, tuple[str, ...]]]:
        present = {f for r in calibration.runs for f, v in r.features.items() if math.isfinite(v)}
        topo = [f for f in self.topology if f in present]
        base = [f for f in self.baselines if f in present]
        out: list[tuple[str, tuple[str, ...]]] = []
        if "topology" in groups:
            out += [("topology", (f,)) for f in topo]
        if "baselines" in groups:
            out += [("baselines", (f,)) for f in base]
        if "both" in groups:
            out += [("both", (t, b)) for t in topo for b in base]
        return out

    @staticmethod
    def _best(
        calibration: CalibrationSet,
        candidates: list[tuple[str, tuple[str, ...]]],
        exclude: int | None = None,
    ) -> tuple[str, tuple[str, ...]]:
        best, best_error = None, math.inf
        for group, features in candidates:
            X, y = _without(calibration, features, exclude)
            if len(y) < len(features) + 3:
                continue
            error = float(np.mean(_loo_errors(X, y)))
            if error < best_error:
                best, best_error = (group, features), error
        if best is None:
            raise ValueError(
                "not enough calibration runs with these features: need at least 4 runs with "
                f"finite values of {[f for _, fs in candidates for f in fs]}"
            )
        return best

    def fit(self, calibration: CalibrationSet) -> GeneralizationPredictor:
        if len(calibration) < 4:
            raise ValueError(f"need at least 4 calibration runs, got {len(calibration)}")
        candidates = self._candidates(calibration, ("topology", "baselines", "both"))
        if not candidates:
            raise ValueError(
                f"the calibration runs have none of the features {self.topology + self.baselines}"
            )
        self.group, self.chosen = self._best(calibration, candidates)
        X, y = calibration.matrix(self.chosen)
        self.coef_, self._gram_inv = _ols(X, y)
        A = np.column_stack([np.ones(len(X)), X])
        dof = max(len(y) - A.shape[1], 1)
        self.sigma_ = math.sqrt(float(np.sum((y - A @ self.coef_) ** 2)) / dof)
        return self

    def predict(self, features: Mapping[str, float]) -> tuple[float, float]:
        """Predicted test accuracy and its standard error (a prediction interval's σ)."""
        if self.chosen is None:
            raise RuntimeError("call fit(calibration) first")
        missing = [f for f in self.chosen if not math.isfinite(features.get(f, math.nan))]
        if missing:
            raise ValueError(f"the prediction needs finite values of {missing}")
        a = np.array([1.0] + [features[f] for f in self.chosen])
        std = self.sigma_ * math.sqrt(1.0 + float(a @ self._gram_inv @ a))
        return float(a @ self.coef_), std

    def score(self, calibration: CalibrationSet) -> dict[str, Any]:
        """Correlations of every feature with test accuracy, and nested leave-one-out MAEs.

        Returns a dict with ``correlations`` (feature -> Pearson r, Kendall τ, n), and
        ``loo_mae`` for "topology" (one topological feature), "baselines" (one baseline),
        "both" (a topology + baseline pair), "chosen" (the rule ``fit`` follows, over all of
        these) and "mean" (predicting the calibration mean: the error to beat).
        """
        correlations = {}
        for feature in self.topology + self.baselines:
            X, y = calibration.matrix((feature,))
            if len(y) >= 3:
                correlations[feature] = {
                    "pearson_r": pearson_r(X[:, 0], y),
                    "kendall_tau": kendall_tau(X[:, 0], y),
                    "n": len(y),
                }
        y_all = np.array([r.test_accuracy for r in calibration.runs])
        n = len(y_all)
        mean_errors = [abs(y_all[i] - np.delete(y_all, i).mean()) for i in range(n)]
        loo = {"mean": float(np.mean(mean_errors))}
        for name, groups in (
            ("topology", ("topology",)),
            ("baselines", ("baselines",)),
            ("both", ("both",)),
            ("chosen", ("topology", "baselines", "both")),
        ):
            candidates = self._candidates(calibration, groups)
            loo[name] = self._nested_loo(calibration, candidates) if candidates else math.nan
        return {"correlations": correlations, "loo_mae": loo}

    def _nested_loo(
        self, calibration: CalibrationSet, candidates: list[tuple[str, tuple[str, ...]]]
    ) -> float:
        errors = []
        for i, run in enumerate(calibration.runs):
            try:
                _, features = self._best(calibration, candidates, exclude=i)
            except ValueError:
                return math.nan
            if not all(math.isfinite(run.features.get(f, math.nan)) for f in features):
                continue
            X, y = _without(calibration, features, i)
            coef, _ = _ols(X, y)
            prediction = coef[0] + sum(
                c * run.features[f] for c, f in zip(coef[1:], features, strict=True)
            )
            errors.append(abs(prediction - run.test_accuracy))
        return float(np.mean(errors)) if errors else math.nan


def _without(
    calibration: CalibrationSet, features: Sequence[str], exclude: int | None
) -> tuple[np.ndarray, np.ndarray]:
    runs = [r for i, r in enumerate(calibration.runs) if i != exclude]
    return CalibrationSet(runs).matrix(features)

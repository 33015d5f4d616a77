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

from topo_monitor._validation import as_names, as_real, check
from topo_monitor.analysis.statistics import kendall_tau, loo_errors, ols, pearson_r
from topo_monitor.probing.config import SummaryConfig
from topo_monitor.probing.metrics import METRICS, is_topology_feature, topology_features
from topo_monitor.probing.record import TopologyRecord, nan_to_none
from topo_monitor.tda.geometry import GEOMETRY

__all__ = [
    "BASELINE_FEATURES",
    "TOPOLOGY_FEATURES",
    "CalibrationSet",
    "GeneralizationPredictor",
    "RunRecord",
    "features_from_record",
]

TOPOLOGY_FEATURES = tuple(topology_features(SummaryConfig(metrics=METRICS, homology_dims=(0, 1))))
"""Every topological feature at α = 1: E⁰, E¹ (raw and scale-free), PHdim and the functional
graph's summaries (``record.network``). Another α gives other names
(:func:`~topo_monitor.probing.metrics.topology_features` of the monitor's configuration)."""
BASELINE_FEATURES = ("train_loss", "margin", "param_norm", *GEOMETRY)
"""The test-free baselines: final training loss, output margin, parameter norm, and (with the
``"geometry"`` metric group) the block's Davies–Bouldin index, NC1 and effective rank."""


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
        """Append a finished run.

        Parameters
        ----------
        run_id : str
            Unique in the set.
        test_accuracy : float
            A fraction in [0, 1] (not a percentage).
        features : mapping of str to float
            Test-free features of the run's final epoch, e.g. :func:`features_from_record`'s;
            NaN marks a feature that could not be measured.
        **metadata
            Anything JSON can store (width, seed, ...), kept with the run.

        Raises
        ------
        ValueError
            If ``run_id`` is not a new string, ``test_accuracy`` is not a number in [0, 1], or
            ``features`` is not a mapping of names to numbers.
        """
        return self._append(run_id, test_accuracy, features, metadata)

    def _append(
        self, run_id: object, test_accuracy: object, features: object, metadata: object
    ) -> RunRecord:
        """The checks of :meth:`add`, shared by :meth:`load`; then the run is appended."""
        check(
            isinstance(run_id, str) and run_id != "",
            f"run_id must be a non-empty str, got {run_id!r}",
        )
        check(
            all(r.run_id != run_id for r in self.runs),
            f"run {run_id!r} is already in the calibration set",
        )
        accuracy = as_real(test_accuracy, "test_accuracy")
        check(
            0 <= accuracy <= 1,
            f"test_accuracy must be in [0, 1] (a fraction, not a percentage), got {accuracy!r}",
        )
        check(
            isinstance(features, Mapping),
            "features must be a mapping of feature names to numbers, e.g. "
            f"features_from_record(monitor.history[-1], train_loss), got {features!r}",
        )
        check(
            all(isinstance(name, str) for name in features),
            f"feature names must be str, got {list(features)}",
        )
        check(isinstance(metadata, Mapping), f"metadata must be a mapping, got {metadata!r}")
        values = {name: as_real(value, f"feature {name!r}") for name, value in features.items()}
        record = RunRecord(run_id, accuracy, values, dict(metadata))
        self.runs.append(record)
        return record

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w") as f:
            for run in self.runs:
                f.write(json.dumps(nan_to_none(asdict(run))) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> CalibrationSet:
        """Read a file written by :meth:`save` (or by hand: one JSON object per line).

        Every run goes through the checks of :meth:`add`; a null feature is NaN.

        Raises
        ------
        ValueError
            Naming the file, the line and the run, if a line is not a calibration record or a
            run fails a check of :meth:`add` (an accuracy outside [0, 1], a repeated run id...).
        """
        calibration = cls()
        with open(path) as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                    run, accuracy, features = (
                        data["run_id"],
                        data["test_accuracy"],
                        data["features"],
                    )
                except (KeyError, TypeError, ValueError) as err:
                    raise ValueError(
                        f"{path}, line {number}: not a calibration record (a JSON object with "
                        f"run_id, test_accuracy and features): {type(err).__name__}: {err}"
                    ) from err
                if isinstance(features, Mapping):
                    features = {k: math.nan if v is None else v for k, v in features.items()}
                try:
                    calibration._append(run, accuracy, features, data.get("metadata", {}))
                except ValueError as err:
                    raise ValueError(f"{path}, line {number}, run {run!r}: {err}") from err
        return calibration

    def __len__(self) -> int:
        return len(self.runs)

    def matrix(self, features: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Features (n, k) and test accuracies (n,) of the runs that have all the features."""
        features = as_names(features, "features")
        rows = [
            r
            for r in self.runs
            if all(math.isfinite(r.features.get(f, math.nan)) for f in features)
        ]
        X = np.array([[r.features[f] for f in features] for r in rows], dtype=float)
        return X.reshape(len(rows), len(features)), np.array([r.test_accuracy for r in rows])


def features_from_record(
    record: TopologyRecord, train_loss: float | None = None, block: int | str = -2
) -> dict[str, float]:
    """Test-free features of one monitored epoch, for a calibration record or a prediction.

    The topological features of ``block`` (default: the last hidden one, index -2; the model
    output is -1) and its geometry baselines when recorded, the functional graph's summaries,
    the baselines the monitor measured (``margin``, ``param_norm``) and, if given, the final
    training loss. Typical use
    after ``trainer.fit``::

        calibration.add("run-7", test_accuracy, features_from_record(
            monitor.history[-1], trainer.callback_metrics["train_loss"].item()))

    Raises
    ------
    ValueError
        If the record has no block ``block``.
    """
    blocks = record.blocks
    found = block in blocks if isinstance(block, str) else -len(blocks) <= block < len(blocks)
    if not found:
        hint = (
            ": it holds the model output only, no hidden block (choose the blocks to monitor "
            "with TopologyMonitor(blocks=[...]))"
            if len(blocks) == 1
            else ""
        )
        raise ValueError(f"no block {block!r} in the record, whose blocks are {blocks}{hint}")
    index = blocks.index(block) if isinstance(block, str) else block
    features = {
        name: float(values[index])
        for name, values in record.values.items()
        if is_topology_feature(name) or name in GEOMETRY
    }
    features.update(
        {name: float(v) for name, v in record.network.items() if is_topology_feature(name)}
    )
    features.update(record.extras)
    if train_loss is not None:
        features["train_loss"] = float(train_loss)
    return features


class GeneralizationPredictor:
    """Linear prediction of test accuracy from test-free features of training data.

    ``fit`` tries every single feature and every (topology, baseline) pair of the candidates,
    and keeps the set with the smallest leave-one-out mean absolute error; ``chosen`` and
    ``group`` ("topology", "baselines" or "both") say which. ``score`` reports the errors
    honestly: the choice of features is redone inside every leave-one-out fold.

    A linear fit is only trustworthy inside the range it was fitted on: ``predict`` clips its
    value to [0, 1], and ``outside_range`` says which features of a run lie outside the
    calibration runs' range (a calibration made on other models, data or probe settings).

    Parameters
    ----------
    topology : sequence of str
        Candidate topological features (names in the calibration records), e.g. ``("E0_1",)``.
    baselines : sequence of str
        Candidate test-free baselines.

    Attributes
    ----------
    chosen : tuple of str or None
        The features of the fitted model (None before ``fit``).
    group : str or None
        "topology", "baselines" or "both".
    coef_ : numpy.ndarray
        Intercept, then one coefficient per chosen feature.
    sigma_ : float
        Residual standard deviation of the fit.
    feature_range_ : dict of str to (float, float)
        Per chosen feature, its (min, max) over the calibration runs of the fit.
    """

    def __repr__(self) -> str:
        chosen = "unfitted" if self.chosen is None else f"{self.group}: {', '.join(self.chosen)}"
        return f"GeneralizationPredictor({chosen})"

    def __init__(
        self,
        topology: Sequence[str] = TOPOLOGY_FEATURES,
        baselines: Sequence[str] = BASELINE_FEATURES,
    ) -> None:
        self.topology = as_names(topology, "topology")
        self.baselines = as_names(baselines, "baselines")
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
            errors = _loo_errors_all_runs(_runs_without(calibration, exclude), features)
            if errors is None:
                continue
            error = float(np.mean(errors))
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
        self.coef_, self._gram_inv = ols(X, y)
        A = np.column_stack([np.ones(len(X)), X])
        dof = max(len(y) - A.shape[1], 1)
        self.sigma_ = math.sqrt(float(np.sum((y - A @ self.coef_) ** 2)) / dof)
        self.feature_range_ = {
            f: (float(X[:, j].min()), float(X[:, j].max())) for j, f in enumerate(self.chosen)
        }
        return self

    def predict(self, features: Mapping[str, float]) -> tuple[float, float]:
        """Predicted test accuracy, clipped to [0, 1], and its standard error.

        The standard error is the σ of a prediction interval of the linear fit. Check
        :meth:`outside_range` first: outside the calibration range the fit extrapolates (and a
        value clipped to 0 or 1 says little).
        """
        a = np.array([1.0] + [features[f] for f in self._chosen_in(features)])
        std = self.sigma_ * math.sqrt(1.0 + float(a @ self._gram_inv @ a))
        return min(max(float(a @ self.coef_), 0.0), 1.0), std

    def outside_range(self, features: Mapping[str, float]) -> list[str]:
        """The chosen features whose value lies outside ``feature_range_``."""
        return [
            f
            for f in self._chosen_in(features)
            if not self.feature_range_[f][0] <= features[f] <= self.feature_range_[f][1]
        ]

    def _chosen_in(self, features: Mapping[str, float]) -> tuple[str, ...]:
        """The chosen features, all of which ``features`` must hold as finite numbers."""
        if self.chosen is None:
            raise RuntimeError("call fit(calibration) first")
        missing = [f for f in self.chosen if not math.isfinite(features.get(f, math.nan))]
        if missing:
            raise ValueError(f"the prediction needs finite values of {missing}")
        return self.chosen

    def score(self, calibration: CalibrationSet) -> dict[str, Any]:
        """Correlations of every feature with test accuracy, and nested leave-one-out MAEs.

        Every error is computed on the same runs, all of them: a run whose features a candidate
        lacks (NaN) is predicted by the mean accuracy of the other runs, as ``predict`` cannot
        use it either, and counted. So a feature measured on fewer (perhaps easier) runs is not
        flattered; ``coverage`` says on what fraction of the runs each feature was finite.

        Returns
        -------
        dict
            ``correlations`` (feature -> Pearson r, Kendall τ, n: on the runs where it is
            finite), ``coverage`` (feature -> fraction of runs), and ``loo_mae`` for
            "topology" (one topological feature), "baselines" (one baseline), "both" (a
            topology + baseline pair), "chosen" (the rule ``fit`` follows, over all of these)
            and "mean" (predicting the calibration mean: the error to beat); ``loo_errors``,
            the same groups' absolute error on every run (numpy arrays in calibration order, None
            where ``loo_mae`` is NaN), for paired comparisons (:func:`paired_bootstrap`).
        """
        correlations, coverage = {}, {}
        n = len(calibration)
        for feature in self.topology + self.baselines:
            X, y = calibration.matrix((feature,))
            coverage[feature] = len(y) / n if n else math.nan
            if len(y) >= 3:
                correlations[feature] = {
                    "pearson_r": pearson_r(X[:, 0], y),
                    "kendall_tau": kendall_tau(X[:, 0], y),
                    "n": len(y),
                }
        errors = {"mean": _loo_errors_all_runs(calibration.runs, ())}
        for name, groups in (
            ("topology", ("topology",)),
            ("baselines", ("baselines",)),
            ("both", ("both",)),
            ("chosen", ("topology", "baselines", "both")),
        ):
            candidates = self._candidates(calibration, groups)
            errors[name] = self._nested_loo(calibration, candidates) if candidates else None
        loo = {k: float(np.mean(e)) if e is not None else math.nan for k, e in errors.items()}
        return {
            "correlations": correlations,
            "coverage": coverage,
            "loo_mae": loo,
            "loo_errors": errors,
        }

    def _nested_loo(
        self, calibration: CalibrationSet, candidates: list[tuple[str, tuple[str, ...]]]
    ) -> np.ndarray | None:
        """The absolute error on every run, the feature choice redone without it (None when
        some fold has no usable candidate)."""
        errors = []
        for i, run in enumerate(calibration.runs):
            try:
                _, features = self._best(calibration, candidates, exclude=i)
            except ValueError:
                return None
            others = _runs_without(calibration, i)
            if all(math.isfinite(run.features.get(f, math.nan)) for f in features):
                X, y = CalibrationSet(others).matrix(features)
                coef, _ = ols(X, y)
                prediction = coef[0] + sum(
                    c * run.features[f] for c, f in zip(coef[1:], features, strict=True)
                )
            else:  # the predictor cannot use this run: the mean is what the user would get
                prediction = float(np.mean([r.test_accuracy for r in others]))
            errors.append(abs(prediction - run.test_accuracy))
        return np.array(errors)


def _runs_without(calibration: CalibrationSet, exclude: int | None) -> list[RunRecord]:
    return [r for i, r in enumerate(calibration.runs) if i != exclude]


def _loo_errors_all_runs(runs: list[RunRecord], features: Sequence[str]) -> np.ndarray | None:
    """Absolute leave-one-out errors over *all* ``runs``: the linear fit on ``features`` for the
    runs that have them finite, the mean of the other runs' accuracies for the rest (and for
    every run when ``features`` is empty). None when fewer than ``len(features) + 3`` runs have
    the features: too few to fit."""
    y = np.array([r.test_accuracy for r in runs])
    has = np.array(
        [
            bool(features) and all(math.isfinite(r.features.get(f, math.nan)) for f in features)
            for r in runs
        ],
        dtype=bool,
    ).reshape(len(runs))
    if features and has.sum() < len(features) + 3:
        return None
    errors = np.abs(y - (y.sum() - y) / max(len(y) - 1, 1))
    if has.any():
        X = np.array([[runs[i].features[f] for f in features] for i in np.flatnonzero(has)])
        errors[has] = loo_errors(X, y[has])
    return errors

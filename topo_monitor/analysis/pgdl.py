"""How well a measure ranks the generalization gaps of a hyperparameter grid (Jiang et al. 2020).

Correlating a measure with the gap over a family of models rewards measures that merely track a
hyperparameter which also moves the gap (width, say). The field's two answers are computed here:

* :func:`conditional_mutual_information` — the score of the NeurIPS 2020 competition "Predicting
  Generalization in Deep Learning" (PGDL): over ordered pairs of models, the mutual information
  between the sign of the measure's difference and the sign of the gap's difference, conditioned
  on the two models' values of two hyperparameters, normalised by the entropy of the gap's sign,
  and the *minimum* over pairs of hyperparameters. 0: the measure tells nothing once two
  hyperparameters are known; 1: it orders every pair as the gap does. The competition reported it
  ×100 (winning entries: ~23 and ~14).
* :func:`granulated_kendall` — Ψ of "Fantastic generalization measures" (Jiang et al. 2019): for
  each hyperparameter, Kendall's τ between measure and gap among models that differ in that
  hyperparameter only, averaged over the settings of the others; then the mean over
  hyperparameters.

Both need the models' hyperparameters; a grid with models left out (runs that did not converge)
is allowed: empty cells are skipped.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from topo_monitor._validation import check
from topo_monitor.analysis.statistics import kendall_tau

__all__ = ["conditional_mutual_information", "granulated_kendall"]


def _inputs(
    measure: Sequence[float], gap: Sequence[float], hyperparameters: Sequence[Mapping[str, Any]]
) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Measure and gap as arrays, the hyperparameter names, and their level indices (n, H)."""
    measure, gap = np.asarray(measure, dtype=float), np.asarray(gap, dtype=float)
    n = len(hyperparameters)
    check(
        measure.shape == (n,) and gap.shape == (n,),
        f"measure, gap and hyperparameters must describe the same {n} models, got shapes "
        f"{measure.shape} and {gap.shape}",
    )
    check(n >= 2, f"need at least 2 models, got {n}")
    check(
        bool(np.isfinite(measure).all() and np.isfinite(gap).all()),
        "measure and gap must be finite (leave out the models a measure could not score)",
    )
    names = sorted(hyperparameters[0])
    check(
        all(sorted(h) == names for h in hyperparameters),
        f"every model must have the same hyperparameters, {names} for the first",
    )
    levels = np.array(
        [
            np.unique([repr(h[name]) for h in hyperparameters], return_inverse=True)[1]
            for name in names
        ]
    ).T.reshape(n, len(names))
    return measure, gap, names, levels


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def conditional_mutual_information(
    measure: Sequence[float], gap: Sequence[float], hyperparameters: Sequence[Mapping[str, Any]]
) -> float:
    """PGDL's score: min over pairs of hyperparameters of I(V_measure; V_gap | U) / H(V_gap | U).

    As the competition's scoring program: every ordered pair of models (i, j), itself included,
    gives V_gap = [gap_i > gap_j] and V_measure = [measure_i > measure_j]; U is the pair's values
    of the two conditioning hyperparameters (4 values: each model's level of each). The mutual
    information and the entropy of V_gap are computed in each non-empty cell of U and averaged
    with equal weights over the cells, and their ratio is taken.

    Parameters
    ----------
    measure : array-like, shape (n,)
        The measure of each model; larger should mean a larger gap (the score does not see the
        sign: it is symmetric in ``measure`` and ``-measure`` up to ties).
    gap : array-like, shape (n,)
        Each model's generalization gap (training accuracy − test accuracy).
    hyperparameters : sequence of n mappings
        Each model's hyperparameters (name → value), the same names for every model; at least
        two names.

    Returns
    -------
    float
        In [0, 1]; multiply by 100 for the competition's scale. NaN if V_gap is constant in
        every cell of some pair (no gap differences to explain).
    """
    measure, gap, names, levels = _inputs(measure, gap, hyperparameters)
    check(len(names) >= 2, f"need at least two hyperparameters to condition on, got {names}")
    gap_sign = (gap[:, None] > gap[None, :]).ravel()
    measure_sign = (measure[:, None] > measure[None, :]).ravel()
    joint = 2 * gap_sign.astype(int) + measure_sign.astype(int)  # 4 outcomes per pair
    scores = []
    for a, b in itertools.combinations(range(len(names)), 2):
        la, lb = levels[:, a], levels[:, b]
        # The cell of each ordered pair: (level_a of i, level_a of j, level_b of i, level_b of j).
        cell = np.stack(
            np.broadcast_arrays(la[:, None], la[None, :], lb[:, None], lb[None, :])
        ).reshape(4, -1)
        _, cell_index = np.unique(cell, axis=1, return_inverse=True)
        counts = np.zeros((cell_index.max() + 1, 4))
        np.add.at(counts, (cell_index.ravel(), joint), 1)
        mi, entropy = [], []
        for table in counts.reshape(-1, 2, 2):
            h_gap = _entropy(table.sum(axis=1))
            h_measure = _entropy(table.sum(axis=0))
            mi.append(h_gap + h_measure - _entropy(table.ravel()))
            entropy.append(h_gap)
        mean_entropy = float(np.mean(entropy))
        scores.append(float(np.mean(mi)) / mean_entropy if mean_entropy > 0 else math.nan)
    return min(scores) if not any(math.isnan(s) for s in scores) else math.nan


def granulated_kendall(
    measure: Sequence[float], gap: Sequence[float], hyperparameters: Sequence[Mapping[str, Any]]
) -> tuple[float, dict[str, float]]:
    """Granulated Kendall Ψ: the mean over hyperparameters of ψ_h, the mean Kendall τ between
    measure and gap over the groups of models that share every other hyperparameter.

    Parameters
    ----------
    measure, gap, hyperparameters
        As :func:`conditional_mutual_information`. Models repeated with other seeds belong to
        the same group: put the seed among ``hyperparameters`` to keep them apart.

    Returns
    -------
    (float, dict of str to float)
        Ψ, and ψ_h per hyperparameter. A group whose measure or gap is constant has no τ and is
        skipped; ψ_h is NaN when every group of h is.
    """
    measure, gap, names, levels = _inputs(measure, gap, hyperparameters)
    per_name = {}
    for h, name in enumerate(names):
        others = np.delete(levels, h, axis=1)
        _, group = np.unique(others, axis=0, return_inverse=True)
        taus = [
            kendall_tau(measure[group.ravel() == g], gap[group.ravel() == g])
            for g in np.unique(group)
            if np.sum(group.ravel() == g) >= 2
        ]
        taus = [t for t in taus if math.isfinite(t)]
        per_name[name] = float(np.mean(taus)) if taus else math.nan
    finite = [v for v in per_name.values() if math.isfinite(v)]
    return (float(np.mean(finite)) if finite else math.nan), per_name

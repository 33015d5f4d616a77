"""The geometry baselines a topological measure must beat, against scikit-learn and closed forms,
and as the opt-in "geometry" metric group of ``measure``."""

import copy
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import davies_bouldin_score

from helpers import MLP, blobs
from topo_monitor import measure
from topo_monitor.analysis.generalization import BASELINE_FEATURES, features_from_record
from topo_monitor.probing.baselines import param_distance
from topo_monitor.probing.summary import SummaryConfig, metric_names
from topo_monitor.tda.geometry import (
    GEOMETRY,
    davies_bouldin,
    effective_rank,
    neural_collapse_nc1,
)


def test_davies_bouldin_equals_scikit_learn(rng):
    X = rng.normal(size=(300, 5))
    y = rng.integers(0, 4, size=300)
    X[y == 1] += 3.0
    expected = davies_bouldin_score(X, y)
    assert davies_bouldin(torch.tensor(X), torch.tensor(y)) == pytest.approx(expected, rel=1e-9)


def test_nc1_in_closed_form():
    # Two classes on a line at ±1, each with within-class variance s²: Σ_W = s², Σ_B = 1,
    # so tr(Σ_W Σ_B⁺) / K = s² / 2.
    s = 0.3
    X = torch.tensor([[-1 - s], [-1 + s], [1 - s], [1 + s]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1])
    assert neural_collapse_nc1(X, y) == pytest.approx(s**2 / 2, rel=1e-12)
    collapsed = torch.tensor([[-1.0], [-1.0], [1.0], [1.0]])
    assert neural_collapse_nc1(collapsed, y) == pytest.approx(0.0, abs=1e-15)
    assert math.isnan(neural_collapse_nc1(X, torch.zeros(4, dtype=torch.long)))


def test_effective_rank_in_closed_form():
    # ±e_i for i < k: k equal singular values, effective rank k; a line: 1.
    for k in (1, 3, 6):
        eye = torch.eye(8)[:k]
        assert effective_rank(torch.cat([eye, -eye])) == pytest.approx(k, rel=1e-9)
    line = torch.linspace(0, 1, 20)[:, None] * torch.tensor([[1.0, 2.0, -1.0]])
    assert effective_rank(line) == pytest.approx(1.0, rel=1e-9)
    assert math.isnan(effective_rank(torch.ones(5, 3)))


def test_param_distance():
    model = MLP()
    initial = {k: p.detach().clone() for k, p in model.named_parameters()}
    assert param_distance(model, initial) == 0.0
    moved = copy.deepcopy(model)
    with torch.no_grad():
        first = next(moved.parameters())
        first += 0.5
    assert param_distance(moved, initial) == pytest.approx(0.5 * math.sqrt(first.numel()))
    with pytest.raises(ValueError, match=r"no parameter 'net\.0\.weight'"):
        param_distance(model, {})


def test_geometry_group_in_a_record():
    torch.manual_seed(0)
    model = MLP().eval()
    data = blobs(n_per_class=30)
    record = measure(model, data.tensors, samples_per_class=30, metrics=("e0", "geometry"))
    for name in GEOMETRY:
        assert name in record.values and len(record.values[name]) == len(record.blocks)
    assert set(GEOMETRY) <= set(metric_names(SummaryConfig(metrics=("geometry",))))
    # The model output's cloud, recomputed directly.
    x, y = data.tensors
    with torch.no_grad():
        logits = model(x)
    np.testing.assert_allclose(record.values["davies_bouldin"][-1], davies_bouldin(logits, y))
    np.testing.assert_allclose(record.values["effective_rank"][-1], effective_rank(logits))
    assert "geometry" not in SummaryConfig().metrics  # opt-in


def test_geometry_baselines_reach_the_predictor():
    torch.manual_seed(0)
    record = measure(MLP().eval(), blobs(n_per_class=30).tensors, metrics=("e0", "geometry"))
    features = features_from_record(record)
    for name in GEOMETRY:
        assert name in BASELINE_FEATURES
        assert features[name] == record.values[name][-2]  # the last hidden block

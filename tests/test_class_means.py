"""A block's per-class metric is the mean over the classes where it is defined.

One class without a value (too few points, a collapsed cloud) must not turn the whole block's
value into NaN; ``record.class_counts`` says how many classes entered each mean.
"""

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from topo_monitor import TopologyRecord, measure
from topo_monitor.probing.summary import SummaryConfig, summarize
from topo_monitor.tda.dimension import MIN_POINTS


def _clouds(last_class: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Two blocks; classes 0 and 1 are Gaussian clouds, class 2 is ``last_class``."""
    g = torch.Generator().manual_seed(0)
    good = [torch.randn(60, 4, generator=g, dtype=torch.float64) + 3 * k for k in range(2)]
    X = torch.cat([*good, last_class.double()])
    labels = torch.cat(
        [torch.full((60,), 0), torch.full((60,), 1), torch.full((len(last_class),), 2)]
    )
    return {"block": X, "output": 2 * X}, labels


@pytest.mark.parametrize(
    ("last_class", "phdim_cause"),
    [
        (torch.ones(60, 4), "the MST length is zero"),  # a collapsed class
        (torch.randn(MIN_POINTS // 2, 4, generator=torch.Generator().manual_seed(1)), "too few"),
    ],
    ids=["collapsed", "too-few-points"],
)
def test_a_class_without_phdim_is_left_out_of_the_mean(last_class, phdim_cause):
    clouds, labels = _clouds(last_class)
    record = summarize(clouds, labels, SummaryConfig(metrics=("e0", "phdim")))
    phdim = np.asarray(record.per_class["PHdim"])
    assert np.isfinite(phdim[:, :2]).all() and np.isnan(phdim[:, 2]).all()
    assert record.class_counts["PHdim"] == [2, 2]
    np.testing.assert_allclose(record.values["PHdim"], phdim[:, :2].mean(axis=1))
    # E0 of the scaled clouds is defined for every class that is not collapsed; it does not
    # depend on random draws, so it equals the class mean of the two good classes measured alone.
    good = labels < 2
    alone = summarize(
        {name: X[good] for name, X in clouds.items()}, labels[good], SummaryConfig(metrics=("e0",))
    )
    collapsed = phdim_cause == "the MST length is zero"
    assert record.class_counts["E0_1_scaled"] == ([2, 2] if collapsed else [3, 3])
    if collapsed:
        np.testing.assert_allclose(record.values["E0_1_scaled"], alone.values["E0_1_scaled"])
        # E0 itself (no scale) is 0 for the collapsed class: a value, so it enters.
        assert record.class_counts["E0_1"] == [3, 3]
        np.testing.assert_allclose(record.values["E0_1"], np.asarray(alone.values["E0_1"]) * 2 / 3)
    phdim = [p for p in record.problems if p.metric == "PHdim"]
    assert [(p.block, p.label) for p in phdim] == [("block", 2), ("output", 2)]
    assert all(phdim_cause in p.detail for p in phdim)


def test_nan_only_when_no_class_has_a_value():
    clouds, labels = _clouds(torch.ones(60, 4))
    clouds = {name: torch.ones_like(X) for name, X in clouds.items()}  # every class collapsed
    record = summarize(clouds, labels, SummaryConfig(metrics=("e0", "phdim")))
    assert all(math.isnan(v) for v in record.values["PHdim"])
    assert record.class_counts["PHdim"] == [0, 0]
    assert record.class_counts["E0_1"] == [3, 3]  # every lifespan is 0: defined


def test_whole_cloud_counts_are_one_or_zero():
    clouds, labels = _clouds(torch.ones(60, 4))
    record = summarize(clouds, labels, SummaryConfig(metrics=("phdim",), per_class=False))
    assert record.class_counts["PHdim"] == [1, 1]
    assert all(math.isfinite(v) for v in record.values["PHdim"])


def test_class_counts_survive_the_history_file_and_old_files_load():
    clouds, labels = _clouds(torch.ones(60, 4))
    record = summarize(clouds, labels, SummaryConfig(metrics=("phdim",)))
    back = TopologyRecord.from_dict(record.to_dict())
    assert back.class_counts == record.class_counts
    old = record.to_dict()
    del old["class_counts"]
    assert TopologyRecord.from_dict(old).class_counts == {}


def test_measure_warns_once_per_cause_with_the_classes_left_out():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    clouds, labels = _clouds(torch.ones(60, 4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = measure(model, (clouds["block"].float(), labels), metrics=("e0", "phdim"))
    messages = [str(w.message) for w in caught if "topo_monitor" in str(w.message)]
    phdim = [m for m in messages if "PHdim" in m]
    assert len(phdim) == 1, messages
    assert "in 1 class(es) of 2 block(s)" in phdim[0] and "left out" in phdim[0]
    assert all(np.isfinite(record.values["PHdim"]))
    assert record.class_counts["PHdim"] == [2, 2]

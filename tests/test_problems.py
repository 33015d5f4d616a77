"""Typed problems: one warning per (metric, cause) whatever the number of classes and blocks,
every case on record, and history files written before problems were typed still load."""

import warnings

import pytest
import torch
from torch import nn

from topo_monitor import TopologyRecord, measure
from topo_monitor.probing.problems import Problem, warn_problems


def _caught(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = call()
    return result, [str(w.message) for w in caught if "topo_monitor" in str(w.message)]


def test_details_with_different_numbers_are_one_cause():
    problems = [
        Problem(
            f"block{b}", "PHdim", "slope_at_least_one", f"the fitted slope {1 + c / 1e3:.3f}", c
        )
        for b in range(3)
        for c in range(1000)
    ]
    _, messages = _caught(lambda: warn_problems(problems))
    assert len(messages) == 1
    assert "in 1000 class(es) of 3 block(s) ('block0', 'block1', 'block2')" in messages[0]
    assert messages[0].startswith("topo_monitor: PHdim: the fitted slope 1.000")


def test_a_thousand_class_probe_gives_one_warning_per_cause():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(1000).repeat_interleave(5)
    inputs = torch.randn(5000, 8, generator=g)
    inputs[labels < 10] = 1.0  # ten collapsed classes: a second cause
    model = nn.Sequential(
        nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)
    )
    record, messages = _caught(lambda: measure(model, (inputs, labels), epoch=3))
    assert len(messages) == 2, messages
    (phdim,) = [m for m in messages if "PHdim" in m]
    (collapsed,) = [m for m in messages if "collapsed" in m]
    assert "epoch 3, PHdim: too few points (5 < 20), in 1000 class(es) of 3 block(s)" in phdim
    assert "in 10 class(es) of 3 block(s)" in collapsed
    causes = {(p.metric, p.cause) for p in record.problems}
    assert causes == {("PHdim", "too_few_points"), (None, "collapsed")}
    assert len(record.problems) == 3 * 1000 + 3 * 10


def test_problems_round_trip_and_old_history_files_load():
    problem = Problem("layers.2", "PHdim", "too_few_points", "too few points (5 < 20)", 7)
    assert Problem.from_dict(problem.to_dict()) == problem
    assert str(problem) == "class 7: PHdim: too few points (5 < 20)"
    old = {
        "blocks": ["a", "output"],
        "depths": [0.5, 1.0],
        "values": {"PHdim": [None, 3.0]},
        "problems": [
            ["a", "class 7: PHdim: too few points (5 < 20)"],
            ["a", "activations hold NaN or Inf for 3 of 10 points"],
        ],
    }
    record = TopologyRecord.from_dict(old)
    assert record.problems[0] == Problem(
        "a", "PHdim", "too few points (5 < 20)", "too few points (5 < 20)", 7
    )
    assert record.problems[1].metric is None and record.problems[1].label is None
    assert [str(p) for p in record.problems] == [reason for _, reason in old["problems"]]


@pytest.mark.parametrize(
    ("metric", "covered"), [("PHdim", True), ("PHdim_r2", True), ("E0_1", False)]
)
def test_a_problem_covers_its_metric_and_its_companions(metric, covered):
    assert Problem("a", "PHdim", "too_few_points", "x").covers(metric) is covered
    assert Problem("a", None, "collapsed", "x").covers(metric)

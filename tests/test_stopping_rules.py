"""The direction-free and composite stopping rules on scripted series (pure: no Trainer)."""

import math

import pytest

from topo_monitor import AllRule, AnyRule, ConvergenceRule, PlateauRule, TrendRule


def test_trend_rule_learns_the_direction_from_the_warmup():
    # Falling while the network learns: stop `patience` checks after its lowest value.
    falling = [10.0, 9.0, 8.0, 7.0, 7.5, 7.2, 7.1, 7.3, 6.0]
    rule = TrendRule(warmup=3, patience=3)
    assert rule.replay(falling) == 6 and rule.direction == -1 and rule.best_epoch == 3
    # Rising (the scale-free H0 of a block on Fashion-MNIST or a CNN under SGD), then settled.
    rising = [10.0, 11.0, 12.0, 13.0, 14.0, 14.0, 14.0, 14.0, 20.0]
    rule = TrendRule(warmup=3, patience=3)
    assert rule.replay(rising) == 7 and rule.direction == 1 and rule.best_epoch == 4
    # A PlateauRule in "min" mode reads the same rising series as stalled from the start.
    assert PlateauRule(patience=3).replay(rising) == 3
    # Still rising with a dip inside the warm-up: never stops.
    assert TrendRule(warmup=3, patience=3).replay([10.0, 9.0, 11.0, 12.0, 13.0, 14.0]) is None


def test_trend_rule_turn_and_min_delta():
    # Rises, then turns down: stops as it would after a settling.
    turning = [1.0, 2.0, 3.0, 4.0, 3.5, 3.0, 2.5, 2.0]
    assert TrendRule(warmup=2, patience=2).replay(turning) == 5
    # Creeping up by 0.1 % per check counts as stalled with min_delta = 1 %.
    creeping = [1.0, 1.5, 2.0, 2.002, 2.004, 2.006, 2.008]
    assert TrendRule(warmup=2, patience=3, min_delta=0.0).replay(creeping) is None
    assert TrendRule(warmup=2, patience=3, min_delta=0.01).replay(creeping) == 5


def test_trend_rule_skips_nan_and_cannot_stop_inside_the_warmup():
    series = [5.0, math.nan, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    rule = TrendRule(warmup=5, patience=1)
    # The warm-up counts measured checks only: 5.0, 4.0, 4.0, 4.0, 4.0; the 6th sets the
    # direction (falling) and, having made no new low since the 2nd, stops.
    assert rule.replay(series) == 6 and rule.direction == -1


def test_patience_proportional_to_the_epoch_of_the_best_value():
    # The best value comes at the 20th check: ratio 0.5 waits 10 checks, not 3.
    series = [float(100 - i) for i in range(20)] + [81.0] * 15
    assert PlateauRule(patience=3).replay(series) == 22
    assert PlateauRule(patience=3, patience_ratio=0.5).replay(series) == 29
    assert TrendRule(warmup=3, patience=3, patience_ratio=0.5).replay(series) == 29
    # An early best keeps the fixed patience.
    early = [5.0, 4.0, 3.0] + [3.0] * 10
    assert PlateauRule(patience=3, patience_ratio=0.5).replay(early) == 5


def test_all_rule_stops_only_when_every_rule_says_so():
    loss = [1.0, 0.5, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]
    e0 = [10.0, 12.0, 14.0, 16.0, 18.0, 18.1, 18.1, 18.1, 18.1]
    both = AllRule(PlateauRule(patience=2), ConvergenceRule(tol=0.01, patience=2))
    # The loss plateaus at check 4; E0 is still (within 1 %) only at check 6.
    assert PlateauRule(patience=2).replay(loss) == 4
    assert ConvergenceRule(tol=0.01, patience=2).replay(e0) == 6
    assert both.replay(list(zip(loss, e0, strict=True))) == 6
    assert both.wait_count == 2 and both.patience == 2
    either = AnyRule(PlateauRule(patience=2), ConvergenceRule(tol=0.01, patience=2))
    assert either.replay(list(zip(loss, e0, strict=True))) == 4
    reason = both.update([0.3, 18.1], 9, ["train_loss", "E0"])
    assert "train_loss" in reason and "E0" in reason


def test_composite_state_round_trips_and_bad_input_is_refused():
    rule = AllRule(PlateauRule(patience=3), TrendRule(warmup=2, patience=3))
    for epoch, values in enumerate([(1.0, 5.0), (0.9, 6.0), (0.9, 7.0), (0.9, 7.0)]):
        rule.update(values, epoch)
    again = AllRule(PlateauRule(patience=3), TrendRule(warmup=2, patience=3))
    again.load_state_dict(rule.state_dict())
    assert again.state_dict() == rule.state_dict()
    assert again.rules[1].direction == 1 and again.rules[0].best_check == 2
    assert again.update((0.9, 7.0), 4) == rule.update((0.9, 7.0), 4)
    with pytest.raises(ValueError, match="two or more StoppingRule"):
        AllRule(PlateauRule())
    with pytest.raises(ValueError, match="one value per rule, got 3"):
        rule.update((1.0, 2.0, 3.0), 5)
    with pytest.raises(ValueError, match="patience_ratio must be a non-negative number"):
        TrendRule(patience_ratio=-1)
    with pytest.raises(ValueError, match="warmup must be a positive int"):
        TrendRule(warmup=0)

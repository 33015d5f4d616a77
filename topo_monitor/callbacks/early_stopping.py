"""TopologicalEarlyStopping: validation-free early stopping on a rule about the topology of the
representations (the rules are pure: :mod:`topo_monitor.analysis.stopping`)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from topo_monitor._lightning import CALLBACK_BASES, pl, rank_zero_info
from topo_monitor.analysis.stopping import (
    AllRule,
    AnyRule,
    ConvergenceRule,
    PlateauRule,
    StoppingRule,
    TrendRule,
    VelocityRule,
)
from topo_monitor.callbacks.monitor import TopologyMonitor, monitor_prefixes
from topo_monitor.reporting.keys import PREFIX, scalar_key, split_key

__all__ = ["DEFAULT_RULE", "RULES", "TopologicalEarlyStopping", "make_rule"]


_NO_NEW_MINIMUM = {
    "patience": 5,
    "min_delta": 0.0,
    "min_delta_mode": "rel",
    "rebound": None,
    "mode": "min",
}
"""A PlateauRule that stops after 5 checks without a new minimum (no rebound stop)."""


def settled(
    loss_patience: int = 3,
    loss_min_delta: float = 0.05,
    tol: float = 0.01,
    patience: int = 3,
) -> AllRule:
    """A training-loss plateau that the topology vetoes while it still moves: stop when the
    training loss has not fallen by ``loss_min_delta`` (relative) for ``loss_patience`` checks
    *and* the topology metric changed by at most ``tol`` per check for ``patience`` checks."""
    return AllRule(
        PlateauRule(patience=loss_patience, min_delta=loss_min_delta, min_delta_mode="rel"),
        ConvergenceRule(tol=tol, patience=patience),
    )


def turn(
    loss_patience: int = 3,
    loss_min_delta: float = 0.05,
    warmup: int = 3,
    patience: int = 10,
    patience_ratio: float = 0.5,
) -> AnyRule:
    """A training-loss plateau, or the topology turning back from the way it moved while the
    network learned (:class:`~topo_monitor.TrendRule`), whichever comes first."""
    return AnyRule(
        PlateauRule(patience=loss_patience, min_delta=loss_min_delta, min_delta_mode="rel"),
        TrendRule(warmup=warmup, patience=patience, patience_ratio=patience_ratio),
    )


E0_LAST_HIDDEN = scalar_key("E0_1_scaled", "last_hidden")
LOSS_AND_E0 = ("train_loss", E0_LAST_HIDDEN)

RULES: dict[str, tuple[Callable[..., StoppingRule], dict[str, Any], str | tuple[str, ...]]] = {
    "loss": (
        PlateauRule,
        {"patience": 3, "min_delta": 0.05, "min_delta_mode": "rel"},
        "train_loss",
    ),
    "trend": (TrendRule, {"warmup": 3, "patience": 10}, E0_LAST_HIDDEN),
    "settled": (settled, {}, LOSS_AND_E0),
    "turn": (turn, {}, LOSS_AND_E0),
    "convergence": (ConvergenceRule, {"tol": 0.02, "patience": 3}, E0_LAST_HIDDEN),
    "velocity": (
        VelocityRule,
        {"fraction": 0.2, "patience": 3},
        scalar_key("H0_velocity", "last_hidden"),
    ),
    "minimum": (PlateauRule, _NO_NEW_MINIMUM, E0_LAST_HIDDEN),
    "functional": (PlateauRule, _NO_NEW_MINIMUM, scalar_key("functional_midlife_H1")),
    "plateau": (
        PlateauRule,
        {"patience": 3, "rebound": 0.25, "mode": "min"},
        scalar_key("E0_1", "last_hidden"),
    ),
}
"""Named rules: how to build the rule, its default options, and the key(s) it reads by default
(one per series: a composite rule reads the epoch-mean ``train_loss`` beside the topology)."""

DEFAULT_RULE = "loss"
"""Chosen by ``benchmarks/early_stopping.py`` on six data families (README): no rule met the bar
in every family, and this one lost the least in its worst family."""


def make_rule(
    rule: str | StoppingRule = DEFAULT_RULE, **options: Any
) -> tuple[StoppingRule, str | tuple[str, ...] | None]:
    """A stopping rule by name (with ``options`` over its defaults), and the key(s) it reads by
    default (None for a rule object: its keys must be given).

    The callback and ``benchmarks/early_stopping.py`` build their rules here, so the study
    measures exactly the rules users get.
    """
    if isinstance(rule, StoppingRule):
        if options:
            raise ValueError(
                f"options {sorted(options)} are for a rule given by name; a rule object "
                f"({type(rule).__name__}) carries its own"
            )
        return rule, None
    if rule not in RULES:
        raise ValueError(f"rule must be one of {sorted(RULES)} or a StoppingRule, got {rule!r}")
    build, defaults, keys = RULES[rule]
    try:
        return build(**{**defaults, **options}), keys
    except TypeError as err:
        accepted = list(inspect.signature(build).parameters)
        raise ValueError(
            f"rule {rule!r} ({build.__name__}) takes the options {accepted}: {err}"
        ) from None


class TopologicalEarlyStopping(*CALLBACK_BASES):
    """Validation-free early stopping at the checks of a :class:`TopologyMonitor`, on rules that
    read the topology of the representations and/or the training loss, so that all labelled data
    can be trained on.

    Needs a TopologyMonitor among the callbacks and checks what it computes (``every_n_epochs`` or
    ``every_n_train_steps``), whatever the order of the callbacks. ``benchmarks/early_stopping.py``
    measured the rules on six data families, leaving each out in turn (README, "Early stopping
    without a validation set"): **no rule met the bar in every family**, topological or not; the
    default is the one that lost least in its worst family, and it reads the training loss only.

    ``"loss"`` (default)
        :class:`~topo_monitor.PlateauRule` on the epoch-mean ``train_loss`` (log it with
        ``self.log("train_loss", loss, on_epoch=True)``): stop when it has not fallen by 5 %
        (relative) for ``patience`` (3) checks. Measured: on clean labels within 0.5 pt of
        training to the end in 5 of 6 families (3.4 pt lost on the slow-learning sequence
        task); under label noise it does not see memorization (up to 13 pt behind
        validation-loss early stopping on a family that overfits from its 2nd epoch).
    ``"settled"``
        A training-loss plateau (as above) the topology vetoes while it still moves: also
        ``topology/E0_1_scaled/last_hidden`` changed by at most ``tol`` (1 %) per check for
        ``patience`` (3) checks (:class:`~topo_monitor.AllRule`). Closer to training to the end
        on clean labels (worst run −7.7 pt against −13.3), later under label noise.
    ``"turn"``
        A training-loss plateau, or E0_1_scaled turning back from the way it moved over the first
        ``warmup`` (3) checks (:class:`~topo_monitor.TrendRule`, patience 10, or half the checks
        to its extreme), whichever first (:class:`~topo_monitor.AnyRule`).
    ``"trend"``
        :class:`~topo_monitor.TrendRule` on E0_1_scaled alone: the direction it moved while the
        network learned is taken from the run, and ``patience`` (10) checks without a new extreme
        in it stop, settled or turned.
    ``"minimum"``
        :class:`~topo_monitor.PlateauRule` on ``topology/E0_1_scaled/last_hidden``: no new
        minimum for ``patience`` (5) checks. The default of earlier versions, chosen on digits and
        Fashion-MNIST with Adam: on families it was not chosen on it stops too early (−4.3 and
        −8.5 pt on clean signals and sequences, −20.7 pt on a run).
    ``"convergence"``
        :class:`~topo_monitor.ConvergenceRule` on the same metric: stop when it changed by at
        most ``tol`` (2 %) per check for ``patience`` (3) checks, in either direction.
    ``"functional"``
        :class:`~topo_monitor.PlateauRule` on ``topology/functional_midlife_H1``, the mean midlife
        of the 1-D cavities of the functional graph: no new minimum for ``patience`` (5) checks.
        Needs ``TopologyMonitor(metrics=(..., "functional"))``; measured on digits and
        Fashion-MNIST only.
    ``"velocity"``
        :class:`~topo_monitor.VelocityRule` on ``topology/H0_velocity/last_hidden``: stop when
        the SW distance the block's diagrams move per check stayed below ``fraction`` (20 %) of
        its peak for ``patience`` (3) checks.
    ``"plateau"``
        :class:`~topo_monitor.PlateauRule` on the *raw* ``topology/E0_1/last_hidden`` with a
        ``rebound`` stop: the rule of the first versions, kept for comparison (raw E0 grows with
        the activations' scale, so it stops after 2–4 epochs).

    Parameters
    ----------
    monitor : str or sequence of str, optional
        What the rule reads, one key per series (a composite rule reads several): a metric the
        TopologyMonitor logs, ``topology/<metric>/<block>`` with block ``last`` (model output),
        ``last_hidden`` (the block before it) or a block name, or a per-network value
        ``topology/<name>`` (e.g. ``topology/functional_peak_density_H1``); or any metric the
        LightningModule logs (``train_loss``). Default: the rule's keys above.
    rule : str or StoppingRule, default "loss"
        A name above, or a rule object (any :class:`~topo_monitor.StoppingRule`).
    verbose : bool, default True
        Log why training stopped.
    strict : bool, default True
        Fail when the monitored metric is not logged on a monitored epoch (else skip the check).
    monitor_name : str, optional
        The TopologyMonitor it reads, by name, when the trainer has several (its metric is then
        read under that monitor's ``topology_<name>/``). Without it, the monitor whose prefix the
        key carries: ``topology/`` is the first monitor without a ``name``.
    **rule_options
        Options of a rule given by name, over its defaults, e.g. ``patience=5, tol=0.01``.

    Attributes
    ----------
    rule : StoppingRule
        Its state (``wait_count``, ...) is saved in checkpoints. Weights are not restored: pair
        this with ``ModelCheckpoint(save_last=True)`` to keep the model it stopped at.
    stopped_epoch : int
        The epoch training stopped at (0 if it did not).
    stopping_reason_message : str or None
        Why it stopped (also logged).

    Examples
    --------
    >>> callbacks = [TopologyMonitor(), TopologicalEarlyStopping()]  # logs train_loss per epoch
    >>> TopologicalEarlyStopping(rule="settled", tol=0.02)
    >>> TopologicalEarlyStopping("topology/PHdim/last_hidden", TrendRule(patience=8))
    """

    def __init__(
        self,
        monitor: str | Sequence[str] | None = None,
        rule: str | StoppingRule = DEFAULT_RULE,
        *,
        verbose: bool = True,
        strict: bool = True,
        monitor_name: str | None = None,
        **rule_options: Any,
    ) -> None:
        super().__init__()
        self.rule, default_monitor = make_rule(rule, **rule_options)
        monitor = default_monitor if monitor is None else monitor
        if monitor is None:
            raise ValueError(
                f"a {type(self.rule).__name__} object needs the metric it reads: "
                "monitor='topology/<metric>/<block>'"
            )
        keys = (monitor,) if isinstance(monitor, str) else tuple(monitor)
        series = len(self.rule.rules) if isinstance(self.rule, (AllRule, AnyRule)) else 1
        if len(keys) != series or not all(isinstance(k, str) and k for k in keys):
            raise ValueError(
                f"a {type(self.rule).__name__} reads {series} series: monitor must be "
                + ("one key" if series == 1 else f"a sequence of {series} keys, one per rule")
                + f", got {monitor!r}"
            )
        malformed = [k for k in keys if k.split("/")[0].startswith(PREFIX) and not split_key(k)]
        if malformed:
            raise ValueError(
                f"{malformed} are not TopologyMonitor keys: 'topology/<metric>/<block>' (e.g. "
                "'topology/E0_1_scaled/last_hidden') or a per-network value 'topology/<name>' "
                "(e.g. 'topology/functional_peak_density_H1')"
            )
        self.monitor: str | tuple[str, ...] = keys[0] if series == 1 else keys
        self.monitor_name = monitor_name
        self.verbose = verbose
        self.strict = strict
        self.stopped_epoch = 0
        self.stopping_reason_message: str | None = None
        self._topology: TopologyMonitor | None = None

    @property
    def keys(self) -> tuple[str, ...]:
        """The logged metrics the rule reads, one per series."""
        return (self.monitor,) if isinstance(self.monitor, str) else self.monitor

    @property
    def wait_count(self) -> int:
        return self.rule.wait_count

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, rule=type(self.rule).__name__)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        topological = [split_key(k) for k in self.keys if split_key(k)]
        self._topology = TopologyMonitor.select(
            trainer,
            "TopologicalEarlyStopping",
            "it checks when that monitor does, on the metrics it computes",
            self.monitor_name,
            topological[0][0] if topological and self.monitor_name is None else None,
        )
        # Keys under the chosen monitor's prefix (monitor_name= may pick another than the keys'
        # own); keys of other logged metrics as given.
        prefix = monitor_prefixes(trainer)[id(self._topology)]
        keys = tuple(
            scalar_key(*split_key(k)[1:], prefix) if split_key(k) else k for k in self.keys
        )
        self.monitor = keys[0] if isinstance(self.monitor, str) else keys
        for key in keys:
            if split_key(key):
                self._check_topology_key(key, pl_module)

    def _check_topology_key(self, key: str, pl_module: pl.LightningModule) -> None:
        """Fail before training when the monitor will not log ``key``."""
        _, metric, block = split_key(key)
        names = (
            self._topology.metric_names
            if block is not None
            else self._topology.network_metric_names
        )
        if metric not in names:
            kind = "metrics per block" if block is not None else "per-network values"
            raise ValueError(
                f"TopologicalEarlyStopping monitors {key!r}, but its TopologyMonitor "
                f"does not compute {metric!r}; available {kind}: {names}"
            )
        if block is not None:
            self._topology.require_block(
                pl_module, block, f"TopologicalEarlyStopping(monitor={key!r})"
            )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._topology is not None and not self._topology.by_steps:
            self._judge(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any, **kwargs: Any
    ) -> None:
        if self._topology is not None and self._topology.by_steps:
            self._judge(trainer, pl_module)

    def _judge(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Take the monitor's newest value at one of its checks (patience counts checks)."""
        topology = self._topology
        epoch, moment = trainer.current_epoch, topology.moment(trainer)
        if not topology.fresh(trainer, pl_module):
            return  # not a check, or its monitoring failed (it warned): nothing new to judge
        values = [trainer.callback_metrics.get(key) for key in self.keys]
        missing = [key for key, value in zip(self.keys, values, strict=True) if value is None]
        if missing:
            if not self.strict:
                return
            raise ValueError(
                f"TopologicalEarlyStopping monitors {missing}, not logged at this check: "
                + "; ".join(self._not_logged(key) for key in missing)
            )
        if isinstance(self.monitor, str):
            reason = self.rule.update(float(values[0]), moment, self.monitor)
        else:
            reason = self.rule.update([float(v) for v in values], moment, self.monitor)
        should_stop = trainer.strategy.reduce_boolean_decision(reason is not None, all=False)
        trainer.should_stop = trainer.should_stop or should_stop
        if should_stop:
            self.stopped_epoch = epoch
            self.stopping_reason_message = reason
            if self.verbose:
                at = f"step {moment} (epoch {epoch})" if topology.by_steps else f"epoch {epoch}"
                rank_zero_info(f"TopologicalEarlyStopping stopped at {at}: {reason}")

    def _not_logged(self, key: str) -> str:
        if split_key(key):
            return (
                f"{key!r}: the blocks are {self._topology.block_names} (or use 'last' / "
                "'last_hidden')"
            )
        return (
            f"{key!r}: log it from the LightningModule, e.g. self.log({key!r}, loss, "
            "on_step=False, on_epoch=True) in training_step, or name what you log in monitor="
        )

    def state_dict(self) -> dict[str, Any]:
        return {**self.rule.state_dict(), "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rule.load_state_dict(state_dict)
        self.stopped_epoch = state_dict.get("stopped_epoch", 0)

"""AdversarialTopologyMonitor: adversarial-example topology in TensorBoard, every n epochs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import nan
from typing import Any

import torch
from torch.utils.data import Dataset

from topo_monitor._lightning import CALLBACK_BASES, pl, rank_zero_warn
from topo_monitor._validation import check, is_positive_int
from topo_monitor.analysis.adversarial import (
    DEFAULT_EPS,
    INPUT,
    adversarial_config,
    adversarial_topology,
    check_attacks,
    require_torchattacks,
)
from topo_monitor.callbacks._probe import given_probe, training_probe
from topo_monitor.probing.measurement import BlocksSpec, check_probing_options
from topo_monitor.probing.probe import ProbeSet, default_unpack
from topo_monitor.reporting.loggers import FigureWriter, log_metrics

__all__ = ["SHARDED_STRATEGIES", "AdversarialTopologyMonitor"]

SHARDED_STRATEGIES = ("FSDPStrategy", "DeepSpeedStrategy", "ModelParallelStrategy")
"""Lightning strategies that shard parameters across processes: refused at fit start."""


class AdversarialTopologyMonitor(*CALLBACK_BASES):
    """Run :func:`~topo_monitor.adversarial_topology` on a small fixed probe set.

    Every ``every_n_epochs`` epochs, adversarial examples of the probe inputs are made with each
    attack and budget ε, and their topology is measured in input space and inside every block.
    Logged: scalars ``adversarial/<attack>/<quantity>/eps=<ε>`` for the success rate, accuracy
    and input-space PHdim (``step = epoch``); figures ``adversarial/<attack>/depth_E0_1_scaled``
    (scale-free E^0_1 of X' against relative depth, one curve per ε) and ``adversarial/curves``
    (success rate and input-space PHdim against ε); and the full table of every monitored epoch
    in ``history``. The attacks run on rank 0: under DDP the other ranks wait at their next
    collective; strategies that shard parameters across processes are refused at fit start. An
    unknown attack is an error at construction; a check whose attacks fail at run time (out of
    memory, say) is skipped with one warning per cause and ``fit``, and training goes on.
    Needs torchattacks (``pip install "topo-monitor[adversarial]"``): without it, construction
    raises an ImportError saying so.

    Parameters
    ----------
    samples_per_class : int, default 30
        Probe inputs per class (attacks cost a few forward/backward passes each).
    probe : Dataset, (inputs, labels) tensors, ProbeSet, or None
        None draws it from the training dataset, as :class:`TopologyMonitor` does.
    attacks, eps, blocks, reduction, homology_dims, mean, std, attack_kwargs
        As :func:`~topo_monitor.adversarial_topology`. Inputs must be in [0, 1], or
        normalized with the given ``mean`` and ``std``.
    every_n_epochs : int, default 5
    seed : int, default 0
    unpack : callable, optional
        ``item -> (input, label)`` for unusual dataset items.
    """

    def __init__(
        self,
        *,
        samples_per_class: int = 30,
        probe: Dataset | tuple[torch.Tensor, torch.Tensor] | ProbeSet | None = None,
        attacks: Sequence[Any] = ("FGSM", "MIFGSM", "PGD"),
        eps: Sequence[float] = DEFAULT_EPS,
        every_n_epochs: int = 5,
        blocks: BlocksSpec = "auto",
        reduction: str = "gap",
        homology_dims: Sequence[int] = (0, 1),
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        attack_kwargs: dict[str, Any] | None = None,
        seed: int = 0,
        unpack: Callable[[Any], tuple[Any, Any]] | None = None,
    ) -> None:
        super().__init__()
        require_torchattacks()  # here, not in the middle of the user's training run
        for name, value in (
            ("samples_per_class", samples_per_class),
            ("every_n_epochs", every_n_epochs),
        ):
            check(is_positive_int(value), f"{name} must be a positive int, got {value!r}")
        check_attacks(attacks)  # an unknown name is an error now, not at every check
        if not eps or any(not 0 <= e <= 1 for e in eps):
            raise ValueError(f"eps must be budgets in [0, 1], got {eps!r}")
        adversarial_config(homology_dims)  # the checks every entry point makes
        check_probing_options(reduction=reduction, seed=seed)
        self.samples_per_class = samples_per_class
        self.every_n_epochs = every_n_epochs
        self.seed = seed
        self.unpack = unpack or default_unpack
        self.options = dict(
            attacks=tuple(attacks),
            eps=tuple(float(e) for e in eps),
            blocks=blocks,
            reduction=reduction,
            homology_dims=tuple(homology_dims),
            mean=mean,
            std=std,
            attack_kwargs=attack_kwargs,
            seed=seed,
        )
        self._probe_source = probe
        self.probe = given_probe(probe)
        self.history: list[dict[str, Any]] = []
        self.figures = FigureWriter(type(self).__name__)
        self._failures: set[str] = set()

    @property
    def state_key(self) -> str:
        return self._generate_state_key(seed=self.seed, eps=self.options["eps"])

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._failures = set()  # each cause of a skipped check is said once per fit
        # The attacks run on rank 0 alone: a model whose parameters are sharded across ranks
        # cannot forward there without the others, which would wait for it forever.
        sharded = tuple(
            getattr(pl.strategies, name)
            for name in SHARDED_STRATEGIES
            if hasattr(pl.strategies, name)
        )
        if stage == "fit" and trainer.world_size > 1 and isinstance(trainer.strategy, sharded):
            raise ValueError(
                f"AdversarialTopologyMonitor does not run under {type(trainer.strategy).__name__} "
                f"with {trainer.world_size} processes: its attacks run on rank 0 alone, and a "
                "sharded model cannot forward on one rank. Use DDP, one device, or "
                "adversarial_topology() on the saved model"
            )

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.probe is None and trainer.is_global_zero:
            self.probe = training_probe(
                trainer, self._probe_source, self.samples_per_class, self.seed, self.unpack
            )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if (epoch + 1) % self.every_n_epochs != 0:
            return
        # trainer.log_dir is a collective under DDP: every rank reads it.
        directory = trainer.log_dir or trainer.default_root_dir
        if not trainer.is_global_zero:
            return
        try:
            table = adversarial_topology(
                pl_module, self.probe.inputs, self.probe.labels, **self.options
            )
        except Exception as err:  # an attack that fails must not end the training run
            cause = f"{type(err).__name__}: {err}"
            if cause not in self._failures:
                self._failures.add(cause)
                rank_zero_warn(
                    f"AdversarialTopologyMonitor: epoch {epoch} skipped: {cause} (later epochs "
                    "that fail the same way are skipped without another warning)"
                )
            return
        self.history.append({"epoch": epoch, "rows": table.rows, "timings": table.timings})
        scalars = {
            f"adversarial/{row['attack']}/{quantity}/eps={row['eps']:g}": row.get(quantity, nan)
            for row in table.rows
            if row["block"] == INPUT
            for quantity in ("success_rate", "accuracy", "PHdim")
        }
        log_metrics(trainer.loggers, scalars, step=epoch)
        from topo_monitor.reporting.plots import adversarial_figures

        self.figures.write(trainer.loggers, adversarial_figures(table.rows), epoch, directory)

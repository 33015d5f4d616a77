"""TopologyMonitor: the Lightning callback that records the topology of every block, every epoch.

Thin: it decides when to measure (every n epochs, before checkpointing reads its metrics), has
every rank forward its share of the probe and rank zero measure, through
:func:`~topo_monitor.measure`, broadcasts the short metrics, hands
the record to a :class:`~topo_monitor.reporting.TopologyWriter`, and keeps the history as
checkpoint state.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from topo_monitor._lightning import CALLBACK_BASES, pl, rank_zero_warn
from topo_monitor._validation import check, is_positive_int
from topo_monitor.callbacks._probe import given_probe, probe_fingerprint, training_probe
from topo_monitor.probing.blocks import OUTPUT, named_modules, resolve_blocks
from topo_monitor.probing.config import SummaryConfig, summary_config
from topo_monitor.probing.measurement import (
    MAX_CLOUD_BYTES,
    BlocksSpec,
    ProbeSharding,
    check_cloud_bytes,
    check_probing_options,
    cloud_bytes_per_input,
)
from topo_monitor.probing.measurement import measure as measure_model
from topo_monitor.probing.metrics import metric_names, network_names
from topo_monitor.probing.probe import ProbeSet, default_unpack
from topo_monitor.probing.record import TopologyRecord
from topo_monitor.reporting.keys import PREFIX, record_scalars
from topo_monitor.reporting.writer import TopologyWriter

__all__ = ["MAX_PROBE_INPUTS", "TopologyMonitor"]

MAX_PROBE_INPUTS = 3000
"""Default probe budget of the monitor: the default probe of 10 classes × 300 inputs."""

_OWN_OPTIONS = (
    "blocks",
    "samples_per_class",
    "probe",
    "reduction",
    "every_n_epochs",
    "every_n_train_steps",
    "seed",
    "batch_size",
    "channel_dim",
    "unpack",
    "forward",
    "figures_every_n_epochs",
    "name",
    "pad_value",
    "max_cloud_bytes",
    "max_probe_inputs",
)


class TopologyMonitor(*CALLBACK_BASES):
    r"""Record the topology and intrinsic dimension of every block's representation, every epoch.

    After every ``every_n_epochs``-th training epoch, the probe set (a fixed, class-stratified
    sample of training inputs) goes through the model in eval mode under ``no_grad``; the output
    of every block is reduced to one vector per input; and per block, per class (then averaged
    over classes):

    * ``E0_1`` — E^0_1, total H0 persistence of the Vietoris–Rips filtration = Euclidean MST length;
      ``E0_1_scaled`` — the same divided by the cloud's RMS radius (scale-free, comparable across
      blocks); ``E0_mean_lifespan`` — E^0_1 per bar;
    * ``beta0`` — β0 at scale, the clusters separated by gaps wider than 3 median MST edges
      (:func:`~topo_monitor.tda.persistence.betti0_at_scale`): per class, averaged, ≈ 1 when
      every class is one cluster; with ``per_class=False``, of the whole cloud, ≈ the number of
      classes when the block separates them;
    * ``PHdim`` — the persistent-homology dimension, with ``PHdim_r2``, the R² of its fit;
    * ``E1_1``, ``E1_1_scaled``, ``E1_mean_lifespan`` — the same for H1 (opt-in, capped);
    * the L×L sliced-Wasserstein distances between the blocks' scale-free H0 diagrams, and
      ``H0_velocity`` — the SW distance each block's scale-free H0 diagrams moved since the
      previous monitored epoch (NaN, hence not logged, at the first one), and
      ``H0_bottleneck_prev_block`` — the bottleneck distance between each block's scale-free H0
      diagrams and the previous block's (≈ 0: a redundant block, see
      :func:`~topo_monitor.analysis.redundant_blocks`; NaN, not logged, for the first block);
    * with ``metrics=(..., "functional")`` (opt-in, costly), per network rather than per block: the
      topology of the functional graph of the network's neurons (the channels of every block,
      up to ``functional_max_neurons`` drawn across blocks; edges weighted by 1 − |ρ| of their
      activations over all probe inputs; Corneanu et al. 2019, 2020): per dimension k = 1, 2,
      ``functional_bars_H<k>``, ``functional_life_H<k>``, ``functional_midlife_H<k>`` and
      ``functional_peak_density_H<k>`` (the edge density where β_k peaks), with
      ``functional_neurons`` and ``functional_constant_neurons``; logged as
      ``topology/<name>`` and drawn as Betti curves against edge density;
    * with ``metrics=(..., "mapper")`` (opt-in), the class purity of each block's Mapper graph
      (ℓ2-norm filter, PNNL's seed paper): ``mapper_node_purity`` (mean over nodes of
      1 / classes in the node), ``mapper_point_purity`` and ``mapper_class_purity`` (the same
      averaged per point, and per class then over classes; each class's in the history); 1 when
      no node mixes classes. The last hidden block's graph is drawn, nodes coloured by their
      majority class and sized by their points.

    Logged as scalars ``topology/<metric>/<block>`` with ``step = epoch`` to every logger, a
    TensorBoard custom-scalars layout (one chart per metric, every block in it), figures (metric vs
    relative depth, one curve per epoch; the SW heatmap), a JSON-lines history
    ``topology_history.jsonl`` in the run's log directory, and
    ``trainer.callback_metrics["topology/<metric>/<block>"]`` for every block, with the aliases
    ``.../last`` (model output) and ``.../last_hidden`` (the block before it), and
    ``trainer.callback_metrics["topology/<name>"]`` for the per-network values, for
    ``EarlyStopping``, ``ModelCheckpoint`` and :class:`TopologicalEarlyStopping`.

    Parameters
    ----------
    blocks : "auto", list of str, or callable
        ``"auto"`` (:func:`~topo_monitor.probing.candidate_blocks`): the repeated units of the
        network (modules with layers of their own, of a class held two or more times in
        ``Sequential``/``ModuleList``/``ModuleDict`` containers, or named ``*Block``,
        ``*Bottleneck``, ``*EncoderLayer``, ``*DecoderLayer``, ``*Stage``; the outermost level
        only), else every activation module, else the Linear/Conv layers but the last (an
        ``F.relu`` MLP); recurrent layers are always blocks; the model output is always added
        last. A list of names from ``model.named_modules()``, or a callable taking the
        LightningModule and returning names or modules, chooses them yourself. Blocks are ordered
        by execution; a module called k times per forward gives blocks ``name``, ..., ``name#k``.
    samples_per_class : int, default 300
        Probe inputs per class, drawn from the training dataset (papers: 300–350).
    probe : Dataset, (inputs, labels) tensors, ProbeSet, or None
        The probe set. None draws it from ``trainer.train_dataloader``'s dataset.
    reduction : str, default "gap"
        ``"gap"``: global average pooling over positions; ``"top_l2"``: the position vector of
        largest l2 norm; ``"flatten"``: the whole output (small layers only); or a spatial
        reduction, several points per input (Purvine et al.): ``"spatial"`` (every position),
        ``"spatial_random"`` (5 random positions, the same every epoch), ``"spatial_top1"``,
        ``"spatial_top5"`` (the largest-norm positions), at most
        :data:`~topo_monitor.probing.reduction.MAX_POINTS` per class cloud; each point has its
        input's class (see :func:`~topo_monitor.measure`).
    every_n_epochs : int, default 1
        Monitor after epochs ``n - 1, 2n - 1, ...`` (as ``check_val_every_n_epoch``).
    every_n_train_steps : int, optional
        Instead (not both): monitor after every n-th optimizer step (``trainer.global_step``;
        with gradient accumulation, steps, not batches), for step-based training (``max_steps``
        inside one long epoch). Scalars are logged at ``step = global_step``, records carry both
        ``epoch`` and ``step``, and ``TopologicalEarlyStopping``/``PredictedTestAccuracy`` judge
        at these checks (patience counts checks).
    config : SummaryConfig, optional
        What to compute; or give its fields as keyword arguments (``metrics=(...)``,
        ``homology_dims=(0, 1)``, ``per_class``, ``alpha``, ``normalize``, ``h1_max_points``,
        ``phdim_draws``, ``sw_directions``, ``functional_max_neurons``, ``mapper_intervals``,
        ``mapper_gain``, ``mapper_max_points``), not both, as :func:`~topo_monitor.measure`.
        Defaults: every metric group but ``"functional"``, ``"geometry"`` and ``"mapper"``, H0
        only, per class, α = 1 (see :class:`~topo_monitor.SummaryConfig`).
    seed : int, default 0
        Seeds the private generators of the probe draw and of the PHdim/H1 subsamples.
    batch_size : int, default 256
        Probe inputs per forward pass.
    channel_dim : int, optional
        Channel dimension of 3-D outputs: -1 (default, ``(B, T, C)`` sequences) or 1 (Conv1d).
    unpack : callable, optional
        ``item -> (input, label)`` for dataset items that are not ``(x, y, ...)`` tuples or dicts
        with usual keys (see :func:`topo_monitor.probing.default_unpack`).
    forward : callable, optional
        ``(model, inputs) -> output``; default ``model(**inputs)`` when dataset items are
        mappings (``{"input_ids", "attention_mask", "labels"}``: every field but the label is
        kept), else ``model(inputs)``. Sequence outputs are reduced over the positions the
        ``attention_mask`` marks 1.
    pad_value : int or float, default 0
        The tokenizer's pad id: token sequences of different lengths in the probe are padded
        with it (the attention mask 0 there).
    max_probe_inputs : int or None, default 3000
        The probe's size budget (the default probe of 10 classes × 300): with more classes
        (1000 classes would give 300,000 inputs at the default ``samples_per_class``), classes
        are drawn at random with ``seed`` until the next would exceed it, with one warning;
        every record's ``classes`` lists those drawn. None: no budget.
    max_cloud_bytes : int or None, default 2 GiB
        Budget for the clouds of one measurement, projected from the probe's first batch at fit
        start: over it, ``fit`` stops there with a ValueError naming the block, its size per
        input and the options that fit (``reduction="gap"``, fewer inputs), never a run killed
        by the operating system. None: no budget.
    figures_every_n_epochs : int or None, default 10
        Draw the figures every n-th check (monitored epoch, or step with
        ``every_n_train_steps``) and after the last one; None: never. They go
        to TensorBoard, MLflow and W&B loggers, else to PNG files in the log directory. A figure
        takes about 0.1 s of a CPU core to render (three by default), as much as all the topology
        of a small model's epoch; a depth profile holds every epoch so far, so drawing it less
        often loses only the heatmaps in between.

    name : str, optional
        Tells this monitor apart from the trainer's others (e.g. a training and a held-out
        probe): its scalars are ``topology_<name>/<metric>/<block>``, its figures
        ``topology_<name>_figures/...``, its history ``topology_<name>_history.jsonl``, and it
        enters the checkpoint state key. Without a name, the first monitor logs under
        ``topology/``; another is named ``train`` (probe drawn from the training data) or after
        a fingerprint of its probe (see :attr:`display_name`).

    Examples
    --------
    >>> trainer = pl.Trainer(callbacks=[TopologyMonitor()], logger=TensorBoardLogger("runs"))
    >>> held_out = TopologyMonitor(probe=(x_val, y_val), name="heldout")  # beside the first
    """

    def __init__(
        self,
        config: SummaryConfig | None = None,
        *,
        blocks: BlocksSpec = "auto",
        samples_per_class: int = 300,
        probe: Dataset | tuple[torch.Tensor, torch.Tensor] | ProbeSet | None = None,
        reduction: str = "gap",
        every_n_epochs: int | None = None,
        every_n_train_steps: int | None = None,
        seed: int = 0,
        batch_size: int = 256,
        channel_dim: int | None = None,
        unpack: Callable[[Any], tuple[Any, Any]] | None = None,
        forward: Callable[[nn.Module, Any], Any] | None = None,
        figures_every_n_epochs: int | None = 10,
        name: str | None = None,
        pad_value: int | float = 0,
        max_cloud_bytes: int | None = MAX_CLOUD_BYTES,
        max_probe_inputs: int | None = MAX_PROBE_INPUTS,
        **summary_options: Any,
    ) -> None:
        super().__init__()
        check(
            name is None or (isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9_.-]+", name)),
            "name must be None or a non-empty string of letters, digits, '_', '.', '-', "
            f"got {name!r}",
        )
        self.config = summary_config(
            config, summary_options, "TopologyMonitor", others=_OWN_OPTIONS
        )
        check(
            blocks == "auto"
            or callable(blocks)
            or (
                isinstance(blocks, Sequence)
                and not isinstance(blocks, str)
                and all(isinstance(b, str) for b in blocks)
                and len(blocks) > 0
            ),
            'blocks must be "auto", a non-empty list of module names or a callable, '
            f"got {blocks!r}",
        )
        check(
            is_positive_int(samples_per_class),
            f"samples_per_class must be a positive int, got {samples_per_class!r}",
        )
        check(
            every_n_epochs is None or every_n_train_steps is None,
            "give every_n_epochs or every_n_train_steps, not both (a monitor has one cadence; "
            "two monitors with a name= each can have one each)",
        )
        for option, value in (
            ("every_n_epochs", every_n_epochs),
            ("every_n_train_steps", every_n_train_steps),
        ):
            check(
                value is None or is_positive_int(value),
                f"{option} must be a positive int, got {value!r}",
            )
        if every_n_train_steps is None and every_n_epochs is None:
            every_n_epochs = 1
        check(
            figures_every_n_epochs is None or is_positive_int(figures_every_n_epochs),
            "figures_every_n_epochs must be a positive int or None, "
            f"got {figures_every_n_epochs!r}",
        )
        check_probing_options(reduction, seed, batch_size, channel_dim)
        self.blocks = blocks
        self.samples_per_class = samples_per_class
        self.reduction = reduction
        self.every_n_epochs = every_n_epochs
        self.every_n_train_steps = every_n_train_steps
        self.seed = seed
        self.batch_size = batch_size
        self.channel_dim = channel_dim
        self.unpack = unpack or default_unpack
        self.forward = forward
        self.pad_value = pad_value
        self.max_cloud_bytes = max_cloud_bytes
        self.max_probe_inputs = max_probe_inputs
        self.figures_every_n_epochs = figures_every_n_epochs
        self._probe_source = probe
        self.probe = given_probe(probe)
        self.name = name
        # Hashing a given probe costs a pass over its tensors: once, not at every checkpoint.
        given = self.probe if self.probe is not None else probe  # a Dataset is drawn later
        self._derived_name = "train" if probe is None else probe_fingerprint(given)
        self.prefix = PREFIX if name is None else f"{PREFIX}_{name}"
        """Of this monitor's scalar names, figure tags and history file; settled at fit start
        among the trainer's monitors (see :meth:`setup`)."""
        self.history: list[TopologyRecord] = []
        self.writer = TopologyWriter(type(self).__name__, self.prefix)
        self.measured_at: int | None = None
        """The newest check (an epoch, or a global step with ``every_n_train_steps``) whose
        metrics are in ``trainer.callback_metrics``, on every rank."""
        self._last_run: int | None = None
        self._previous: TopologyRecord | None = None
        """This run's newest record, with its diagrams: the next measurement's velocity."""
        self._directory: str | None = None

    @property
    def measure_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`~topo_monitor.measure` this monitor measures with:
        ``measure(model, monitor.probe, **monitor.measure_options)`` gives its records."""
        return {
            "blocks": self.blocks,
            "reduction": self.reduction,
            "seed": self.seed,
            "forward": self.forward,
            "batch_size": self.batch_size,
            "channel_dim": self.channel_dim,
            "config": self.config,
            "max_cloud_bytes": self.max_cloud_bytes,
        }

    @property
    def metric_names(self) -> list[str]:
        """The metrics logged per block, as in ``topology/<metric>/<block>``."""
        return metric_names(self.config)

    @property
    def network_metric_names(self) -> list[str]:
        """The values logged per network, as in ``topology/<name>`` (the functional graph's)."""
        return network_names(self.config)

    @property
    def block_names(self) -> list[str] | None:
        """The blocks of the newest record, in execution order (None before the first)."""
        return self.history[-1].blocks if self.history else None

    # ------------------------------------------------------------------ Lightning hooks

    @property
    def display_name(self) -> str:
        """The given ``name``; else ``"train"`` for a probe drawn from the training data, or a
        short fingerprint of the given probe."""
        return self._derived_name if self.name is None else self.name

    @property
    def state_key(self) -> str:
        blocks = self.blocks if not callable(self.blocks) else self.blocks.__qualname__
        # A monitor of the training data keeps the key it always had (checkpoints resume); any
        # other is told apart by its name.
        named = {} if self.display_name == "train" else {"name": self.display_name}
        return self._generate_state_key(
            blocks=blocks if isinstance(blocks, str) else list(blocks),
            metrics=list(self.config.metrics),
            homology_dims=list(self.config.homology_dims),
            reduction=self.reduction,
            every_n_epochs=self.every_n_epochs,
            seed=self.seed,
            **({"every_n_train_steps": self.every_n_train_steps} if self.by_steps else {}),
            **named,
        )

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        prefix = monitor_prefixes(trainer).get(id(self), self.prefix)
        if prefix != self.prefix:
            self.prefix = prefix
            self.writer = TopologyWriter(type(self).__name__, prefix)
        # A wrong block name is an error now, not a warning in epoch 1; an "auto" that finds no
        # hidden block is said once now, not discovered from a depth profile of one point.
        if not resolve_blocks(pl_module, self.blocks) and self.blocks == "auto":
            names = ", ".join(repr(name) for name in list(named_modules(pl_module))[1:9])
            rank_zero_warn(
                f'TopologyMonitor: blocks="auto" found no hidden block in '
                f"{type(pl_module).__name__} (no repeated unit, recurrent layer, activation "
                "module or hidden Linear/Conv layer): only the model output is monitored. Pass "
                "blocks=[...] with names from model.named_modules()"
                + (f" (e.g. {names})" if names else "")
                + ", or blocks=lambda model: [modules...]"
            )

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_run = self.measured_at = None
        self._previous = None  # no velocity against another run's (or a resumed run's) last epoch
        self.writer.start_run()
        if self.probe is None:  # every rank draws the same probe: they share its forward pass
            with warnings.catch_warnings():
                if not trainer.is_global_zero:
                    warnings.simplefilter("ignore")  # a short class is said once, by rank 0
                self.probe = training_probe(
                    trainer,
                    self._probe_source,
                    self.samples_per_class,
                    self.seed,
                    self.unpack,
                    self.config.per_class,
                    self.pad_value,
                    self.max_probe_inputs,
                )
        if self.max_cloud_bytes is not None:  # now, not a killed run at the first check
            per_input = cloud_bytes_per_input(
                pl_module,
                self.probe,
                blocks=self.blocks,
                reduction=self.reduction,
                channel_dim=self.channel_dim,
                batch_size=self.batch_size,
                forward=self.forward,
                seed=self.seed,
                per_class=self.config.per_class,
            )
            check_cloud_bytes(per_input, len(self.probe), self.max_cloud_bytes)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Checkpointing (and early stopping after validation) read their metrics here, before
        # on_train_epoch_end: run now when this validation closes the training epoch.
        if trainer.state.fn == "fit" and not trainer.sanity_checking and trainer.is_last_batch:
            self.update(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.update(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any, **kwargs: Any
    ) -> None:
        if self.by_steps:
            self.update(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        last = self.history[-1] if self.history else None
        if trainer.is_global_zero and last is not None and self.figures_every_n_epochs:
            moment = last.step if self.by_steps else last.epoch
            if self.writer.figures_at != moment and self._directory is not None:
                self.writer.write_figures(trainer.loggers, self.history, self._directory, moment)

    def state_dict(self) -> dict[str, Any]:
        return {"history": [r.to_dict() for r in self.history]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [TopologyRecord.from_dict(r) for r in state_dict.get("history", [])]

    # ------------------------------------------------------------------ scheduling

    def measure(
        self,
        model: nn.Module,
        epoch: int | None = None,
        step: int | None = None,
        previous: TopologyRecord | None = None,
        sharding: ProbeSharding | None = None,
    ) -> TopologyRecord | None:
        """:func:`~topo_monitor.measure` with this monitor's probe set and options; no logging.

        Usable without a Trainer, e.g. on a loaded checkpoint, once ``self.probe`` is set.
        """
        if self.probe is None:
            raise RuntimeError("no probe set: pass probe=... or run inside Trainer.fit")
        return measure_model(
            model,
            self.probe,
            epoch=epoch,
            step=step,
            previous=previous,
            sharding=sharding,
            **self.measure_options,
        )

    @property
    def by_steps(self) -> bool:
        """Whether checks are counted in optimizer steps (``every_n_train_steps``)."""
        return self.every_n_train_steps is not None

    def moment(self, trainer: pl.Trainer) -> int:
        """Where training is, in this monitor's unit: the global (optimizer) step with
        ``every_n_train_steps``, else the epoch."""
        return trainer.global_step if self.by_steps else trainer.current_epoch

    def due(self, trainer: pl.Trainer) -> bool:
        """Whether training is at a check: after every ``every_n_epochs``-th epoch, or every
        ``every_n_train_steps``-th optimizer step (gradient accumulation: steps, not batches)."""
        if self.by_steps:
            step = trainer.global_step
            return step > 0 and step % self.every_n_train_steps == 0
        return (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def update(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> bool:
        """Monitor now if a check is due and not done yet; True if this is a check. Other
        callbacks that read the topology call this first, so that callback order does not
        matter."""
        if not self.due(trainer):
            return False
        if self._last_run != self.moment(trainer):
            self._run(trainer, pl_module)
        return True

    def fresh(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> bool:
        """:meth:`update`, then whether this check's values are in ``trainer.callback_metrics``
        (False between checks, and at a check whose monitoring failed with a warning): what the
        callbacks that read the topology judge on."""
        return self.update(trainer, pl_module) and self.measured_at == self.moment(trainer)

    def _run(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        self._last_run = moment = self.moment(trainer)
        unit = "step" if self.by_steps else "epoch"
        record = None
        previous = self._previous
        # Under DDP or a sharded strategy every rank forwards its share of the probe (a sharded
        # model cannot forward on one rank alone); rank 0 gathers the outputs and measures.
        sharding = (
            ProbeSharding(
                trainer.global_rank,
                trainer.world_size,
                trainer.strategy.all_gather,
                trainer.strategy.broadcast,
            )
            if trainer.world_size > 1
            else None
        )
        if trainer.is_global_zero or sharding is not None:
            try:
                # sharding by keyword and only when sharded: single-process overrides of measure()
                # with the older signature keep working
                shared = {} if sharding is None else {"sharding": sharding}
                record = self.measure(pl_module, epoch, trainer.global_step, previous, **shared)
            except Exception as err:  # monitoring must never end the user's training run
                rank_zero_warn(
                    f"TopologyMonitor: {unit} {moment} was not monitored: "
                    f"{type(err).__name__}: {err}"
                )
        short = record_scalars(record, self.prefix, aliases=True) if record is not None else {}
        short = trainer.strategy.broadcast(short, src=0)
        # trainer.log_dir is a collective (a broadcast from rank 0): every rank must read it, or
        # under DDP rank 0's lone broadcast meets the other ranks' next collective and hangs.
        self._directory = trainer.log_dir or trainer.default_root_dir
        for key, value in short.items():  # float64: as computed, for exact stopping decisions
            trainer.callback_metrics[key] = torch.tensor(value, dtype=torch.float64)
        if short:
            self.measured_at = moment
        if record is not None:
            if self.history:  # only the newest keeps its diagrams and Mapper graphs (memory)
                self.history[-1] = replace(self.history[-1], diagrams=None, mapper_graphs=None)
            self.history.append(record)
            self._previous = record
            cadence = self.figures_every_n_epochs
            self.writer.write(
                trainer.loggers,
                self.history,
                self._directory,
                figures=cadence is not None and len(self.history) % cadence == 0,
                step=moment,
            )

    def require_block(self, pl_module: nn.Module, block: int | str, needed_by: str) -> None:
        """Fail at fit start when ``block`` (an index, a name, ``"last"`` or ``"last_hidden"``) is
        certainly not among the blocks this monitor records on ``pl_module``."""
        hooked = resolve_blocks(pl_module, self.blocks)
        blocks = [*hooked, OUTPUT]
        if block == "last_hidden":
            absent = not hooked
        elif isinstance(block, str):
            # A module called k times per forward also gives the blocks "name#2" .. "name#k".
            absent = block != "last" and re.sub(r"#\d+$", "", block) not in blocks
        else:
            # Modules called several times (or never) change the number of blocks: only a
            # monitor that hooks no module certainly records the output alone.
            absent = not hooked and block not in (0, -1)
        if absent:
            raise ValueError(
                f"{needed_by} needs the block {block!r}, but the TopologyMonitor records the "
                f"blocks {blocks}: choose one of them, or the monitor's blocks with "
                "TopologyMonitor(blocks=[...])"
            )

    @staticmethod
    def select(
        trainer: pl.Trainer,
        needed_by: str,
        why: str,
        name: str | None = None,
        prefix: str | None = None,
    ) -> TopologyMonitor:
        """The TopologyMonitor a callback reads, at fit start: the one called ``name``, else the
        one logging under ``prefix`` (a key's ``topology_<name>``), else the only one. None, or
        several without a way to choose, is an error saying ``why`` ``needed_by`` needs one."""
        monitors = [c for c in trainer.callbacks if isinstance(c, TopologyMonitor)]
        if not monitors:
            raise ValueError(
                f"{needed_by} needs a TopologyMonitor in Trainer(callbacks=[...]): {why}"
            )
        prefixes = monitor_prefixes(trainer)
        names = [m.display_name for m in monitors]
        if name is not None:
            chosen = [m for m in monitors if m.display_name == name]
            if not chosen:
                raise ValueError(
                    f"{needed_by}: no TopologyMonitor named {name!r}; there are {names}"
                )
            return chosen[0]
        if prefix is not None:
            chosen = [m for m in monitors if prefixes[id(m)] == prefix]
            if not chosen:
                raise ValueError(
                    f"{needed_by}: no TopologyMonitor logs under {prefix!r}; they log under "
                    f"{sorted(prefixes.values())} (name them with TopologyMonitor(name=...))"
                )
            return chosen[0]
        if len(monitors) == 1:
            return monitors[0]
        raise ValueError(
            f"{needed_by}: the trainer has {len(monitors)} TopologyMonitors ({names}): say which "
            "it reads with monitor_name=..."
        )


def monitor_prefixes(trainer: pl.Trainer) -> dict[int, str]:
    """The prefix of every TopologyMonitor of the trainer, by ``id``: ``topology`` for the first
    one without a ``name``; ``topology_<name>`` for one with a name (two with the same name are
    an error); ``topology_<display name>`` for the other unnamed ones (``train``, or their probe's
    fingerprint), numbered ``_2``, ``_3``, ... in callback order where those repeat."""
    monitors = [c for c in trainer.callbacks if isinstance(c, TopologyMonitor)]
    named = [m.name for m in monitors if m.name is not None]
    twice = sorted({n for n in named if named.count(n) > 1})
    if twice:
        raise ValueError(
            f"several TopologyMonitors are named {twice}: give each its own name (it enters "
            "their metric names, 'topology_<name>/<metric>/<block>', and their history files)"
        )
    first_unnamed = next((m for m in monitors if m.name is None), None)
    prefixes: dict[int, str] = {}
    taken = {PREFIX, *(f"{PREFIX}_{n}" for n in named)}
    for m in monitors:
        if m is first_unnamed:
            prefixes[id(m)] = PREFIX
        elif m.name is not None:
            prefixes[id(m)] = f"{PREFIX}_{m.name}"
        else:
            base, k = f"{PREFIX}_{m.display_name}", 2
            prefix = base
            while prefix in taken:
                prefix, k = f"{base}_{k}", k + 1
            prefixes[id(m)] = prefix
            taken.add(prefix)
    return prefixes

"""TopologyMonitor: the Lightning callback that records the topology of every block, every epoch."""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from topo_monitor._lightning import (
    CALLBACK_BASES,
    draw_probe,
    pl,
    rank_zero_warn,
    tensorboard_writers,
)
from topo_monitor._validation import check, is_positive_int
from topo_monitor.blocks import (
    OUTPUT,
    REDUCTIONS,
    collect_clouds,
    preserved_state,
    reduce_output,
    resolve_blocks,
)
from topo_monitor.generalization import mean_margin
from topo_monitor.probe import ProbeSet, default_unpack
from topo_monitor.summary import METRICS, EpochRecord, SummaryConfig, metric_names, summarize

__all__ = ["TopologyMonitor"]

HISTORY_FILENAME = "topology_history.jsonl"
FIGURE_METRICS = ("E0_1_scaled", "PHdim", "E1_1_scaled")
"""Metrics drawn as depth profiles. A depth profile compares blocks, whose activations have
different scales: raw E and mean lifespans would compare those scales, so only the scale-free
forms and PHdim are drawn; every metric is in the scalars and the history."""


class TopologyMonitor(*CALLBACK_BASES):
    r"""Record the topology and intrinsic dimension of every block's representation, every epoch.

    After every ``every_n_epochs``-th training epoch, the probe set (a fixed, class-stratified
    sample of training inputs) goes through the model in eval mode under ``no_grad``; the output
    of every block is reduced to one vector per input; and per block, per class (then averaged
    over classes):

    * ``E0_1`` — E^0_1, total H0 persistence of the Vietoris–Rips filtration = Euclidean MST length;
      ``E0_1_scaled`` — the same divided by the cloud's RMS radius (scale-free, comparable across
      blocks); ``E0_mean_lifespan`` — E^0_1 per bar;
    * ``PHdim`` — the persistent-homology dimension, with ``PHdim_r2``, the R² of its fit;
    * ``E1_1``, ``E1_1_scaled``, ``E1_mean_lifespan`` — the same for H1 (opt-in, capped);
    * the L×L sliced-Wasserstein distances between the blocks' scale-free H0 diagrams.

    Logged as scalars ``topology/<metric>/<block>`` with ``step = epoch``, a custom-scalars layout
    (one chart per metric, every block in it), figures (metric vs relative depth, one curve per
    epoch; the SW heatmap), a JSON-lines history ``topology_history.jsonl`` in the run's log
    directory, and ``trainer.callback_metrics["topology/<metric>/last"]`` (model output) and
    ``.../last_hidden`` (the block before it) for ``EarlyStopping`` and ``ModelCheckpoint``.

    Parameters
    ----------
    blocks : "auto", list of str, or callable
        ``"auto"``: structural blocks (ResNet/transformer blocks and stages) if the model has any,
        else every activation module (MLP and plain CNN hidden layers); the model output is always
        added last. A list of names from ``model.named_modules()``, or a callable taking the
        LightningModule and returning names or modules, chooses them yourself. Blocks are ordered
        by execution; a module called k times per forward gives blocks ``name``, ..., ``name#k``.
    samples_per_class : int, default 300
        Probe inputs per class, drawn from the training dataset (papers: 300–350).
    probe : Dataset, (inputs, labels) tensors, ProbeSet, or None
        The probe set. None draws it from ``trainer.train_dataloader``'s dataset.
    reduction : {"gap", "top_l2", "flatten"}, default "gap"
        Global average pooling over positions; the position vector of largest l2 norm; or the
        whole output (small layers only).
    every_n_epochs : int, default 1
        Monitor after epochs ``n - 1, 2n - 1, ...`` (as ``check_val_every_n_epoch``).
    metrics : tuple of {"e0", "phdim", "sw"}
        ``"e0"``: lifespan sums E^i (for every i in ``homology_dims``); ``"phdim"``; ``"sw"``.
    homology_dims : (0,) or (0, 1), default (0,)
        H1 is costly (a Rips complex), hence opt-in and capped by ``h1_max_points``.
    h1_max_points : int, default 150
        Points per class cloud for H1 (a random subsample when larger).
    per_class : bool, default True
        Compute on each class's cloud and average; False: on the whole cloud.
    seed : int, default 0
        Seeds the private generators of the probe draw and of the PHdim/H1 subsamples.
    alpha : float, default 1.0
        Exponent of E_α.
    normalize : None or "minmax"
        ``"minmax"`` scales every feature of a block's cloud to [0, 1] first, as the reference
        code of Magai & Ayzenberg does (their E is then twice ours: they halve lifespans).
    phdim_draws : int, default 3
        Subsamples per size in the PHdim fit.
    sw_directions : int, default 50
        As ``gudhi.representations.SlicedWassersteinDistance(num_directions=...)``.
    batch_size : int, default 256
        Probe inputs per forward pass.
    channel_dim : int, optional
        Channel dimension of 3-D outputs: -1 (default, ``(B, T, C)`` sequences) or 1 (Conv1d).
    unpack : callable, optional
        ``item -> (input, label)`` for dataset items that are not ``(x, y, ...)`` tuples or dicts
        with usual keys (see :func:`topo_monitor.probe.default_unpack`).
    forward : callable, optional
        ``(model, inputs) -> output``; default ``model(inputs)``. For models taking keyword
        inputs, e.g. ``lambda m, batch: m(**batch)``.
    figures_every_n_epochs : int or None, default 10
        Draw the figures for TensorBoard loggers every n-th monitored epoch and after the last
        one; None: never. A figure takes about 0.1 s of a CPU core to render (three by default),
        as much as all the topology of a small model's epoch; a depth profile holds every epoch
        so far, so drawing it less often loses only the heatmaps in between.

    Examples
    --------
    >>> trainer = pl.Trainer(callbacks=[TopologyMonitor()], logger=TensorBoardLogger("runs"))
    """

    def __init__(
        self,
        *,
        blocks: str | Sequence[str] | Callable[[nn.Module], Iterable[str | nn.Module]] = "auto",
        samples_per_class: int = 300,
        probe: Dataset | tuple[torch.Tensor, torch.Tensor] | ProbeSet | None = None,
        reduction: str = "gap",
        every_n_epochs: int = 1,
        metrics: Sequence[str] = METRICS,
        homology_dims: Sequence[int] = (0,),
        h1_max_points: int = 150,
        per_class: bool = True,
        seed: int = 0,
        alpha: float = 1.0,
        normalize: str | None = None,
        phdim_draws: int = 3,
        sw_directions: int = 50,
        batch_size: int = 256,
        channel_dim: int | None = None,
        unpack: Callable[[Any], tuple[Any, Any]] | None = None,
        forward: Callable[[nn.Module, Any], Any] | None = None,
        figures_every_n_epochs: int | None = 10,
    ) -> None:
        super().__init__()
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
        check(reduction in REDUCTIONS, f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        check(
            is_positive_int(every_n_epochs),
            f"every_n_epochs must be a positive int, got {every_n_epochs!r}",
        )
        metrics = tuple(metrics)
        check(
            len(metrics) > 0 and set(metrics) <= set(METRICS),
            f"metrics must be a non-empty subset of {METRICS}, got {metrics!r}",
        )
        homology_dims = tuple(sorted(set(homology_dims)))
        check(
            homology_dims in ((0,), (0, 1)),
            f"homology_dims must be (0,) or (0, 1), got {homology_dims!r}",
        )
        check(
            is_positive_int(h1_max_points) and h1_max_points >= 3,
            f"h1_max_points must be an int >= 3, got {h1_max_points!r}",
        )
        check(
            isinstance(alpha, (int, float)) and 0 < alpha < math.inf,
            f"alpha must be a positive number, got {alpha!r}",
        )
        check(
            normalize in (None, "minmax"), f'normalize must be None or "minmax", got {normalize!r}'
        )
        check(
            is_positive_int(phdim_draws), f"phdim_draws must be a positive int, got {phdim_draws!r}"
        )
        check(
            isinstance(sw_directions, int) and sw_directions >= 2,
            f"sw_directions must be an int >= 2, got {sw_directions!r}",
        )
        check(is_positive_int(batch_size), f"batch_size must be a positive int, got {batch_size!r}")
        check(
            channel_dim in (None, 1, -1), f"channel_dim must be None, 1 or -1, got {channel_dim!r}"
        )
        check(isinstance(seed, int), f"seed must be an int, got {seed!r}")
        check(
            figures_every_n_epochs is None or is_positive_int(figures_every_n_epochs),
            "figures_every_n_epochs must be a positive int or None, "
            f"got {figures_every_n_epochs!r}",
        )
        check(
            probe is None
            or isinstance(probe, (Dataset, ProbeSet))
            or (isinstance(probe, tuple) and len(probe) == 2),
            "probe must be None, a Dataset, a ProbeSet or an (inputs, labels) tuple of tensors, "
            f"got {type(probe).__name__}",
        )
        self.blocks = blocks
        self.samples_per_class = samples_per_class
        self.reduction = reduction
        self.every_n_epochs = every_n_epochs
        self.seed = seed
        self.batch_size = batch_size
        self.channel_dim = channel_dim
        self.unpack = unpack or default_unpack
        self.forward = forward
        self.figures_every_n_epochs = figures_every_n_epochs
        self.config = SummaryConfig(
            metrics=metrics,
            homology_dims=homology_dims,
            alpha=float(alpha),
            per_class=per_class,
            normalize=normalize,
            h1_max_points=h1_max_points,
            phdim_draws=phdim_draws,
            sw_directions=sw_directions,
        )
        self._probe_source = probe
        self.probe = ProbeSet.given(probe)
        self.history: list[EpochRecord] = []
        self.block_names: list[str] | None = None
        self._hooked: list[str] | None = None
        self._last_run_epoch: int | None = None
        self._layout_written = False
        self._figures_epoch: int | None = None
        self._warned_no_figures = False
        self._history_file: tuple[str, int] | None = None  # (path, records in it)

    # ------------------------------------------------------------------ Lightning hooks

    @property
    def state_key(self) -> str:
        return self._generate_state_key(reduction=self.reduction, seed=self.seed)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":  # a wrong block name is an error now, not a warning in epoch 1
            self._hooked = resolve_blocks(pl_module, self.blocks)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_run_epoch = None
        if self.probe is None and trainer.is_global_zero:
            self.probe = draw_probe(
                trainer, self._probe_source, self.samples_per_class, self.seed, self.unpack
            )

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Checkpointing (and early stopping after validation) read their metrics here, before
        # on_train_epoch_end: run now when this validation closes the training epoch.
        epoch_loop = trainer.fit_loop.epoch_loop
        if not trainer.sanity_checking and epoch_loop.batch_progress.is_last_batch:
            self.update(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.update(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"history": [r.to_dict() for r in self.history], "block_names": self.block_names}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [EpochRecord.from_dict(r) for r in state_dict.get("history", [])]
        self.block_names = state_dict.get("block_names")
        self._history_file = None

    # ------------------------------------------------------------------ computation

    def compute(self, model: nn.Module, epoch: int = 0, step: int = 0) -> EpochRecord:
        """Run the probe set through ``model`` and summarise every block; no logging.

        Usable without a Trainer, e.g. on a loaded checkpoint, once ``self.probe`` is set.
        The model's mode, gradient state, hooks and the random streams are left as they were.
        """
        if self.probe is None:
            raise RuntimeError("no probe set: pass probe=... or run inside Trainer.fit")
        hooked = self._hooked if self._hooked is not None else resolve_blocks(model, self.blocks)
        timings = {"reduction": 0.0}

        def reduce(name: str, tensor: torch.Tensor) -> torch.Tensor:
            start = time.perf_counter()
            out = reduce_output(tensor, self.reduction, self.channel_dim)
            timings["reduction"] += time.perf_counter() - start
            return out

        start = time.perf_counter()
        with preserved_state(model):
            clouds, skipped = collect_clouds(
                model, self.probe.batches(self.batch_size), hooked, reduce, self.forward
            )
        timings["forward"] = time.perf_counter() - start - timings["reduction"]
        for name, reason in skipped.items():
            rank_zero_warn(f"TopologyMonitor: block {name!r} is not monitored: {reason}")
        if self.block_names is None:
            self.block_names = list(clouds)
        clouds = {name: clouds[name] for name in self.block_names if name in clouds}
        record = summarize(
            clouds,
            self.probe.labels,
            self.config,
            epoch=epoch,
            step=step,
            generator=torch.Generator().manual_seed(self.seed),
        )
        record.timings = {**timings, **record.timings}
        record.extras = {
            "margin": mean_margin(clouds[OUTPUT], self.probe.labels),
            "param_norm": float(
                torch.sqrt(sum((p.detach().double() ** 2).sum() for p in model.parameters()))
            ),
        }
        for block, reason in record.problems:
            rank_zero_warn(
                f"TopologyMonitor, epoch {epoch}, block {block!r}: {reason}; recorded as NaN"
            )
        return record

    @property
    def metric_names(self) -> list[str]:
        """The metrics logged per block, as in ``topology/<metric>/<block>``."""
        return metric_names(self.config)

    def update(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> bool:
        """Monitor the current epoch if it is due and not done yet; True if it is a monitored
        epoch. Other callbacks that read the topology call this first, so that callback order
        does not matter."""
        epoch = trainer.current_epoch
        if (epoch + 1) % self.every_n_epochs != 0:
            return False
        if self._last_run_epoch != epoch:
            self._run(trainer, pl_module)
        return True

    def _run(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        self._last_run_epoch = epoch
        record = None
        if trainer.is_global_zero:
            try:
                record = self.compute(pl_module, epoch, trainer.global_step)
            except Exception as err:  # monitoring must never end the user's training run
                rank_zero_warn(
                    f"TopologyMonitor: epoch {epoch} was not monitored: {type(err).__name__}: {err}"
                )
        short = self._short_metrics(record) if record is not None else {}
        short = trainer.strategy.broadcast(short, src=0)
        # trainer.log_dir is a collective (a broadcast from rank 0): every rank must read it, or
        # under DDP rank 0's lone broadcast meets the other ranks' next collective and hangs.
        directory = trainer.log_dir or trainer.default_root_dir
        for key, value in short.items():
            trainer.callback_metrics[key] = torch.tensor(value)
        if record is not None:
            self.history.append(record)
            self._log(trainer, record, directory)

    @staticmethod
    def _short_metrics(record: EpochRecord) -> dict[str, float]:
        out = {}
        for metric, values in record.values.items():
            out[f"topology/{metric}/last"] = float(values[-1])
            if len(values) >= 2:
                out[f"topology/{metric}/last_hidden"] = float(values[-2])
        return out

    # ------------------------------------------------------------------ sinks

    def _log(self, trainer: pl.Trainer, record: EpochRecord, directory: str) -> None:
        scalars = {
            f"topology/{metric}/{block}": value
            for metric, values in record.values.items()
            for block, value in zip(record.blocks, values, strict=True)
            if math.isfinite(value)
        }
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step=record.epoch)
        writers = tensorboard_writers(trainer)
        figures = self.figures_every_n_epochs is not None
        if trainer.loggers and not writers and figures and not self._warned_no_figures:
            self._warned_no_figures = True
            rank_zero_warn(
                "TopologyMonitor: no TensorBoard logger, so no figures or custom-scalars layout; "
                "scalars go to the loggers and everything to the history file"
            )
        for writer in writers:
            self._write_layout(writer, record)
        if figures and len(self.history) % self.figures_every_n_epochs == 0:
            self._write_figures(writers, record)
        self._write_history(directory)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        last = self.history[-1] if self.history else None
        if trainer.is_global_zero and last is not None and self.figures_every_n_epochs:
            if self._figures_epoch != last.epoch:
                self._write_figures(tensorboard_writers(trainer), last)

    def _write_layout(self, writer: Any, record: EpochRecord) -> None:
        if not self._layout_written:
            writer.add_custom_scalars(
                {
                    "topology": {
                        metric: ["Multiline", [f"^topology/{re.escape(metric)}/"]]
                        for metric in record.values
                    }
                }
            )
            self._layout_written = True
        writer.flush()

    def _write_figures(self, writers: list[Any], record: EpochRecord) -> None:
        from topo_monitor.plots import depth_profile, sw_heatmap

        self._figures_epoch = record.epoch
        for writer in writers:
            for metric in record.values:
                if metric in FIGURE_METRICS:
                    writer.add_figure(
                        f"topology_figures/depth_{metric}",
                        depth_profile(self.history, metric),
                        global_step=record.epoch,
                    )
            if record.sw is not None:
                writer.add_figure(
                    "topology_figures/sw_heatmap", sw_heatmap(record), global_step=record.epoch
                )
            writer.flush()

    def _write_history(self, directory: str) -> None:
        """Append the newest record; rewrite the whole file the first time a path is written
        (a new run, a resume): complete and consistent, at constant cost per epoch.

        ``directory`` is read by every rank before (``trainer.log_dir`` is a collective under DDP).
        """
        path = os.path.join(directory, HISTORY_FILENAME)
        if self._history_file == (path, len(self.history) - 1):
            with open(path, "a") as f:
                f.write(json.dumps(self.history[-1].to_dict()) + "\n")
        else:
            os.makedirs(directory, exist_ok=True)
            with open(path + ".tmp", "w") as f:
                for r in self.history:
                    f.write(json.dumps(r.to_dict()) + "\n")
            os.replace(path + ".tmp", path)
        self._history_file = (path, len(self.history))

"""Cost of TopologyMonitor per monitored epoch, as a fraction of one training epoch (CPU).

Two models, each timed side by side in one process with the same torch threads:

* digits    ``examples/digits.py``: DigitsResNet (6 residual blocks + output = 7 monitored blocks)
            on the 1347 training digits, batch 64, AdamW, as the example trains it. Monitored with
            the default settings and ``samples_per_class=50`` (what the example uses), then with
            100, and with the library default ``samples_per_class=300``: digits has only about
            135 training images per class, so that probe is every training image (1347 inputs).
* resnet18  ``examples/cifar10.py``: torchvision ResNet-18 with the CIFAR stem (8 basic blocks +
            output = 9 monitored blocks), SGD with the example's augmentation, batch 128, on
            10,000 random 32×32 RGB images with 10 balanced random labels. The probe is drawn from
            all 10,000 (10 classes × 300 = 3000 inputs).

What is timed:

* training epoch: ``Trainer.fit`` without the monitor and with a TensorBoardLogger, timed from
  ``on_train_epoch_start`` until the validation loop starts (the ratio is against training alone:
  conservative; digits runs the example's validation loop too, and the whole epoch with it is
  printed for comparison). digits: median of epochs 2..``--digits-epochs`` (epoch 1 warms
  up). resnet18: one epoch over the first ``--resnet-images`` images (default 2000), and the
  10,000-image epoch extrapolated linearly from it (an epoch is a loop over equal batches).
* monitoring: on the trained model, what the callback does per monitored epoch: ``measure(model,
  probe, **monitor.measure_options)`` (its ``record.timings`` give forward, reduction, H0, PHdim,
  SW, H1; "other" is the rest of ``measure``: hooks, concatenation, cloud scales, per-class splits,
  baselines) and ``TopologyWriter.write`` (scalars, custom-scalars layout, the JSON-lines history)
  into the same TensorBoardLogger: the median of ``--digits-repeats`` runs for digits, one run for
  resnet18. Then one draw of the figures (depth profiles and SW heatmap, from the whole history),
  which the callback pays once every ``figures_every_n_epochs`` (10) monitored epochs: its tenth is
  added to the total as "figures (amortized)" (median of 3 draws after a first one, which also loads
  matplotlib's fonts, once per process). The probe draw (once per fit, at train start) is shown
  apart and not counted.

The functional graph (``metrics=(..., "functional")``, opt-in): its stage of ``measure`` alone
(the correlation graph of up to ``functional_max_neurons`` = 50 neurons drawn across the blocks,
persistence up to H2), per monitored epoch, on the same models and probes (median of the same
repeats), shown apart and then added to the total ("total with functional"); and what its cap
costs in resolution (digits, the trained model, probe of ``--digits-spc[0]`` per class): the
mean and standard deviation of each functional summary over ``--functional-draws`` (5) neuron
draws (seeds 0, 1, ...), the probe fixed. The Mapper graphs (``"mapper"``, opt-in) likewise: their
stage of ``measure`` plus one draw of their figure amortized over the figures' cadence.

What the probe size buys (digits only): for each probe size, the spread of every block's
class-averaged E0_1_scaled and PHdim over ``--spread-draws`` (5) probe sets drawn with different
seeds from the same trained model, relative to its mean: smaller probes are cheaper and noisier.

The target, printed with whether it is met: monitoring (amortized figures included) ≤ 25 % of a
training epoch for the digits example with its settings (samples_per_class=50). ``--digits-spc``
sets the probe sizes to compare (default ``50 100 300``; the first is the target's).

Runtime (CPU only): about 100 s with the defaults on an otherwise idle 2-core machine, well
under the 6-minute budget; ``--resnet-images 10000`` (the epoch measured instead of extrapolated)
adds about 3 minutes there. Other processes competing for the cores can slow torch's CPU threads
many-fold: run it on a quiet machine, and read the load average printed at the start and end.
Usage::

    .venv/bin/python benchmarks/bench_monitor.py
    .venv/bin/python benchmarks/bench_monitor.py --resnet-images 10000   # measured, ~5 min
    .venv/bin/python benchmarks/bench_monitor.py --h1                    # H1 on as well
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from types import ModuleType

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from topo_monitor import ProbeSet, TopologyMonitor, TopologyRecord, measure
from topo_monitor.probing.summary import FUNCTIONAL_MAX_NEURONS
from topo_monitor.reporting import TopologyWriter
from topo_monitor.reporting.plots import mapper_figure

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPREAD_METRICS = ("E0_1_scaled", "PHdim")
STAGES = ("forward", "reduction", "h0", "phdim", "sw", "h1", "other", "logging", "figures")
LABELS = {
    "forward": "forward (probe)",
    "reduction": "reduction (GAP)",
    "h0": "H0 (MST)",
    "phdim": "PHdim",
    "sw": "SW matrix",
    "h1": "H1",
    "other": "other compute",
    "logging": "logging (no figures)",
    "figures": "figures (amortized)",
    "total": "monitoring total",
    "functional": "functional (opt-in)",
    "mapper": "Mapper (opt-in, figure amortized)",
}
OPT_IN = ("functional", "mapper")
TARGET = 0.25
RESNET_FULL = 10_000


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a module."""
    module_name = f"topo_monitor_example_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(
        module_name, os.path.join(ROOT, "examples", f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


class EpochTimer(pl.Callback):
    """Wall time of every epoch: its training part (until the validation loop starts, if any)
    and the whole epoch (until ``on_train_epoch_end``, which comes after that validation)."""

    def __init__(self) -> None:
        self.training: list[float] = []
        self.whole: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.training.append(time.perf_counter() - self._start)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.whole.append(time.perf_counter() - self._start)
        if len(self.training) < len(self.whole):  # no validation this epoch
            self.training.append(self.whole[-1])


def train(
    model: pl.LightningModule,
    loader: DataLoader,
    epochs: int,
    logdir: str,
    name: str,
    val_loader: DataLoader | None = None,
) -> tuple[pl.Trainer, EpochTimer]:
    timer = EpochTimer()
    trainer = pl.Trainer(
        max_epochs=epochs,
        callbacks=[timer],
        logger=TensorBoardLogger(logdir, name=name),
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        log_every_n_steps=10,
    )
    trainer.fit(model, loader, val_loader)
    return trainer, timer


def draw_probe(monitor: TopologyMonitor, dataset: Dataset) -> None:
    """Draw the monitor's probe set from ``dataset``, as the callback does at train start."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "fewer than samples_per_class items" (digits, 300)
        monitor.probe = ProbeSet.from_dataset(dataset, monitor.samples_per_class, monitor.seed)


def time_monitor(
    model: pl.LightningModule,
    trainer: pl.Trainer,
    dataset: Dataset,
    samples_per_class: int,
    repeats: int,
    h1: bool,
) -> dict[str, float]:
    """Median seconds per stage of ``repeats`` monitored epochs, plus the probe draw and sizes."""
    monitor = TopologyMonitor(
        samples_per_class=samples_per_class, homology_dims=(0, 1) if h1 else (0,)
    )
    cadence = monitor.figures_every_n_epochs
    start = time.perf_counter()
    draw_probe(monitor, dataset)
    probe_seconds = time.perf_counter() - start
    writer, history = TopologyWriter(), []
    directory = trainer.log_dir or trainer.default_root_dir
    runs: list[dict[str, float]] = []
    opt_in: dict[str, TopologyRecord] = {}
    for epoch in range(repeats):
        start = time.perf_counter()
        record = measure(model, monitor.probe, **monitor.measure_options, epoch=epoch, step=epoch)
        computed = time.perf_counter()
        history.append(record)
        writer.write(trainer.loggers, history, directory)  # figures are timed apart, below
        logged = time.perf_counter()
        stages = {stage: record.timings.get(stage, float("nan")) for stage in STAGES[:6]}
        known = sum(v for v in stages.values() if v == v)
        stages["other"] = computed - start - known
        stages["logging"] = logged - computed
        stages["total"] = logged - start
        # The opt-in groups: each its own stage, as the monitor would add it to the above.
        for group in OPT_IN:
            opt_in[group] = measure(model, monitor.probe, metrics=(group,), seed=monitor.seed)
            stages[group] = opt_in[group].timings[group]
        runs.append(stages)
    out = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    # One draw of the figures, paid once every `cadence` epochs, with as many curves as the
    # callback's first draw has (the records above, repeated): the median of 3 draws after a
    # first one, which also loads matplotlib's fonts (once per process).
    history = [dataclasses.replace(history[i % repeats], epoch=i, step=i) for i in range(cadence)]
    draws = []
    for _ in range(4):
        start = time.perf_counter()
        writer.write_figures(trainer.loggers, history, directory)
        draws.append(time.perf_counter() - start)
    figures = statistics.median(draws[1:])
    out["figures"] = figures / cadence
    out["total"] += out["figures"]
    # The Mapper figure (drawn when the group is on), amortized as the others.
    mapper_figure(opt_in["mapper"])  # fonts
    start = time.perf_counter()
    mapper_figure(opt_in["mapper"])
    out["mapper"] += (time.perf_counter() - start) / cadence
    for group in OPT_IN:
        out[f"total with {group}"] = out["total"] + out[group]
    out.update(
        probe_draw=probe_seconds,
        probe_size=len(monitor.probe),
        blocks=len(record.blocks),
        repeats=repeats,
        figures_draw=figures,
        cadence=cadence,
    )
    return out


def probe_spread(
    model: pl.LightningModule, dataset: Dataset, samples_per_class: int, draws: int
) -> dict[str, float]:
    """What the probe size buys: the standard deviation over ``draws`` probe sets (seeds 0, 1,
    ...) of each block's class-averaged value, relative to its mean (E grows with the number of
    points, so only relative spreads compare), averaged over blocks, per metric."""
    values: dict[str, list[list[float]]] = {metric: [] for metric in SPREAD_METRICS}
    for seed in range(draws):
        monitor = TopologyMonitor(samples_per_class=samples_per_class, seed=seed)
        draw_probe(monitor, dataset)
        record = measure(model, monitor.probe, **monitor.measure_options)
        for metric in SPREAD_METRICS:
            values[metric].append(record.values[metric])
    spread = {}
    for metric, v in values.items():
        table = torch.tensor(v, dtype=torch.float64)  # (draws, blocks)
        spread[metric] = float((table.std(dim=0) / table.mean(dim=0).abs()).mean())
    return spread


def functional_spread(model: pl.LightningModule, probe: ProbeSet, draws: int) -> dict[str, tuple]:
    """What the neuron cap costs: (mean, standard deviation) of every functional summary over
    ``draws`` neuron draws (seeds 0, 1, ...) on one probe set."""
    values: dict[str, list[float]] = {}
    for seed in range(draws):
        record = measure(model, probe, metrics=("functional",), seed=seed)
        for name, value in record.network.items():
            values.setdefault(name, []).append(value)
    return {
        name: (statistics.fmean(v), statistics.stdev(v))
        for name, v in values.items()
        if name.startswith("functional_") and "neurons" not in name
    }


def random_images(n: int, classes: int = 10, seed: int = 0) -> TensorDataset:
    """n uniform random 3×32×32 images, CIFAR-normalized, with balanced labels in random order."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, 3, 32, 32, generator=g) - 0.5) / 0.25
    y = (torch.arange(n) % classes)[torch.randperm(n, generator=g)]
    return TensorDataset(x, y)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits-epochs", type=int, default=3)
    parser.add_argument("--digits-repeats", type=int, default=3)
    parser.add_argument("--digits-spc", type=int, nargs="+", default=[50, 100, 300])
    parser.add_argument("--spread-draws", type=int, default=5)
    parser.add_argument("--resnet-images", type=int, default=2000)
    parser.add_argument("--resnet-probe-per-class", type=int, default=300)
    parser.add_argument("--h1", action="store_true", help="monitor H1 as well (default: off)")
    parser.add_argument("--functional-draws", type=int, default=5)
    args = parser.parse_args(argv)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*log_every_n_steps.*")
    warnings.filterwarnings("ignore", ".*validation_step.*val_dataloader.*")  # resnet18: no val
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    digits_example = load_example("digits")
    cifar_example = load_example("cifar10")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}; H1 {'on' if args.h1 else 'off'}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    columns: list[tuple[str, float, str, dict[str, float]]] = []
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory() as logdir:
        # ---- digits
        pl.seed_everything(0, verbose=False)
        train_set, val_set = digits_example.digits_datasets()
        model = digits_example.DigitsResNet()
        loader = DataLoader(train_set, batch_size=64, shuffle=True)
        val_loader = DataLoader(val_set, batch_size=256)  # as the example validates
        trainer, timer = train(model, loader, args.digits_epochs, logdir, "digits", val_loader)
        epochs = timer.training
        epoch = statistics.median(epochs[1:] or epochs)
        whole_epoch = statistics.median(timer.whole[1:] or timer.whole)
        note = f"{len(train_set)} imgs, epochs " + " ".join(f"{s:.2f}" for s in epochs)
        spreads = {}
        for spc in args.digits_spc:
            stats = time_monitor(model, trainer, train_set, spc, args.digits_repeats, args.h1)
            columns.append((f"digits spc={spc}", epoch, note, stats))
            spreads[spc] = probe_spread(model, train_set, spc, args.spread_draws)
        monitor = TopologyMonitor(samples_per_class=args.digits_spc[0])
        draw_probe(monitor, train_set)
        neuron_spread = functional_spread(model, monitor.probe, args.functional_draws)
        # ---- ResNet-18
        pl.seed_everything(0, verbose=False)
        n_pool = max(RESNET_FULL, 10 * args.resnet_probe_per_class)
        pool = random_images(n_pool)
        n_train = min(args.resnet_images, n_pool)
        model = cifar_example.CifarResNet()
        loader = DataLoader(Subset(pool, range(n_train)), batch_size=128, shuffle=True)
        trainer, timer = train(model, loader, 1, logdir, "resnet18")
        epochs = timer.training
        stats = time_monitor(model, trainer, pool, args.resnet_probe_per_class, 1, args.h1)
        columns.append((f"resnet18 {n_train} imgs", epochs[0], f"{n_train} imgs", stats))
        if n_train != RESNET_FULL:
            scaled = epochs[0] * RESNET_FULL / n_train
            columns.append(
                (f"resnet18 {RESNET_FULL} (extrap.)", scaled, f"x{RESNET_FULL / n_train:g}", stats)
            )

    def row(label: str, cells: list[str]) -> None:
        print(f"{label:24s}" + "".join(f"{cell:>26s}" for cell in cells))

    print()
    row("seconds (% of epoch)", [c[0] for c in columns])
    row("training epoch", [f"{c[1]:.2f}" for c in columns])
    row("probe inputs x blocks", [f"{c[3]['probe_size']} x {c[3]['blocks']}" for c in columns])
    row("probe draw (once)", [f"{c[3]['probe_draw']:.3f}" for c in columns])
    for stage in (*STAGES, "total", *(f"{k}{g}" for g in OPT_IN for k in ("", "total with "))):
        cells = []
        for _, epoch, _, stats in columns:
            value = stats[stage]
            cells.append("-" if value != value else f"{value:.3f} ({100 * value / epoch:5.1f} %)")
        row(LABELS.get(stage, stage), cells)
    row("monitoring / epoch", [f"{c[3]['total'] / c[1]:.3f}" for c in columns])
    print()
    for name, _, note, stats in columns:
        print(
            f"  {name}: {note}; monitoring median of {stats['repeats']} run(s); figures "
            f"{stats['figures_draw']:.2f} s per draw, every {stats['cadence']} epochs"
        )
    print(
        f"\nWhat the probe size buys (digits, the trained model): std / mean of each block's "
        f"value over {args.spread_draws} probe draws (seeds 0..{args.spread_draws - 1}), "
        "mean over blocks"
    )
    for spc, spread in spreads.items():
        print(
            f"  samples_per_class={spc:<4d}"
            + "".join(f"  {metric} {value:6.1%}" for metric, value in spread.items())
        )
    print(
        f"\nWhat the functional graph's cap ({FUNCTIONAL_MAX_NEURONS} neurons) costs in "
        f"resolution (digits, the trained model, samples_per_class={args.digits_spc[0]}): mean "
        f"± std over {args.functional_draws} neuron draws (seeds 0..{args.functional_draws - 1})"
    )
    for name, (mean, std) in neuron_spread.items():
        print(f"  {name:32s} {mean:8.3f} ± {std:.3f}")
    ratio = columns[0][3]["total"] / columns[0][1]
    verdict = "met" if ratio <= TARGET else "NOT met"
    print(
        f"\nTarget: digits example (samples_per_class={args.digits_spc[0]}) monitoring, "
        f"amortized figures included, <= {TARGET:.0%} of a training epoch: {ratio:.1%} -> {verdict}"
    )
    for group in OPT_IN:
        group_ratio = columns[0][3][f"total with {group}"] / columns[0][1]
        verdict = "met" if group_ratio <= TARGET else "NOT met"
        print(f"With {group!r} on: {group_ratio:.1%} -> {verdict}")
    print(
        f"For comparison, the example's whole epoch (training and its validation loop, "
        f"{whole_epoch:.2f} s): monitoring is {columns[0][3]['total'] / whole_epoch:.1%} of it"
    )
    print(
        f"Whole benchmark: {time.perf_counter() - wall:.0f} s; "
        f"load average now {os.getloadavg()[0]:.2f} (other processes distort these timings)"
    )


if __name__ == "__main__":
    main()
